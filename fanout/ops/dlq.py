"""Reading a sink's dead-letter queue (``<dlq_prefix>.<sink>``): ``fanout dlq ls`` and ``show``.

Read-only: entries are read without a consumer group from each partition's start up to the
end offsets seen when the command starts, and nothing is committed. An entry is named by its
place in the DLQ, ``<partition>:<offset>``. What an entry says comes from the headers
``fanout/runtime/dlq.py`` writes; the source table is found by decoding the original value with the
sink's decoder (None when the record does not decode — a ``decode``-stage failure).

Which entries were replayed is kept in the compacted ledger topic
``<dlq_prefix>.<sink>.replayed`` (written by ``fanout/ops/replay.py``), keyed by the entry's
``<partition>:<offset>``; an entry counts as replayed only if the ledger also names the same
``failed_at``, so a DLQ topic deleted and created again (offsets restart) is not mistaken for
the old one.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from fanout.debezium.avro import MAGIC, read_datum
from fanout.debezium.envelope import Decoder
from fanout.debezium.registry import SchemaRegistry
from fanout.errors import ConfigError, DecodeError
from fanout.events import Origin
from fanout.ops.offsets import TP, KafkaOffsets, iso_ms
from fanout.runtime.dlq import ORIGINAL_KEY_BYTES, ORIGINAL_VALUE_BYTES, TRUNCATED
from fanout.runtime.kafka import dlq_topic, make_consumer
from fanout.settings import KafkaSettings

LEDGER_SUFFIX = ".replayed"
MESSAGE_WIDTH = 60
SHOWN_DEPTH = 32  # `dlq show` cuts JSON nested deeper (a record may nest thousands of levels)
SHOWN_TEXT_CHARS = 4000  # of a text the JSON parser cannot take whole (shown as text)
# These commands are interactive: a schema registry away is reported, not waited out for the
# worker's kafka.schema_registry.unavailable_after_s.
REGISTRY_WAIT_S = 3.0


def ledger_topic(kafka: KafkaSettings, sink: str) -> str:
    return dlq_topic(kafka, sink) + LEDGER_SUFFIX


def parse_ref(text: str) -> tuple[int, int]:
    """``3:1200`` -> (3, 1200); a bare offset means partition 0."""
    partition, _, offset = text.strip().rpartition(":")
    try:
        return int(partition or 0), int(offset)
    except ValueError:
        raise ValueError(f"{text!r} is not an entry: use <partition>:<offset>, e.g. 0:42") from None


@dataclass(frozen=True)
class DlqEntry:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None = None

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return None

    def _int(self, name: str) -> int | None:
        text = self.header(name)
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            return None

    @property
    def stage(self) -> str:
        return self.header("fanout.error.stage") or "?"

    @property
    def error_class(self) -> str:
        return self.header("fanout.error.class") or "?"

    @property
    def error_message(self) -> str:
        return self.header("fanout.error.message") or ""

    @property
    def attempts(self) -> int:
        return self._int("fanout.attempts") or 0

    @property
    def failed_at_ms(self) -> int | None:
        return self._int("fanout.failed_at") or self.timestamp_ms

    @property
    def truncated(self) -> bool:
        """Stored cut to the DLQ topic's size limit: the original is at its origin."""
        return self.header(TRUNCATED) == "true"

    def original_sizes(self) -> dict[str, int | None]:
        """The original key's and value's sizes in bytes (a truncated entry's headers)."""
        return {
            "key_bytes": self._int(ORIGINAL_KEY_BYTES),
            "value_bytes": self._int(ORIGINAL_VALUE_BYTES),
        }

    def origin(self) -> Origin:
        """The original record as the sink first saw it (headers keep the attempt count)."""
        return Origin(
            topic=self.header("fanout.origin.topic") or "",
            partition=self._int("fanout.origin.partition") or 0,
            offset=self._int("fanout.origin.offset") or 0,
            timestamp_ms=self._int("fanout.origin.timestamp"),
            key=self.key,
            value=self.value,
            headers=self.headers,
        )

    def summary(self, table: str | None, replayed: bool) -> dict[str, Any]:
        origin = self.origin()
        return {
            "entry": self.ref,
            "partition": self.partition,
            "offset": self.offset,
            "failed_at": iso_ms(self.failed_at_ms),
            "failed_at_ms": self.failed_at_ms,
            "stage": self.stage,
            "error_class": self.error_class,
            "error": self.error_message,
            "attempts": self.attempts,
            "table": table,
            "origin": {
                "topic": origin.topic,
                "partition": origin.partition,
                "offset": origin.offset,
                "timestamp": iso_ms(origin.timestamp_ms),
            },
            "replayed": replayed,
            "truncated": self.truncated,
        }

    def detail(
        self, table: str | None, replayed: bool, avro: AvroView | None = None
    ) -> dict[str, Any]:
        shown_key, key_note = _shown(self.key, "key", avro)
        shown_value, value_note = _shown(self.value, "value", avro)
        detail = {
            **self.summary(table, replayed),
            "headers": {name: raw.decode("utf-8", "replace") for name, raw in self.headers},
            "key": shown_key,
            "value": shown_value,
        }
        notes = {"key": key_note, "value": value_note}
        if self.truncated:
            detail["original"] = self.original_sizes()
            notes["truncated"] = _truncation_note(self)
        if any(notes.values()):
            detail["notes"] = {name: note for name, note in notes.items() if note}
        return detail


