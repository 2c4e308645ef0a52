"""Writing a batch to a sink: retries for passing failures, bisection for poison records.

- ``RetryableError``: retried with exponential backoff and full jitter, without limit, until the
  write succeeds or the worker is asked to stop (then the error propagates and the batch is
  abandoned uncommitted: it will be delivered again). Nothing is dead-lettered because a sink
  is down. While waiting, ``wait`` is called instead of sleeping so the consumer keeps polling
  (paused) and its group membership survives.
- ``PermanentError`` for the whole batch: the batch is split in halves and each half written on
  its own, down to single records, so one poison record costs one DLQ entry, not the batch.
  Halves are written in stream order, so the version guard sees events in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential

from fanout.errors import PermanentError, RetryableError
from fanout.events import ChangeEvent, Failure
from fanout.settings import RetrySettings
from sinks.base.contract import Sink


@dataclass
class DeliveryHooks:
    """How delivery talks back to the worker that owns the consumer."""

    wait: Callable[[float], None]  # block about this many seconds, keeping the consumer alive
    stopping: Callable[[], bool]  # true once shutdown was requested
    on_down: Callable[[RetryableError], None] = lambda _exc: None
    on_up: Callable[[], None] = lambda: None
    on_retry: Callable[[], None] = lambda: None


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
        failed_first: RetryableError | PermanentError | None = None,
    ) -> WriteOutcome:
        """Write ``events`` until done: retried while the sink is down, bisected around poison.

        ``failed_first`` is the error of a first attempt already made elsewhere (by the
        pipelined worker's writer thread, see :func:`write_once`): it counts as an attempt and
        the batch goes on from here, bisected if the error was permanent, else written again
        with retries (writes are idempotent).
        """
        outcome = WriteOutcome()
        if not events:
            return outcome
        batch = list(events)
        if failed_first is None:
            self._write_isolating(batch, outcome)
            return outcome
        outcome.attempts += 1
        if isinstance(failed_first, PermanentError):
            self._split(batch, failed_first, outcome)
            return outcome
        self._mark_down(failed_first)
        self._hooks.on_retry()
        self._write_isolating(batch, outcome)
        return outcome

    def _write_isolating(self, events: list[ChangeEvent], outcome: WriteOutcome) -> None:
        try:
            outcome.failures.extend(self._write_retrying(events, outcome))
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

    def _write_retrying(self, events: list[ChangeEvent], outcome: WriteOutcome) -> list[Failure]:
        for attempt in self._retrying():
            with attempt:
                outcome.attempts += 1
                failures = list(self._sink.write(events))
        self._mark_up()
        return failures

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type(RetryableError),
            wait=wait_random_exponential(
                multiplier=self._retry.initial_backoff_ms / 1000,
                exp_base=self._retry.multiplier,
                max=self._retry.max_backoff_ms / 1000,
            ),
            stop=lambda _state: self._hooks.stopping(),
            sleep=self._hooks.wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryableError):
            self._mark_down(error)
        self._hooks.on_retry()

    def _mark_down(self, exc: RetryableError) -> None:
        self._down = True
        self._hooks.on_down(exc)

    def _mark_up(self) -> None:
        if self._down:
            self._down = False
            self._hooks.on_up()


def write_once(sink: Sink, events: Sequence[ChangeEvent]) -> list[Failure]:
    """One plain attempt, no retry, no bisection: what the pipelined worker runs on its writer
    thread. If it raises ``RetryableError`` or ``PermanentError``, finish with
    ``Delivery.write(events, failed_first=error)``."""
    return list(sink.write(events))
