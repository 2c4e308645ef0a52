"""``fanout dlq replay``: send dead-lettered records through the sink again, after a fix.

Each selected entry goes the live worker's way with today's settings: decode, route, then the
sink's ``write`` through :class:`~fanout.runtime.delivery.Delivery` (retries while the sink is down,
bisection for poison records). The record is rebuilt as it first arrived (origin topic,
partition, offset and timestamp from the headers), so what fails again is dead-lettered again
with the same origin and ``fanout.attempts`` raised by the attempts this replay made — a new
entry, which a later replay may take.

Every handled entry is then recorded in the ledger topic ``<dlq_prefix>.<sink>.replayed``
(compacted, key ``<partition>:<offset>``, value ``{"failed_at_ms", "outcome",
"replayed_at_ms"}``) with its outcome: ``written``, ``failed`` (back in the DLQ as a new entry)
or ``skipped`` (decodes to nothing, or the sink's routing no longer takes its table). A second
replay leaves recorded entries alone, with or without filters.

An entry stored truncated (too large for the DLQ topic) is replayed from the whole record,
read back from its origin (``fanout.ops.originals``). Where that is no longer to be had (the
source topic's retention or compaction removed it, the topic was recreated), the entry is
``unavailable``: not replayed, not recorded (it stays pending), said why, and the replay goes
on with the rest (exit 4, as for entries that failed again).

Delivery guarantee: at least once. The ledger is written only after the batch's sink write and
the DLQ flush; a replay killed in between replays those entries again next time, which the
version-guarded idempotent writes make harmless. ``--dry-run`` decodes and routes only: it
writes nothing to the sink, the DLQ or the ledger.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.cimpl import NewTopic  # what confluent_kafka.admin re-exports

from fanout.debezium.envelope import Decoder
from fanout.errors import DecodeError, MappingError, RetryableError
from fanout.events import ChangeEvent, Failure, Origin
from fanout.ops.dlq import DlqEntry, ledger_topic
from fanout.ops.originals import Originals, OriginalUnavailable
from fanout.runtime.delivery import Delivery, DeliveryHooks
from fanout.runtime.dlq import DeadLetterQueue, open_dead_letter_queue
from fanout.runtime.kafka import make_admin, make_producer
from fanout.runtime.routing import Router
from fanout.settings import Settings
from sinks import create_sink
from sinks.base.contract import Sink

log = logging.getLogger(__name__)

WRITTEN, FAILED, SKIPPED, UNAVAILABLE = "written", "failed", "skipped", "unavailable"
_REHEARSED = {
    WRITTEN: "would_write",
    FAILED: "would_fail",
    SKIPPED: "would_skip",
    UNAVAILABLE: UNAVAILABLE,  # a fact, not a rehearsal: the original cannot be read
}


@dataclass
class EntryOutcome:
    entry: str
    outcome: str  # written | failed | skipped | unavailable; --dry-run: would_write | ...
    stage: str | None = None  # where it failed again (``fetch``: its original is unavailable)
    error_class: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {"entry": self.entry, "outcome": self.outcome}
        if self.error_class is not None:
            body.update(stage=self.stage, error_class=self.error_class, error=self.error)
        return body


@dataclass
class ReplaySummary:
    dry_run: bool
    outcomes: list[EntryOutcome] = field(default_factory=list)
    already_replayed: int = 0
    interrupted: bool = False  # stopped by a signal before every selected entry was handled

    def count(self, outcome: str) -> int:
        wanted = _REHEARSED[outcome] if self.dry_run else outcome
        return sum(1 for o in self.outcomes if o.outcome == wanted)

    def as_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "selected": len(self.outcomes),
            "written": self.count(WRITTEN),
            "failed": self.count(FAILED),
            "skipped": self.count(SKIPPED),
            "unavailable": self.count(UNAVAILABLE),
            "already_replayed": self.already_replayed,
            "interrupted": self.interrupted,
            "entries": [o.as_json() for o in self.outcomes],
        }


class Ledger:
    """Appends replayed entries to the compacted ledger topic; ``flush`` waits for the acks."""

    def __init__(self, settings: Settings, sink: str) -> None:
        self.topic = ledger_topic(settings.kafka, sink)
        _ensure_compacted(settings, self.topic)
        self._producer: Producer = make_producer(settings.kafka)
        self._errors: list[KafkaError] = []

    def record(self, entry: DlqEntry, outcome: str) -> None:
        body = {
            "failed_at_ms": entry.failed_at_ms,
            "outcome": outcome,
            "replayed_at_ms": int(time.time() * 1000),
        }
        self._producer.produce(
            self.topic,
            key=entry.ref.encode(),
            value=json.dumps(body).encode(),
            on_delivery=self._on_delivery,
        )

    def flush(self) -> None:
        remaining = self._producer.flush(30)
        errors, self._errors = self._errors, []
        if remaining or errors:
            reason = errors[0].str() if errors else f"{remaining} record(s) unacknowledged"
            raise RetryableError(f"ledger {self.topic} not acknowledged: {reason}")

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._errors.append(error)


def _ensure_compacted(settings: Settings, topic: str) -> None:
    admin = make_admin(settings.kafka)
    if topic in admin.list_topics(timeout=30).topics:
        return
    config = {"cleanup.policy": "compact"}
    future = admin.create_topics([NewTopic(topic, num_partitions=1, config=config)])[topic]
    try:
        future.result(timeout=30)
    except KafkaException as exc:  # a concurrent replay may have created it first
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


class Replayer:
    """Replays entries in batches of the sink's ``batch.max_events``."""

    def __init__(
        self,
        settings: Settings,
        sink_name: str,
        dry_run: bool = False,
        give_up_after_s: float = 300.0,
    ) -> None:
        self._settings = settings
        self._sink_name = sink_name
        self._sink_settings = settings.sinks.get(sink_name)
        self._dry_run = dry_run
        self._give_up_after_s = give_up_after_s
        self._decoder = Decoder.from_settings(settings.kafka)
        self._router = Router(self._sink_settings.routing)
        self._stop = threading.Event()
        self._give_up_at = 0.0

    def stop(self) -> None:
        self._stop.set()

    def run(self, entries: Sequence[DlqEntry]) -> ReplaySummary:
        summary = ReplaySummary(self._dry_run)
        if not entries:
            return summary
        originals = Originals(self._settings.kafka)
        try:
            if self._dry_run:
                for entry in entries:
                    whole = self._whole(entry, originals)
                    rehearsed = self._rehearse(whole) if isinstance(whole, DlqEntry) else whole
                    summary.outcomes.append(rehearsed)
                return summary
            self._run(entries, originals, summary)
        finally:
            originals.close()
        return summary

    def _run(
        self, entries: Sequence[DlqEntry], originals: Originals, summary: ReplaySummary
    ) -> None:
        sink = create_sink(self._sink_name, self._sink_settings)
        dlq = open_dead_letter_queue(self._settings.kafka, self._sink_name)
        ledger = Ledger(self._settings, self._sink_name)
        try:
            self._open(sink)
            for batch in _batched(entries, self._sink_settings.batch.max_events):
                if self._stop.is_set():
                    summary.interrupted = True
                    break
                summary.outcomes.extend(self._replay(batch, sink, dlq, ledger, originals))
        finally:
            sink.close()

    def _whole(self, entry: DlqEntry, originals: Originals) -> DlqEntry | EntryOutcome:
        """``entry``, or for one stored truncated the whole record from its origin; the
        ``unavailable`` outcome if that cannot be had."""
        if not entry.truncated:
            return entry
        try:
            return originals.fetch(entry)
        except OriginalUnavailable as exc:
            reason = f"stored truncated and the whole record cannot be read back: {exc}"
            log.warning("DLQ entry %s not replayed: %s", entry.ref, reason)
            return EntryOutcome(entry.ref, UNAVAILABLE, "fetch", "OriginalUnavailable", reason)

    # -- one batch -----------------------------------------------------------------------------

    def _replay(
        self,
        batch: list[DlqEntry],
        sink: Sink,
        dlq: DeadLetterQueue,
        ledger: Ledger,
        originals: Originals,
    ) -> list[EntryOutcome]:
        unavailable: dict[str, EntryOutcome] = {}
        whole: list[DlqEntry] = []
        for entry in batch:
            found = self._whole(entry, originals)
            if isinstance(found, EntryOutcome):
                unavailable[entry.ref] = found
            else:
                whole.append(found)
        prepared = [(entry, entry.origin()) for entry in whole]
        refs = {id(origin): entry.ref for entry, origin in prepared}
        events, failures, outcomes = self._decode_and_route(prepared)
        self._give_up_at = time.monotonic() + self._give_up_after_s
        written = self._delivery(sink).write(events)
        for failure in written.failures:
            ref = refs.get(id(failure.origin)) or _ref_by_content(whole, failure.origin)
            outcomes[ref] = _failed(ref, failure)
        failures.extend(written.failures)
        for failure in failures:
            dlq.send(failure, max(written.attempts, 1) if failure.stage == "write" else 1)
        dlq.flush()
        for entry in whole:  # an unavailable entry stays pending: it was not replayed
            ledger.record(entry, outcomes[entry.ref].outcome)
        ledger.flush()
        outcomes.update(unavailable)
        return [outcomes[entry.ref] for entry in batch]

    def _decode_and_route(
        self, prepared: list[tuple[DlqEntry, Origin]]
    ) -> tuple[list[ChangeEvent], list[Failure], dict[str, EntryOutcome]]:
        events: list[ChangeEvent] = []
        failures: list[Failure] = []
        outcomes: dict[str, EntryOutcome] = {}
        for entry, origin in prepared:
            result = self._prepare(origin)
            if isinstance(result, Failure):
                failures.append(result)
                outcomes[entry.ref] = _failed(entry.ref, result)
            elif result is None:
                outcomes[entry.ref] = EntryOutcome(entry.ref, SKIPPED)
            else:
                events.append(result)
                outcomes[entry.ref] = EntryOutcome(entry.ref, WRITTEN)
        return events, failures, outcomes

    def _prepare(self, origin: Origin) -> ChangeEvent | Failure | None:
        try:
            event = self._decoder.decode(origin)
        except DecodeError as exc:
            return Failure(origin, "decode", exc)
        if event is None:
            return None
        try:
            return self._router.route(event)
        except MappingError as exc:
            return Failure(origin, "route", exc, event)

    def _rehearse(self, entry: DlqEntry) -> EntryOutcome:
        result = self._prepare(entry.origin())
        if isinstance(result, Failure):
            outcome = _failed(entry.ref, result)
            outcome.outcome = _REHEARSED[FAILED]
            return outcome
        return EntryOutcome(entry.ref, _REHEARSED[SKIPPED if result is None else WRITTEN])

    # -- the sink ------------------------------------------------------------------------------

    def _open(self, sink: Sink) -> None:
        self._give_up_at = time.monotonic() + self._give_up_after_s
        backoff = self._sink_settings.retry.initial_backoff_ms / 1000
        while True:
            try:
                sink.open()
                return
            except RetryableError as exc:
                if self._giving_up():
                    raise
                log.warning("sink %s unreachable: %s", self._sink_name, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._sink_settings.retry.max_backoff_ms / 1000)

    def _delivery(self, sink: Sink) -> Delivery:
        hooks = DeliveryHooks(
            wait=self._wait,
            stopping=self._giving_up,
            on_down=lambda exc: log.warning("sink %s down: %s", self._sink_name, exc),
        )
        return Delivery(sink, self._sink_settings.retry, hooks)

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _giving_up(self) -> bool:
        return self._stop.is_set() or time.monotonic() > self._give_up_at


def _failed(ref: str, failure: Failure) -> EntryOutcome:
    return EntryOutcome(ref, FAILED, failure.stage, failure.error_class, str(failure.error)[:500])


def _ref_by_content(batch: list[DlqEntry], origin: Origin) -> str:
    """Fallback when a sink reported a failure on a copy of the record's origin."""
    for entry in batch:
        if (entry.key, entry.value) == (origin.key, origin.value):
            return entry.ref
    raise RuntimeError(f"sink reported a failure for a record not in the batch: {origin}")


def _batched(entries: Iterable[DlqEntry], size: int) -> Iterator[list[DlqEntry]]:
    batch: list[DlqEntry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