def _truncation_note(entry: DlqEntry) -> str:
    sizes, origin = entry.original_sizes(), entry.origin()
    return (
        f"stored truncated to the DLQ topic's size limit (the original key had"
        f" {sizes['key_bytes']} bytes, the value {sizes['value_bytes']}); the whole record is"
        f" at {origin.topic}[{origin.partition}]@{origin.offset} while that topic keeps it"
    )


def interactive(kafka: KafkaSettings) -> KafkaSettings:
    """``kafka`` with the schema registry waited on for ``REGISTRY_WAIT_S`` at most."""
    registry = kafka.schema_registry
    wait = min(registry.unavailable_after_s, REGISTRY_WAIT_S)
    short = registry.model_copy(update={"unavailable_after_s": wait})
    return kafka.model_copy(update={"schema_registry": short})


class AvroView:
    """Confluent-framed Avro keys and values (``kafka.value_format`` / ``key_format`` avro)
    decoded for reading with the writer schemas of the configured registry."""

    def __init__(self, kafka: KafkaSettings) -> None:
        forms = {"key": kafka.key_format or kafka.value_format, "value": kafka.value_format}
        self._avro = {what for what, form in forms.items() if form == "avro"}
        self._registry = (
            SchemaRegistry.connect(interactive(kafka).schema_registry) if self._avro else None
        )

    def shown(self, raw: bytes | None, what: str) -> tuple[Any, str | None] | None:
        """``(shown, note)`` of a framed Avro ``what`` (key or value); None for anything else."""
        if self._registry is None or what not in self._avro or not raw or raw[0] != MAGIC:
            return None
        try:
            schema_id, record = read_datum(raw, self._registry, what)
        except (DecodeError, ConfigError) as exc:  # unknown id, a bad datum, the registry away
            return repr(raw), f"{what} shown as raw bytes, not decoded: {exc}"
        shown, cut = _cut_nesting(record, SHOWN_DEPTH)
        note = (
            f"{what} is Confluent Avro, shown decoded with schema id {schema_id} from the"
            f" schema registry {self._registry.url}"
        )
        if cut:
            note += f"; nested deeper than {SHOWN_DEPTH} levels: the deeper levels are cut"
        return shown, note


def _shown(raw: bytes | None, what: str, avro: AvroView | None) -> tuple[Any, str | None]:
    decoded = avro.shown(raw, what) if avro is not None else None
    return decoded if decoded is not None else _readable(raw)


def _readable(raw: bytes | None) -> tuple[Any, str | None]:
    """``(shown, note)``: JSON as the structure it holds (nesting cut at ``SHOWN_DEPTH``),
    other text as a string, other bytes as their repr; the note says what was cut."""
    if raw is None:
        return None, None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return repr(raw), None
    try:
        document = json.loads(text)
    except RecursionError:
        shown = text[:SHOWN_TEXT_CHARS]
        return shown, (
            f"JSON nested too deep to parse: shown as text, the first {len(shown)} of"
            f" {len(text)} characters"
        )
    except ValueError:
        return text, None
    shown, cut = _cut_nesting(document, SHOWN_DEPTH)
    note = (
        f"JSON nested deeper than {SHOWN_DEPTH} levels: the deeper levels are cut" if cut else None
    )
    return shown, note


