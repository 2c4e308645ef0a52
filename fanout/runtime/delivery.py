"""Writing a batch to a sink: the runtime's side of the three error classes.

- TRANSIENT (``RetryableError``): retried with exponential backoff and full jitter, without
  limit, until the write succeeds or the worker is asked to stop (then the error propagates and
  the batch is abandoned uncommitted: it will be delivered again). Nothing is dead-lettered
  because a sink is down. While waiting, ``wait`` is called instead of sleeping so the consumer
  keeps polling (paused) and its group membership survives; ``on_down`` tells /readyz and
  ``fanout_sink_up`` why.
- DATA (``PermanentError`` for the whole batch): the batch is split in halves and each half
  written on its own, down to single records, so one poison record costs one DLQ entry, not the
  batch, and a batch too large for the store is split until it fits (one record too large on
  its own ends in the DLQ). Halves are written in stream order, so the version guard sees
  events in order.
- CONFIGURATION (``ConfigError``): never retried, never bisected: it propagates at once and the
  worker stops consuming (see ``SinkWorker``).
- Unknown (``UnknownError``, or any exception that is not fanout's: a sink's error table had no
  row for it): retried like a transient error at most ``retry.unknown_error_attempts`` times in
  a row, then raised as a ``ConfigError``. Nothing is retried forever without being classified.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fanout.errors import ConfigError, FanoutError, PermanentError, RetryableError, UnknownError
from fanout.events import ChangeEvent, Failure
from fanout.settings import RetrySettings
from sinks.base.contract import Sink

SinkCall = Callable[[], Sequence[Failure]]


@dataclass
class DeliveryHooks:
    """How delivery talks back to the worker that owns the consumer."""

    wait: Callable[[float], None]  # block about this many seconds, keeping the consumer alive
    stopping: Callable[[], bool]  # true once shutdown was requested
    on_down: Callable[[RetryableError], None] = lambda _exc: None
    on_up: Callable[[], None] = lambda: None
    on_retry: Callable[[], None] = lambda: None
    # Runs one sink call and returns its result (the worker runs it on its writer thread and
    # keeps the consumer alive meanwhile); default: call it here.
    call: Callable[[SinkCall], Sequence[Failure]] = lambda write: write()


@dataclass
class WriteOutcome:
    failures: list[Failure] = field(default_factory=list)
    attempts: int = 0  # write calls made (retries and bisection halves included)


class Delivery:
    def __init__(self, sink: Sink, retry: RetrySettings, hooks: DeliveryHooks) -> None:
        self._sink = sink
        self._retry = retry
        self._hooks = hooks
        self._down = False

    def write(
        self,
        events: Sequence[ChangeEvent],
        failed_first: FanoutError | None = None,
    ) -> WriteOutcome:
        """Write ``events`` until done: retried while the sink is down, bisected around poison.

        ``failed_first`` is the error of a first attempt already made elsewhere (by the
        pipelined worker's writer thread, see :func:`write_once`): it counts as an attempt and
        the batch goes on from here: bisected if the error was permanent, raised if it was a
        configuration error, else written again with retries (writes are idempotent).
        """
        outcome = WriteOutcome()
        if not events:
            return outcome
        batch = list(events)
        if failed_first is None:
            self._write_isolating(batch, outcome)
            return outcome
        outcome.attempts += 1
        if isinstance(failed_first, ConfigError):
            raise failed_first
        if isinstance(failed_first, PermanentError):
            self._split(batch, failed_first, outcome)
            return outcome
        retryable = as_retryable(failed_first)
        assert isinstance(retryable, RetryableError)
        self._mark_down(retryable)
        self._hooks.on_retry()
        self._write_isolating(batch, outcome, unknown=int(isinstance(retryable, UnknownError)))
        return outcome

    def _write_isolating(
        self, events: list[ChangeEvent], outcome: WriteOutcome, unknown: int = 0
    ) -> None:
        try:
            outcome.failures.extend(self._write_retrying(events, outcome, unknown))
        except PermanentError as exc:
            self._split(events, exc, outcome)

    def _split(self, events: list[ChangeEvent], exc: PermanentError, outcome: WriteOutcome) -> None:
        if len(events) == 1:
            event = events[0]
            outcome.failures.append(Failure(event.origin, "write", exc, event))
            return
        middle = len(events) // 2
        self._write_isolating(events[:middle], outcome)
        self._write_isolating(events[middle:], outcome)

    def _write_retrying(
        self, events: list[ChangeEvent], outcome: WriteOutcome, unknown: int
    ) -> list[Failure]:
        """One half (or the batch) written until it is, or fails for a reason retries cannot
        change. ``unknown`` counts the unclassified failures in a row so far."""
        retries = 0
        while True:
            outcome.attempts += 1
            try:
                failures = list(self._hooks.call(lambda: self._sink.write(events)))
            except Exception as exc:
                error = as_retryable(exc)  # PermanentError and ConfigError pass unchanged
                if isinstance(error, RetryableError):
                    unknown = unknown + 1 if isinstance(error, UnknownError) else 0
                    if unknown >= self._retry.unknown_error_attempts:
                        raise unclassified(error, unknown) from error
                if not isinstance(error, RetryableError) or self._hooks.stopping():
                    if error is exc:
                        raise
                    raise error from exc
                retries += 1
                self._mark_down(error)
                self._hooks.on_retry()
                self._hooks.wait(self.backoff_s(retries))
                continue
            self._mark_up()
            return failures

    def backoff_s(self, retry: int) -> float:
        """Before retry number ``retry`` (1, 2, …): exponential, capped, full jitter."""
        settings = self._retry
        ceiling = settings.initial_backoff_ms * settings.multiplier ** (retry - 1)
        return random.uniform(0, min(ceiling, settings.max_backoff_ms) / 1000)

    def _mark_down(self, exc: RetryableError) -> None:
        self._down = True
        self._hooks.on_down(exc)

    def _mark_up(self) -> None:
        if self._down:
            self._down = False
            self._hooks.on_up()


def as_retryable(exc: BaseException) -> FanoutError:
    """fanout's own errors as they are; anything else (no error table knew it) as UnknownError."""
    if isinstance(exc, FanoutError):
        return exc
    error = UnknownError(f"unexpected {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def unclassified(error: BaseException, attempts: int) -> ConfigError:
    """The ConfigError an unclassified error becomes once it has failed ``attempts`` times."""
    return ConfigError(
        f"{error} (an error fanout does not classify, still failing after {attempts} attempts: "
        "treated as a configuration problem)"
    )


def write_once(sink: Sink, events: Sequence[ChangeEvent]) -> list[Failure]:
    """One plain attempt, no retry, no bisection: what the pipelined worker runs on its writer
    thread. If it raises, finish with ``Delivery.write(events, failed_first=as_retryable(exc))``."""
    return list(sink.write(events))
