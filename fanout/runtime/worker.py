"""One sink's consumer loop: poll -> decode -> route -> write -> DLQ -> commit, pipelined.

Delivery guarantee: at least once. Offsets of a batch are committed only after every record of
it is written to the sink or acknowledged by the DLQ, so a crash at any point re-delivers the
uncommitted tail; the sinks' version-guarded idempotent writes make that converge.

Pipelining: while the sink writes batch N on the writer thread (network I/O releases the GIL),
this thread polls and decodes batch N+1. Only this thread touches the consumer and the DLQ
producer; the sink is used by one thread at a time, because this thread calls it again only
after N's write has returned. At most one batch is in flight and N is committed before N+1 is
handed to the sink, so commits stay in stream order. N is completed (DLQ, commit) as soon as
its write returns, between two ``consume`` calls. Only a healthy first attempt overlaps the
next poll: a batch whose first attempt failed is written again under this thread's control
through the retrying :class:`~fanout.runtime.delivery.Delivery` (each attempt on the writer
thread, awaited), which pauses the partitions and keeps polling meanwhile.

Rebalances: callbacks only run inside ``consume``, on this thread. Every batch held
uncommitted (the one in flight and the next one, polled or decoded) remembers the partitions
revoked while it was held and does not commit them (their new owner re-reads those records).

Errors, by class (``sinks.base.errors``): TRANSIENT is retried while it lasts, partitions
paused, the loop turning (``/healthz`` 200, ``/readyz`` 503 with the reason); DATA goes to the
DLQ record by record (``Delivery`` bisects); CONFIGURATION (a ``ConfigError`` from the sink's
``open`` or ``write``, an error no table knows that kept failing, or a fatal consumer error:
another process took our static member id) stops the worker: nothing more is written or
committed, partitions stay paused, ``/healthz`` and ``/readyz`` answer 503 with the reason, one
log line says it, and after ``config_error_exit_s`` the error ends the process (exit 2). A
static member id still held by the crashed process this one replaces is waited out instead: a
new consumer joins again every few seconds, up to ``config_error_exit_s``.

Every call to the sink runs on the writer thread; while one runs long (a hung store, until its
timeout), this thread keeps polling with partitions paused, so the loop stays alive and the
group membership too, and ``/readyz`` says the store does not answer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from fanout.debezium.envelope import Decoder
from fanout.errors import (
    ConfigError,
    DecodeError,
    MappingError,
    PermanentError,
    RetryableError,
    UnknownError,
)
from fanout.events import ChangeEvent, Failure, Origin
from fanout.runtime import kafka as kafka_clients
from fanout.runtime import metrics
from fanout.runtime.connections import sink_unreachable
from fanout.runtime.delivery import (
    Delivery,
    DeliveryHooks,
    SinkCall,
    WriteOutcome,
    as_retryable,
    unclassified,
    write_once,
)
from fanout.runtime.dlq import DeadLetterQueue, open_dead_letter_queue
from fanout.runtime.health import WorkerStatus
from fanout.runtime.messages import describe, next_offsets, origin_of, position, with_metadata
from fanout.runtime.routing import Router
from fanout.settings import Settings, SinkSettings
from sinks.base.contract import Sink

log = logging.getLogger(__name__)

LAG_REPORT_INTERVAL_S = 10.0
# While a batch is in flight, consume() returns this often to complete it as soon as it is written.
IN_FLIGHT_POLL_S = 0.005
# A sink call still running after this long: partitions paused, the consumer polled meanwhile.
CALL_SLICE_S = 5.0
# Between two attempts to join with a static id a crashed member still holds.
REJOIN_BACKOFF_S = 5.0
_BENIGN_COMMIT_ERRORS = {
    KafkaError._NO_OFFSET,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    # The group coordinator moving or still loading: the next commit will do.
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError._WAIT_COORD,  # librdkafka has none yet: e.g. while the broker restarts
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


@dataclass
class WorkerOptions:
    """What differs between the live worker and a backfill or a DLQ replay."""

    group: str | None = None  # default <group_prefix>-<sink>
    topics: list[str] | None = None  # default from settings
    consumer_overrides: dict[str, object] = field(default_factory=dict)
    # Called after each commit with the committed offsets; returns True to stop the worker.
    after_commit: Callable[[Sequence[TopicPartition]], bool] | None = None
    # Called on assignment (e.g. to seek a backfill to a point in time, or stop at an end).
    on_assign: Callable[[Consumer, list[TopicPartition]], None] | None = None
    # Metadata committed with each partition's offset (a backfill keeps its bounds there).
    commit_metadata: Callable[[str, int], str | None] | None = None
    # Routing for this run (a backfill's --tables narrows it); default from the sink's settings.
    router: Router | None = None


Partition = tuple[str, int]
T = TypeVar("T")


@dataclass
class _Batch:
    messages: list[Message] = field(default_factory=list)
    bytes: int = 0
    # Revoked while this batch was held uncommitted (and not assigned back since): not committed.
    revoked: set[Partition] = field(default_factory=set)


@dataclass
class _InFlight:
    """A decoded batch handed to the sink; completed (DLQ, commit) once its write returns."""

    batch: _Batch
    events: list[ChangeEvent]
    failures: list[Failure]  # decode and route failures, dead-lettered with the batch
    timestamps: list[int]  # Kafka timestamps (ms) of its records, for the latency histogram
    write: Future[list[Failure]] | None = None  # the first attempt, on the writer thread
    started: float = 0.0


class SinkWorker:
    def __init__(
        self,
        sink_name: str,
        settings: Settings,
        sink: Sink,
        status: WorkerStatus | None = None,
        options: WorkerOptions | None = None,
    ) -> None:
        self.sink_name = sink_name
        self._settings = settings
        self._sink_settings: SinkSettings = settings.sinks.get(sink_name)
        self._sink = sink
        self.status = status or WorkerStatus(sink_name)
        self.status.hung_after_s = self._sink_settings.hung_after_s
        self._options = options or WorkerOptions()
        self._stop = threading.Event()
        self._decoder = Decoder.from_settings(settings.kafka, self._note_registry, self._stop)
        self._router = self._options.router or Router(self._sink_settings.routing, sink_name)
        self._pending: _Batch | None = None  # polled, not handed to the sink yet
        self._in_flight: _InFlight | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._paused = False
        self._next_lag_report = 0.0
        self._consumer: Consumer | None = None
        self._lag_probe: kafka_clients.BacklogProbe | None = None  # lag before the group is joined
        self._consumer_dead = False  # librdkafka declared it dead (a fatal error)
        self._refused_since: float | None = None  # first refusal of a rejoinable fatal error
        self._dlq: DeadLetterQueue | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the batches in hand, commit them, and return."""
        self._stop.set()

    def run(self) -> None:
        """Consume until stopped. Raises ConfigError (after ``config_error_exit_s``) when the
        sink cannot work as configured."""
        kafka = self._settings.kafka
        group = self._options.group or kafka_clients.group_id(kafka, self.sink_name)
        try:
            self._open_sink()
            if self._stop.is_set():
                return
            self._consumer = kafka_clients.make_consumer(
                kafka, group, **self._options.consumer_overrides
            )
            self._dlq = self._make_dlq()
            self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"sink-{self.sink_name}-write")
            self._subscribe()
            log.info("worker started", extra={"sink": self.sink_name, "group": group})
            while not self._stop.is_set():
                try:
                    self._turn()
                except kafka_clients.ConsumerFatal as fatal:
                    self._rejoin(fatal, group)
            self._settle(self._complete_in_flight)  # the last batch handed to the sink
        except ConfigError as exc:
            self._halt(exc)
            raise
        finally:
            self._shutdown()

    def _open_sink(self) -> None:
        """Open the sink, retrying while the store is away; the loop turns meanwhile, so a slow
        start keeps ``/healthz`` at 200 while ``/readyz`` says why it is not ready."""
        retry = self._sink_settings.retry
        backoff = retry.initial_backoff_ms / 1000
        unknown = 0
        while not self._stop.is_set():
            self.status.turned()
            try:
                self._timed(self._sink.open)
            except ConfigError:
                raise
            except PermanentError as refused:  # no record is at fault yet: the settings are
                raise ConfigError(f"{refused} (while opening the sink)") from refused
            except Exception as error:
                exc = as_retryable(error)
                assert isinstance(exc, RetryableError)
                unknown = unknown + 1 if isinstance(exc, UnknownError) else 0
                if unknown >= retry.unknown_error_attempts:
                    raise unclassified(exc, unknown) from exc
                self._note_down(
                    RetryableError(sink_unreachable(self.sink_name, self._sink_settings, exc))
                )
                self._report_backlog()
                self._stop.wait(backoff)
                backoff = min(backoff * retry.multiplier, retry.max_backoff_ms / 1000)
                continue
            self.status.opened = True
            self._note_up()
            self._close_lag_probe()  # the consumer reports lag from now on
            return

    def _rejoin(self, fatal: kafka_clients.ConsumerFatal, group: str) -> None:
        """A consumer refused because a member that never left still holds its static id (the
        crashed process it replaces, until the broker's session timeout): a new consumer tries
        again every few seconds, the loop alive, ``/readyz`` 503 with the reason. Anything else,
        or still refused after ``config_error_exit_s``, stops the worker at once (the wait is
        spent)."""
        since = self._refused_since = self._refused_since or time.monotonic()
        if not fatal.rejoinable or self.status.assigned or self._consumer is None:
            raise fatal
        if time.monotonic() - since >= self._sink_settings.config_error_exit_s:
            fatal.exit_after_s = 0.0
            raise fatal
        if self.status.group_error is None:
            log.warning("%s; joining again", fatal, extra={"sink": self.sink_name})
        self.status.group_error = str(fatal)[:1000]
        self.status.subscribed = False
        self._consumer.close()
        self._consumer = None
        self._pending = None  # nothing was assigned: nothing polled
        again = time.monotonic() + REJOIN_BACKOFF_S
        while time.monotonic() < again and not self._stop.wait(1.0):
            self.status.turned()
        self._consumer = kafka_clients.make_consumer(
            self._settings.kafka, group, **self._options.consumer_overrides
        )
        self._subscribe()

    def _halt(self, exc: ConfigError) -> None:
        """A configuration error stops the worker: nothing more is written or committed (the
        failed batch and the next one are dropped uncommitted), partitions stay paused while
        the group membership is kept, /healthz and /readyz say why; after
        ``config_error_exit_s`` (or a stop) the caller lets the error end the process."""
        wait_s = self._sink_settings.config_error_exit_s
        if isinstance(exc, kafka_clients.ConsumerFatal):
            self._consumer_dead = True  # consumes, pauses and commits nothing more
            wait_s = wait_s if exc.exit_after_s is None else exc.exit_after_s
        reason = str(exc)
        self.status.config_error = reason[:1000]
        self.status.sink_up = False
        metrics.SINK_UP.labels(self.sink_name).set(0)
        log.error(
            "%s sink stopped by a configuration error: %s (nothing is consumed; exiting in %g s)",
            self.sink_name,
            reason,
            wait_s,
            extra={"sink": self.sink_name, "error_class": "configuration"},
        )
        self._pause()
        deadline = time.monotonic() + wait_s
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._consumer is None or self._consumer_dead:
                if self._consumer is None:  # stopped while opening the sink
                    self._report_backlog()
                self._stop.wait(min(remaining, 1.0))
            else:  # rebalances are served, nothing is delivered (paused)
                self._maybe_report_lag()
                try:
                    self._rewind(self._consumer.consume(100, timeout=min(remaining, 1.0)))
                except kafka_clients.ConsumerFatal as fatal:  # the wait goes on: it was said
                    log.error("%s", fatal, extra={"sink": self.sink_name})
                    self._consumer_dead = True

    def _make_dlq(self) -> DeadLetterQueue:
        return open_dead_letter_queue(self._settings.kafka, self.sink_name)

    def _subscribe(self) -> None:
        topics = self._options.topics or self._settings.kafka.subscription()
        assert self._consumer is not None
        self._consumer.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        self.status.subscribed = True

    def _shutdown(self) -> None:
        self.status.subscribed = False
        if self._writer is not None:
            # After a crash a write may still run: let it return before the sink is closed.
            self._writer.shutdown(wait=True)
        if self._dlq is not None:
            try:
                self._dlq.flush()
            except (RetryableError, ConfigError):  # said; the records are consumed again
                log.exception("DLQ flush failed at shutdown", extra={"sink": self.sink_name})
        if self._consumer is not None:
            self._consumer.close()
        self._close_lag_probe()
        self._sink.close()
        log.info("worker stopped", extra={"sink": self.sink_name})

    # -- the loop --------------------------------------------------------------------------

    def _turn(self) -> None:
        self.status.turned()
        ready = self._settle(self._next_batch)
        if ready is not None:
            self._start_write(ready)
        self._maybe_report_lag()

    def _next_batch(self) -> _InFlight | None:
        """Poll and decode batch N+1 while the sink writes N, then complete N (DLQ, commit)."""
        batch = self._poll_batch()
        ready = self._prepare(batch) if batch.messages else None
        self._complete_in_flight()
        return ready

    def _settle(self, step: Callable[[], T]) -> T | None:
        """``step()``, or None if a stop cut it short while the sink was down."""
        try:
            return step()
        except RetryableError:
            if not self._stop.is_set():
                raise
            log.warning(
                "stopping with batches undelivered; they will be consumed again",
                extra={"sink": self.sink_name},
            )
            return None

    def _poll_batch(self) -> _Batch:
        """Consume up to the batch limits; complete the batch in flight as soon as it is written."""
        limits = self._sink_settings.batch
        assert self._consumer is not None
        deadline = time.monotonic() + limits.max_wait_ms / 1000
        batch = self._pending = _Batch()
        while len(batch.messages) < limits.max_events and batch.bytes < limits.max_bytes:
            if self._in_flight is not None and self._written(self._in_flight):
                self._complete_in_flight()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                break
            if self._in_flight is not None:  # come back soon to complete it
                remaining = min(remaining, IN_FLIGHT_POLL_S)
            wanted = min(limits.max_events - len(batch.messages), 1000)
            for message in self._consumer.consume(wanted, timeout=remaining):
                if self._is_data(message):
                    batch.messages.append(message)
                    batch.bytes += len(message.value() or b"") + len(message.key() or b"")
        return batch

    @staticmethod
    def _written(flight: _InFlight) -> bool:
        return flight.write is None or flight.write.done()

    def _is_data(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        self._raise_if_fatal(error)
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", error.str(), extra={"sink": self.sink_name})
        return False

    def _raise_if_fatal(self, error: KafkaError) -> None:
        group = self._options.group or kafka_clients.group_id(self._settings.kafka, self.sink_name)
        fatal = kafka_clients.consumer_fatal(error, self._settings.kafka, group)
        if fatal is not None:
            raise fatal

    # -- one batch -------------------------------------------------------------------------

    def _prepare(self, batch: _Batch) -> _InFlight:
        metrics.EVENTS_CONSUMED.labels(self.sink_name).inc(len(batch.messages))
        events: list[ChangeEvent] = []
        failures: list[Failure] = []
        timestamps: list[int] = []
        for message in batch.messages:
            origin = origin_of(message)
            if origin.timestamp_ms is not None and origin.timestamp_ms > 0:
                timestamps.append(origin.timestamp_ms)
            routed = self._decode_and_route(origin, failures)
            if routed is not None:
                events.append(routed)
        return _InFlight(batch, events, failures, timestamps)

    def _decode_and_route(self, origin: Origin, failures: list[Failure]) -> ChangeEvent | None:
        try:
            event = self._decoder.decode(origin)
        except DecodeError as exc:
            failures.append(Failure(origin, "decode", exc))
            return None
        if event is None:
            return None
        try:
            return self._router.route(event)
        except MappingError as exc:
            failures.append(Failure(origin, "route", exc, event))
            return None

    def _start_write(self, flight: _InFlight) -> None:
        assert self._in_flight is None and self._writer is not None  # one batch in flight
        flight.started = time.monotonic()
        if flight.events:
            events = flight.events
            flight.write = self._writer.submit(self._timed, lambda: write_once(self._sink, events))
        self._in_flight, self._pending = flight, None

    def _complete_in_flight(self) -> None:
        """Wait for the batch in flight to be written, then dead-letter and commit it."""
        flight = self._in_flight
        if flight is None:
            return
        try:
            outcome = self._outcome(flight)
            self._dead_letter(flight.failures + outcome.failures, max(outcome.attempts, 1))
            self._commit(flight.batch)
        finally:
            self._in_flight = None
        metrics.observe_all(
            metrics.END_TO_END_LATENCY.labels(self.sink_name), _ages_s(flight.timestamps)
        )
        metrics.BATCH_SECONDS.labels(self.sink_name).observe(time.monotonic() - flight.started)

    def _outcome(self, flight: _InFlight) -> WriteOutcome:
        """The first attempt's result; if it failed, the batch is written again with retries,
        bisected, or (a configuration error) not at all."""
        if flight.write is None:
            return WriteOutcome()
        self._await(flight.write)  # until the writer thread is done with the sink
        error = flight.write.exception()
        if error is None:
            return WriteOutcome(flight.write.result(), attempts=1)
        if not isinstance(error, Exception):
            raise error
        return self._delivery().write(flight.events, failed_first=as_retryable(error))

    def _delivery(self) -> Delivery:
        hooks = DeliveryHooks(
            wait=self._wait_while_down,
            stopping=self._stop.is_set,
            on_down=self._note_down,
            on_up=self._note_up,
            on_retry=metrics.RETRIES.labels(self.sink_name).inc,
            call=self._call_sink,
        )
        return Delivery(self._sink, self._sink_settings.retry, hooks)

    # -- calls to the sink -----------------------------------------------------------------

    def _call_sink(self, call: SinkCall) -> Sequence[Failure]:
        """One call to the sink on the writer thread (a retry, a bisection half), awaited with
        the loop alive."""
        assert self._writer is not None
        future = self._writer.submit(self._timed, call)
        self._await(future)
        return future.result()

    def _timed(self, call: Callable[[], T]) -> T:
        """``call()``, known to /readyz while it runs (a call unanswered past the store's
        timeout is reported as a hung store)."""
        self.status.call_started = time.monotonic()
        try:
            return call()
        finally:
            self.status.call_started = None

    def _await(self, future: Future[T]) -> None:
        """Return once ``future`` is done. A call that runs long (a hung store, until its
        timeout fires) does not stop the loop: every ``CALL_SLICE_S`` the partitions are paused
        and the consumer polled, so rebalances are served, the group membership survives and
        /healthz stays 200 (while /readyz reports the store hung)."""
        paused_here = False
        try:
            while True:
                try:
                    future.exception(timeout=CALL_SLICE_S)
                    return
                except FutureTimeout:
                    pass
                self.status.turned()
                if self._consumer is not None:
                    if not self._paused:
                        self._pause()
                        paused_here = True
                    self._rewind(self._consumer.consume(100, timeout=0.1))
                    self._maybe_report_lag()
        finally:
            if paused_here and self.status.sink_up:
                self._resume()

    def _dead_letter(self, failures: list[Failure], attempts: int) -> None:
        if not failures:
            return
        assert self._dlq is not None
        for failure in failures:
            self._dlq.send(failure, attempts if failure.stage == "write" else 1)
            metrics.DLQ_RECORDS.labels(self.sink_name, failure.stage).inc()
            log.warning(
                "record dead-lettered",
                extra={
                    "sink": self.sink_name,
                    "stage": failure.stage,
                    "error_class": failure.error_class,
                    "error": str(failure.error)[:500],
                    "topic": failure.origin.topic,
                    "partition": failure.origin.partition,
                    "offset": failure.origin.offset,
                },
            )
        self._dlq.flush()

    def _commit(self, batch: _Batch) -> None:
        offsets = next_offsets(batch.messages, exclude=batch.revoked)
        if self._options.commit_metadata is not None:
            offsets = with_metadata(offsets, self._options.commit_metadata)
        if not offsets:
            return
        assert self._consumer is not None
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0]
            self._raise_if_fatal(error)
            # A skipped commit is safe: the next batch's offsets cover these records too, and a
            # crash before then re-delivers them (idempotent writes).
            if error.code() not in _BENIGN_COMMIT_ERRORS and not error.retriable():
                raise
            log.warning("commit skipped: %s", error.str(), extra={"sink": self.sink_name})
            return
        if self._options.after_commit is not None and self._options.after_commit(offsets):
            self._stop.set()

    # -- a sink that is down ---------------------------------------------------------------

    def _wait_while_down(self, seconds: float) -> None:
        """Keep the group membership alive while the sink is down: poll with partitions paused."""
        assert self._consumer is not None
        self._pause()
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            self.status.turned()
            self._maybe_report_lag()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # Paused partitions deliver nothing; rebalance callbacks run in here.
            self._rewind(self._consumer.consume(100, timeout=min(remaining, 1.0)))

    def _rewind(self, messages: list[Message]) -> None:
        """Messages that slipped through while paused are read again after resuming."""
        first: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                self._raise_if_fatal(error)
            else:
                topic, partition, offset = position(message)
                first[(topic, partition)] = min(first.get((topic, partition), offset), offset)
        assert self._consumer is not None
        for (topic, partition), offset in first.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))

    def _pause(self) -> None:
        if not self._paused and self._consumer is not None and not self._consumer_dead:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True

    def _resume(self) -> None:
        if self._paused and self._consumer is not None:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False

    def _note_down(self, exc: RetryableError) -> None:
        if self.status.sink_up:
            log.warning("sink down: %s", exc, extra={"sink": self.sink_name})
        self.status.sink_up = False
        self.status.last_error = str(exc)[:500]
        metrics.SINK_UP.labels(self.sink_name).set(0)

    def _note_registry(self, reason: str | None) -> None:
        """The schema registry being retried (the loop blocks on it): ``/readyz`` says why."""
        self.status.registry_error = reason

    def _note_up(self) -> None:
        if not self.status.sink_up:
            log.info("sink back up", extra={"sink": self.sink_name})
        self.status.sink_up = True
        metrics.SINK_UP.labels(self.sink_name).set(1)
        self._resume()

    # -- rebalance callbacks ---------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info(
            "partitions assigned",
            extra={"sink": self.sink_name, "partitions": describe(partitions)},
        )
        self.status.assigned = True  # even none: the group answered
        self.status.group_error = None
        for batch in self._held():
            batch.revoked.difference_update((tp.topic, tp.partition) for tp in partitions)
        if self._options.on_assign is not None:
            self._options.on_assign(consumer, partitions)
        if self._paused:
            consumer.pause(partitions)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info(
            "partitions revoked",
            extra={"sink": self.sink_name, "partitions": describe(partitions)},
        )
        for batch in self._held():
            batch.revoked.update((tp.topic, tp.partition) for tp in partitions)
        for tp in partitions:
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(self.sink_name, tp.topic, str(tp.partition))

    def _held(self) -> list[_Batch]:
        """The batches polled but not committed yet: the one in flight and the next one."""
        flight = [self._in_flight.batch] if self._in_flight is not None else []
        return flight + ([self._pending] if self._pending is not None else [])

    # -- lag -------------------------------------------------------------------------------

    def _maybe_report_lag(self) -> None:
        """Every LAG_REPORT_INTERVAL_S, from every loop that turns: the normal one, and those
        that wait while the sink is down, hung or misconfigured (lag keeps growing then)."""
        now = time.monotonic()
        if now < self._next_lag_report or self._consumer is None or self._consumer_dead:
            return
        self._next_lag_report = now + LAG_REPORT_INTERVAL_S
        assignment = self._consumer.assignment()
        if not assignment:
            return
        # Paused partitions fetch nothing, so the ends the last fetches brought go stale while
        # the sink is down: ask the brokers then (bounded: one request per partition leader
        # every LAG_REPORT_INTERVAL_S, waited for at most END_OFFSETS_TIMEOUT_S).
        ends = kafka_clients.end_offsets(self._consumer, assignment) if self._paused else None
        for tp in self._consumer.position(assignment):
            if ends is None:
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            else:
                high = ends.get((tp.topic, tp.partition), -1)
            if tp.offset >= 0 and high >= 0:
                metrics.CONSUMER_LAG.labels(self.sink_name, tp.topic, str(tp.partition)).set(
                    max(0, high - tp.offset)
                )

    def _report_backlog(self) -> None:
        """Lag before there is a consumer (the sink does not open yet): every
        LAG_REPORT_INTERVAL_S the brokers say what the group has still to read, its committed
        offsets against the partitions' ends, asked in the background (``kafka.BacklogProbe``)."""
        now = time.monotonic()
        if now < self._next_lag_report:
            return
        self._next_lag_report = now + LAG_REPORT_INTERVAL_S
        kafka = self._settings.kafka
        if self._lag_probe is None:
            group = self._options.group or kafka_clients.group_id(kafka, self.sink_name)
            topics = self._options.topics or kafka.subscription()
            overrides = self._options.consumer_overrides
            self._lag_probe = kafka_clients.BacklogProbe(
                kafka, group, topics, self._set_lag, **overrides
            )
        self._lag_probe.ask()

    def _set_lag(self, backlog: kafka_clients.Backlog) -> None:
        for (topic, partition), behind in backlog.items():
            metrics.CONSUMER_LAG.labels(self.sink_name, topic, str(partition)).set(behind)

    def _close_lag_probe(self) -> None:
        if self._lag_probe is not None:
            self._lag_probe.close()
            self._lag_probe = None


def _ages_s(timestamps: list[int]) -> list[float]:
    now_ms = time.time() * 1000
    return [max(0.0, now_ms - timestamp) / 1000 for timestamp in timestamps]