def _cut_nesting(value: Any, levels: int) -> tuple[Any, bool]:
    """``value`` with containers below ``levels`` replaced by a marker; whether any was."""
    if not isinstance(value, dict | list):
        return value, False
    if levels <= 0:
        return f"… ({'object' if isinstance(value, dict) else 'array'} cut)", True
    cut = False
    if isinstance(value, dict):
        shown: dict[str, Any] = {}
        for name, item in value.items():
            shown[name], item_cut = _cut_nesting(item, levels - 1)
            cut = cut or item_cut
        return shown, cut
    items = []
    for item in value:
        shown_item, item_cut = _cut_nesting(item, levels - 1)
        items.append(shown_item)
        cut = cut or item_cut
    return items, cut


# -- reading -----------------------------------------------------------------------------------


def read_bounded(kafka: KafkaSettings, topic: str, offsets: KafkaOffsets) -> Iterator[Message]:
    """Every record of ``topic`` below the end offsets it has now, partition by partition."""
    partitions = offsets.partitions([topic])
    ends = offsets.ends(partitions)
    starts = offsets.starts(partitions)
    pending = {tp: ends[tp] for tp in partitions if ends[tp] > starts[tp]}
    if not pending:
        return
    consumer = make_consumer(
        kafka, f"{kafka.group_prefix}-dlq-reader", **{"enable.partition.eof": True}
    )
    try:
        consumer.assign([TopicPartition(t, p, starts[(t, p)]) for t, p in pending])
        yield from _drain(consumer, pending, offsets.timeout_s)
    finally:
        consumer.close()


def _reader(kafka: KafkaSettings) -> Consumer:
    """A consumer that never joins its group: partitions are assigned, nothing is committed."""
    return make_consumer(
        kafka, f"{kafka.group_prefix}-dlq-reader", **{"enable.partition.eof": True}
    )


def _drain(consumer: Consumer, pending: dict[TP, int], stall_s: float) -> Iterator[Message]:
    deadline = time.monotonic() + stall_s
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading stalled for {stall_s}s; left: {sorted(pending)}")
        for message in consumer.consume(500, timeout=1.0):
            tp = (message.topic() or "", message.partition() or 0)
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(f"reading {tp[0]}: {error.str()}")
            deadline = time.monotonic() + stall_s
            if error is None and (message.offset() or 0) < pending.get(tp, -1):
                yield message
            offset = (message.offset() or 0) + (0 if error is not None else 1)
            if tp in pending and offset >= pending[tp]:
                del pending[tp]


def read_entries(kafka: KafkaSettings, sink: str, offsets: KafkaOffsets) -> Iterator[DlqEntry]:
    for message in read_bounded(kafka, dlq_topic(kafka, sink), offsets):
        yield _entry(message)


def read_entry(
    kafka: KafkaSettings, sink: str, ref: tuple[int, int], offsets: KafkaOffsets
) -> DlqEntry | None:
    """The entry at ``<partition>:<offset>``, None if there is none."""
    topic = dlq_topic(kafka, sink)
    tp = (topic, ref[0])
    if tp not in offsets.partitions([topic]) or ref[1] >= offsets.ends([tp])[tp]:
        return None
    consumer = _reader(kafka)
    try:
        consumer.assign([TopicPartition(topic, ref[0], ref[1])])
        for message in _drain(consumer, {tp: ref[1] + 1}, offsets.timeout_s):
            if message.offset() == ref[1]:
                return _entry(message)
        return None
    finally:
        consumer.close()


def _entry(message: Message) -> DlqEntry:
    kind, ts = message.timestamp()
    return DlqEntry(
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
        headers=_headers(message),
        timestamp_ms=ts if kind != 0 and ts >= 0 else None,
    )


def _headers(message: Message) -> tuple[tuple[str, bytes], ...]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple((key, _bytes(value)) for key, value in pairs)


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return b"" if value is None else str(value).encode()


def read_ledger(kafka: KafkaSettings, sink: str, offsets: KafkaOffsets) -> dict[str, int | None]:
    """Replayed entries: ``<partition>:<offset>`` -> the ``failed_at`` they had (newest wins)."""
    replayed: dict[str, int | None] = {}
    for message in read_bounded(kafka, ledger_topic(kafka, sink), offsets):
        key = (message.key() or b"").decode()
        try:
            replayed[key] = json.loads(message.value() or b"{}").get("failed_at_ms")
        except (ValueError, AttributeError):
            continue
    return replayed


def is_replayed(entry: DlqEntry, ledger: dict[str, int | None]) -> bool:
    return entry.ref in ledger and ledger[entry.ref] == entry.failed_at_ms


# -- selecting ---------------------------------------------------------------------------------


class TableResolver:
    """The source table of an entry, from its original key and value."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._decoder = Decoder.from_settings(interactive(kafka))

    def table_of(self, entry: DlqEntry) -> str | None:
        """None when the record does not decode; ConfigError if the schema registry is away
        (``REGISTRY_WAIT_S``) or refuses: a ``--table`` filter could not be applied."""
        try:
            event = self._decoder.decode(entry.origin())
        except DecodeError:
            return None
        return None if event is None else event.table

    def table_if_known(self, entry: DlqEntry) -> str | None:
        """``table_of``, None also when the schema registry cannot tell (``dlq show``)."""
        try:
            return self.table_of(entry)
        except ConfigError:
            return None


@dataclass(frozen=True)
class Filters:
    """Which entries a command takes; every given filter must match (empty = any)."""

    error_classes: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()  # globs on schema.table
    since_ms: int | None = None  # on failed_at
    until_ms: int | None = None
    entries: frozenset[tuple[int, int]] = field(default_factory=frozenset)
    pending_only: bool = False

    def matches(self, entry: DlqEntry, table: str | None, replayed: bool) -> bool:
        failed_at = entry.failed_at_ms or 0
        checks = (
            not self.entries or (entry.partition, entry.offset) in self.entries,
            not self.error_classes or entry.error_class in self.error_classes,
            not self.stages or entry.stage in self.stages,
            not self.tables or _table_matches(table, self.tables),
            self.since_ms is None or failed_at >= self.since_ms,
            self.until_ms is None or failed_at < self.until_ms,
            not (self.pending_only and replayed),
        )
        return all(checks)


def _table_matches(table: str | None, globs: tuple[str, ...]) -> bool:
    return table is not None and any(fnmatch.fnmatchcase(table, glob) for glob in globs)


@dataclass(frozen=True)
class Selected:
    entry: DlqEntry
    table: str | None
    replayed: bool


def select(
    entries: Iterable[DlqEntry],
    filters: Filters,
    resolver: TableResolver,
    ledger: dict[str, int | None],
) -> Iterator[Selected]:
    for entry in entries:
        replayed = is_replayed(entry, ledger)
        table = resolver.table_of(entry)
        if filters.matches(entry, table, replayed):
            yield Selected(entry, table, replayed)


# -- text output -------------------------------------------------------------------------------

_COLUMNS = (
    "ENTRY",
    "FAILED AT",
    "STAGE",
    "ERROR CLASS",
    "ATT",
    "TABLE",
    "ORIGIN",
    "REPLAYED",
    "MESSAGE",
)


def render_table(rows: list[Selected]) -> str:
    cells = [_COLUMNS] + [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )


def _cells(row: Selected) -> tuple[str, ...]:
    entry, origin = row.entry, row.entry.origin()
    message = " ".join(entry.error_message.split())
    if len(message) > MESSAGE_WIDTH:
        message = message[: MESSAGE_WIDTH - 1] + "…"
    return (
        entry.ref,
        iso_ms(entry.failed_at_ms) or "-",
        entry.stage,
        entry.error_class,
        str(entry.attempts),
        row.table or "-",
        f"{origin.topic}[{origin.partition}]@{origin.offset}",
        "yes" if row.replayed else "no",
        message,
    )


def render_detail(row: Selected, avro: AvroView | None = None) -> str:
    detail = row.entry.detail(row.table, row.replayed, avro)
    lines = [f"entry {detail['entry']} of the DLQ"]
    for name in ("failed_at", "stage", "error_class", "attempts", "table", "replayed"):
        lines.append(f"  {name}: {detail[name]}")
    origin = detail["origin"]
    lines.append(
        f"  origin: {origin['topic']}[{origin['partition']}]@{origin['offset']} "
        f"({origin['timestamp'] or 'no timestamp'})"
    )
    lines.append(f"  error: {detail['error']}")
    for note in detail.get("notes", {}).values():
        lines.append(f"  note: {note}")
    lines.append("headers:")
    lines.extend(f"  {key}: {value}" for key, value in detail["headers"].items())
    lines.append("key:")
    lines.append(_indent(json.dumps(detail["key"], indent=2, ensure_ascii=False)))
    lines.append("value:")
    lines.append(_indent(json.dumps(detail["value"], indent=2, ensure_ascii=False)))
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
