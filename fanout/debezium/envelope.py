"""Kafka message -> ``ChangeEvent``: Debezium JSON envelopes and the flattened form.

Guarantees: ``Decoder.decode`` is deterministic for a message given what the decoder has seen on
that topic before (only the handling of tombstones depends on that history); it returns a
``ChangeEvent``, ``None`` for a message that carries nothing to apply (a tombstone made redundant
by the delete event before it, a heartbeat, a schema-change or transaction-metadata record, a
logical-decoding message), and raises ``DecodeError`` — and nothing else — for anything it
cannot decode, with the reason in the message. It never blocks and does no I/O, except with
Avro (``avro``): a schema id seen for the first time is fetched from the registry, which may
raise ``ConfigError`` when the registry refuses or stays unreachable (``registry``).

Forms (see docs/ENVELOPES.md): JsonConverter output with ``schemas.enable`` true (``schema`` +
``payload``) or false, for key and value; the full envelope (``before``/``after``/``source``/
``op``) of the Postgres and MySQL connectors; the ``ExtractNewRecordState`` row with its ``__``
fields; tombstones. ``version`` comes from the source position, never from the Kafka offset.

What is refused (``DecodeError``, so the record goes to the DLQ and no sink applies it): a value
that is neither an envelope nor a flattened row — a row counts as flattened only on a topic
declared flattened (``kafka.flattened_topics``) or when it carries the SMT's own fields or
headers (``__deleted``, ``__op``, ``__table``, ``__lsn``, ``__source_*``, …); a value that does
not fit its declared type (``types``); a key column that is null, or that the row gives another
value (sinks would apply the record under different ids); a version beyond int64.

Speed: each message costs one JSON parse of its payload and one of its key payload. The
schema part of a wrapped message is matched by its exact bytes against plans built once per
distinct schema (``_envelope_json.PlanCache``), so it is neither parsed nor walked again.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fanout.debezium.avro import Framing, framing_for
from fanout.debezium.framing import PlanCache
from fanout.debezium.registry import Watch
from fanout.debezium.types import EMPTY_PLAN, RowPlan, plan_row
from fanout.debezium.unavailable import DEFAULT as DEFAULT_PLACEHOLDER
from fanout.debezium.unavailable import Placeholder
from fanout.debezium.versions import Position, describe, resolve_version
from fanout.errors import DecodeError
from fanout.events import ChangeEvent, Op, Origin
from fanout.settings import KafkaSettings, VersionSource

TombstoneMode = Literal["auto", "delete", "skip"]

_UPSERT_OPS = frozenset({"c", "u", "r"})
_NON_DATA_SCHEMAS = ("Heartbeat", "SchemaChangeValue", "TransactionMetadataValue")
_MALFORMED = (AttributeError, TypeError, KeyError, IndexError, ValueError, RecursionError)
# Position fields (as the envelope's source names them) <- ExtractNewRecordState add.fields.
_FLAT_POSITION = (
    ("lsn", "__lsn"),
    ("file", "__file"),
    ("pos", "__pos"),
    ("row", "__row"),
    ("ts_ms", "__source_ts_ms"),
)
# ExtractNewRecordState's metadata with its default "__" prefix, as add.fields puts it in the
# value or add.headers in the headers: ``__deleted`` (delete handling "rewrite"), envelope fields
# (op, ts_ms) and source fields (table, lsn, …; "source.x" becomes "__source_x").
_SMT_FIELDS = frozenset(
    {
        *("__deleted", "__op", "__ts_ms", "__ts_us", "__ts_ns"),
        *("__table", "__schema", "__db", "__lsn", "__file", "__pos", "__row", "__txId"),
        *("__xmin", "__sequence", "__snapshot", "__connector", "__name", "__version"),
        *("__server_id", "__gtid", "__thread", "__query"),
    }
)
_SMT_SOURCE_PREFIX = "__source_"
# Header values are text; these are the position fields a version is made of.
_NUMERIC_META = frozenset({"__lsn", "__pos", "__row", "__source_ts_ms", "__ts_ms"})
MISSING_KEY = (
    "missing key: the message has no key, so the row cannot be identified (a source table "
    "without a primary key cannot be kept in step; give it one or set the connector's "
    "message.key.columns)"
)


@dataclass(frozen=True, slots=True)
class _ValuePlan:
    form: Literal["envelope", "flat", "ignore"]
    row: RowPlan


@dataclass(frozen=True, slots=True)
class _KeyPlan:
    row: RowPlan
    table: str | None  # from the key schema's name "<prefix>.<schema>.<table>.Key"


def _value_plan(schema: Mapping[str, Any]) -> _ValuePlan:
    if schema.get("type") != "struct":
        raise DecodeError(f"value schema is a {schema.get('type')!r}, not a Debezium struct")
    if str(schema.get("name", "")).endswith(_NON_DATA_SCHEMAS):
        return _ValuePlan("ignore", EMPTY_PLAN)
    fields = {field.get("field"): field for field in schema["fields"]}
    if "op" in fields and ("after" in fields or "before" in fields):
        return _ValuePlan("envelope", plan_row(fields.get("after") or fields.get("before")))
    return _ValuePlan("flat", plan_row(schema, skip_meta=True))


def _key_plan(schema: Mapping[str, Any]) -> _KeyPlan:
    parts = str(schema.get("name", "")).split(".")
    table = f"{parts[-3]}.{parts[-2]}" if len(parts) >= 4 and parts[-1] == "Key" else None
    return _KeyPlan(plan_row(schema), table)


def _smt_marked(names: Mapping[str, Any]) -> bool:
    """Whether ``names`` (a row's fields) include ExtractNewRecordState metadata."""
    if not _SMT_FIELDS.isdisjoint(names):
        return True
    return any(name.startswith(_SMT_SOURCE_PREFIX) for name in names)


def _header_meta(headers: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """ExtractNewRecordState metadata put in headers (``add.headers``), with numbers as ints."""
    meta: dict[str, Any] = {}
    for name, raw in headers:
        if name in _SMT_FIELDS or name.startswith(_SMT_SOURCE_PREFIX):
            text = raw.decode("utf-8", "replace") if raw is not None else None
            if name in _NUMERIC_META and text is not None and text.isdigit():
                meta[name] = int(text)
            else:
                meta[name] = text
    return meta


def _disagreement(key: Mapping[str, Any], row: Mapping[str, Any]) -> str | None:
    """Why ``row`` cannot be the row of ``key`` (a key column with another value), or None."""
    for name, value in key.items():
        other = row.get(name, value)  # a key column the row leaves out is not contradicted
        if other != value and not (other != other and value != value):  # NaN is NaN here
            return (
                f"key and value disagree: key column {name!r} is {value!r} in the key but"
                f" {other!r} in the value; sinks would apply it under different ids"
            )
    return None


def _agree(key: Mapping[str, Any], row: Mapping[str, Any]) -> None:
    reason = _disagreement(key, row)
    if reason is not None:
        raise DecodeError(reason)


def _lone_schema(payload: Mapping[str, Any]) -> bool:
    """``{"schema": {…}}`` with no ``payload``: JsonConverter framing missing its half."""
    schema = payload.get("schema")
    return "payload" not in payload and isinstance(schema, dict) and "type" in schema


def _schemaless_form(payload: Mapping[str, Any]) -> Literal["envelope", "flat", "ignore"]:
    if "op" in payload and ("after" in payload or "before" in payload or "source" in payload):
        return "envelope"
    if "ddl" in payload or "tableChanges" in payload or payload.keys() == {"ts_ms"}:
        return "ignore"  # schema change / heartbeat
    if "status" in payload and "data_collections" in payload:
        return "ignore"  # transaction metadata
    return "flat"


def _envelope_row(
    op: Any, payload: dict[str, Any], plan: RowPlan, placeholder: Placeholder | None
) -> tuple[dict[str, Any] | None, Op]:
    if op == "d":
        return None, Op.DELETE
    if op not in _UPSERT_OPS:
        raise DecodeError(f"unknown op {op!r} (expected one of c, u, r, d, t)")
    after = payload.get("after")
    if not isinstance(after, dict):
        raise DecodeError(f"op {op!r} without an 'after' row")
    if placeholder is not None:
        after = placeholder.strip(after)
    return plan.convert(after), Op.UPSERT


def _clock_name(rule: str) -> str:
    return "LSN/binlog position" if rule == "auto" else rule


def table_from_topic(topic: str) -> str:
    """``<prefix>.<schema>.<table>`` -> ``<schema>.<table>``; shorter names are used as is."""
    parts = topic.split(".")
    return ".".join(parts[-2:]) if len(parts) >= 3 else topic


class Decoder:
    """Decodes Kafka messages into change events; one per consumer, reused across batches.

    ``version_source`` maps topic globs to a version source (first match wins, default
    ``"auto"``). ``tombstones``: ``"auto"`` treats a tombstone as a delete unless this decoder
    has seen the topic carry its deletes in-band (a full envelope, or a flattened record with
    ``__deleted``); ``"delete"`` / ``"skip"`` force it. ``flattened_topics``: topic globs whose
    rows are ``ExtractNewRecordState`` output even without its ``__`` fields or headers.
    """

    def __init__(
        self,
        version_source: Mapping[str, VersionSource] | None = None,
        tombstones: TombstoneMode = "auto",
        flattened_topics: Sequence[str] = (),
        unavailable_value_placeholders: Mapping[str, str] | None = None,
        framing: Framing = PlanCache,  # JsonConverter JSON; avro.framing_for: Confluent Avro
    ) -> None:
        self._rules = tuple((version_source or {}).items())
        self._tombstones = tombstones
        self._flattened_globs = tuple(flattened_topics)
        self._flattened: dict[str, bool] = {}  # topic -> declared flattened
        # topic glob -> the connector's unavailable.value.placeholder; topic -> the one it uses
        self._placeholder_rules = tuple(
            (pattern, Placeholder.of(text))
            for pattern, text in (unavailable_value_placeholders or {}).items()
        )
        self._placeholders: dict[str, Placeholder] = {}
        self._topic_rules: dict[str, VersionSource] = {}
        # topic -> whether its deletes arrive as records of their own (then tombstones are
        # redundant); absent until a row on the topic has been seen.
        self._in_band: dict[str, bool] = {}
        self._clocks: dict[str, str] = {}  # topic -> "position" | "time": what versioned it
        self._tables: dict[str, set[str]] = {}  # topic -> source tables seen on it (up to 2)
        self._keyed: set[str] = set()  # tables whose rows have come with a key
        self._values = framing("value", _value_plan)
        self._keys = framing("key", _key_plan)

    @classmethod
    def from_settings(
        cls,
        kafka: KafkaSettings,
        on_registry: Watch | None = None,
        stop: threading.Event | None = None,
    ) -> Decoder:
        """The decoder the ``kafka`` settings describe (version sources, tombstones, forms,
        placeholders); ``on_registry`` hears while an Avro schema registry is unavailable,
        ``stop`` (set) ends the registry's retries."""
        return cls(
            kafka.version_source,
            kafka.tombstones,
            kafka.flattened_topics,
            kafka.unavailable_value_placeholders,
            framing_for(kafka, on_registry, stop),
        )

    def decode(self, origin: Origin) -> ChangeEvent | None:
        try:
            return self._decode(origin)
        except _MALFORMED as exc:
            raise DecodeError(f"malformed Debezium message: {exc!r}") from exc

    def _decode(self, origin: Origin) -> ChangeEvent | None:
        key, raw_key, key_table = self._decode_key(origin.key)
        if not origin.value:
            return self._tombstone(origin, key, key_table)
        plan, payload = self._values.parse(origin.value)
        if payload is None:
            return self._tombstone(origin, key, key_table)
        if not isinstance(payload, dict):
            raise DecodeError(
                f"value is not a Debezium change event: a JSON {type(payload).__name__}"
            )
        if plan is None:
            form, row_plan = _schemaless_form(payload), None
        else:
            form, row_plan = plan.form, plan.row
            if key is not None and raw_key is None:
                # A bare key with a wrapped value: its columns are the row's, typed alike.
                key = raw_key = row_plan.convert(key)
        if form == "envelope":
            return self._from_envelope(origin, payload, row_plan, key, raw_key)
        if form == "flat":
            self._check_flat(origin, payload, plan is None)
            return self._from_flat(origin, payload, row_plan, key, raw_key)
        return None

    def _decode_key(
        self, raw: bytes | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
        """``(key, key as sent, table)``: the key as sent only when it had a schema (a copy
        where converting changed it), to compare with a value that had none."""
        if not raw:
            return None, None, None
        plan, payload = self._keys.parse(raw)
        if payload is None:
            return None, None, None
        if not isinstance(payload, dict):
            raise DecodeError(f"key is not a JSON object but a JSON {type(payload).__name__}")
        if plan is None:
            key, sent = payload, None
        else:
            sent = dict(payload) if plan.row.may_change else payload
            key = plan.row.convert(payload)
        if None in key.values():
            name = next(name for name, value in key.items() if value is None)
            raise DecodeError(f"key column {name!r} is null: the row cannot be identified")
        return key, sent, None if plan is None else plan.table

    def _check_flat(self, origin: Origin, payload: dict[str, Any], schemaless: bool) -> None:
        """Accept ``payload`` as a flattened row only where it is known to be one."""
        if schemaless and _lone_schema(payload):
            raise DecodeError("value is a JsonConverter schema without a payload: nothing to apply")
        topic = origin.topic
        declared = self._flattened.get(topic)
        if declared is None:
            globs = self._flattened_globs
            declared = self._flattened[topic] = any(
                fnmatch.fnmatchcase(topic, glob) for glob in globs
            )
        if declared or _smt_marked(payload) or _smt_marked(dict(origin.headers)):
            return
        fields = ", ".join(sorted(map(str, payload))[:8]) or "none"
        raise DecodeError(
            "value is neither a Debezium envelope (before/after/source/op) nor a known"
            f" flattened row: topic {topic!r} is not in kafka.flattened_topics and the record"
            " carries no ExtractNewRecordState field or header (__deleted, __op, __table,"
            f" __lsn, __source_ts_ms, …); its fields: {fields}"
        )

    def _from_envelope(
        self,
        origin: Origin,
        payload: dict[str, Any],
        row_plan: RowPlan | None,
        key: dict[str, Any] | None,
        raw_key: dict[str, Any] | None,
    ) -> ChangeEvent | None:
        op = payload.get("op")
        if op == "m":
            return None  # a logical-decoding message: no row
        source = payload.get("source") or {}
        table = self._envelope_table(origin.topic, source)
        plan = row_plan or EMPTY_PLAN
        if op == "t":
            key, row, kind = {}, None, Op.TRUNCATE
        else:
            row, kind = _envelope_row(op, payload, plan, self._unavailable(origin))
            key = self._key_or_keyless(table, key)
            image = row if row is not None else payload.get("before")
            if isinstance(image, dict):
                if row is None and row_plan is not None:  # a delete's before-image, unconverted
                    image = row_plan.convert_some({n: image[n] for n in key if n in image})
                sent = key if row_plan is not None else raw_key or key
                if not sent.items() <= image.items():  # in C: the key's pairs are the row's
                    _agree(sent, image)  # raises, unless a column is absent or NaN both sides
            # Only row events show deletes travel in-band (truncates may pass an SMT unflattened).
            self._in_band[origin.topic] = True
        version = self._version(origin, source, "source.", flattened=False)
        ts_ms = source.get("ts_ms")
        return ChangeEvent(kind, table, key, row, version, ts_ms, origin, plan.columns)

    def _from_flat(
        self,
        origin: Origin,
        row: dict[str, Any],
        row_plan: RowPlan | None,
        key: dict[str, Any] | None,
        raw_key: dict[str, Any] | None,
    ) -> ChangeEvent:
        meta = {name: row.pop(name) for name in [name for name in row if name.startswith("__")]}
        if origin.headers:
            meta = _header_meta(origin.headers) | meta  # fields win over headers
        if "__deleted" in meta:
            self._in_band[origin.topic] = True
        else:
            self._in_band.setdefault(origin.topic, False)
        table = self._flat_table(origin.topic, meta)
        key = self._key_or_keyless(table, key)
        position = {name: meta.get(field) for name, field in _FLAT_POSITION}
        version = self._version(origin, position, "__", flattened=True)
        source_ts_ms = position["ts_ms"]
        plan = row_plan or EMPTY_PLAN
        deleted = meta.get("__deleted") in (True, "true") or meta.get("__op") == "d"
        if deleted and row_plan is not None:  # the before-image: its key columns only
            image = row_plan.convert_some({n: row[n] for n in key if n in row})
        else:
            image = row if deleted else plan.convert(row)
        sent = key if row_plan is not None else raw_key or key
        if not sent.items() <= image.items():
            _agree(sent, image)
        if deleted:
            return ChangeEvent(
                Op.DELETE, table, key, None, version, source_ts_ms, origin, plan.columns
            )
        return ChangeEvent(
            Op.UPSERT, table, key, image, version, source_ts_ms, origin, plan.columns
        )

    def _tombstone(
        self, origin: Origin, key: dict[str, Any] | None, key_table: str | None
    ) -> ChangeEvent | None:
        topic = origin.topic
        if self._tombstones == "skip" or (self._tombstones == "auto" and self._redundant(topic)):
            return None
        if not key:
            raise DecodeError(f"tombstone: {MISSING_KEY}")
        rule = self._rule(topic)
        if rule in ("lsn", "binlog") or self._clocks.get(topic) == "position":
            raise DecodeError(
                f"tombstone on topic {topic!r} carries no source position and cannot be ordered "
                f"against its rows, which are versioned by {_clock_name(rule)}:"
                " use delete.tombstone.handling.mode=rewrite, version the topic by ts_ms, or set"
                " kafka.tombstones: skip"
            )
        if not origin.timestamp_ms or origin.timestamp_ms <= 0:
            raise DecodeError("tombstone without a Kafka timestamp to version the delete by")
        table = key_table or self._only_table(topic)
        return ChangeEvent(Op.DELETE, table, key, None, origin.timestamp_ms, None, origin)

    def _redundant(self, topic: str) -> bool:
        in_band = self._in_band.get(topic)
        if in_band is None:
            # Guessing either way can go wrong silently: a redundant tombstone taken for a delete
            # outranks every later row of its key (LSN versus milliseconds), a real delete
            # taken for redundant leaves the row behind. Say so instead (the DLQ keeps it).
            raise DecodeError(
                f"tombstone on topic {topic!r} before any row of that topic since the decoder"
                " started: cannot tell whether it follows a delete event (full envelopes) or is"
                " the delete itself (flattened); set kafka.tombstones to skip or delete"
            )
        return in_band

    # -- table names ------------------------------------------------------------------------

    def _envelope_table(self, topic: str, source: Mapping[str, Any]) -> str:
        name, namespace = source.get("table"), source.get("schema") or source.get("db")
        table = f"{namespace}.{name}" if name and namespace else table_from_topic(topic)
        return self._seen_table(topic, table)

    def _flat_table(self, topic: str, meta: Mapping[str, Any]) -> str:
        name, namespace = meta.get("__table"), meta.get("__schema") or meta.get("__db")
        if not name:
            table = table_from_topic(topic)
        elif namespace:
            table = f"{namespace}.{name}"
        else:  # the schema from a "<prefix>.<schema>.<table>" topic name, if it is one
            parts = topic.split(".")
            table = f"{parts[-2]}.{name}" if len(parts) >= 3 else str(name)
        return self._seen_table(topic, table)

    def _seen_table(self, topic: str, table: str) -> str:
        seen = self._tables.setdefault(topic, set())
        if len(seen) < 2:
            seen.add(table)
        return table

    def _only_table(self, topic: str) -> str:
        seen = self._tables.get(topic, set())
        if len(seen) > 1:
            raise DecodeError(
                f"tombstone on topic {topic!r}, which carries several tables, and its key has no"
                " schema naming the table: cannot tell which table to delete from"
            )
        return next(iter(seen)) if seen else table_from_topic(topic)

    def _key_or_keyless(self, table: str, key: dict[str, Any] | None) -> dict[str, Any]:
        """The row's key; empty for a table without a primary key (routing.keyless decides).
        A table seen with keys before that sends a row without one is a broken message."""
        if key:
            self._keyed.add(table)
            return key
        if table in self._keyed:
            raise DecodeError(f"{MISSING_KEY}; earlier rows of {table} had one")
        return {}

    # -- unavailable values -----------------------------------------------------------------

    def _unavailable(self, origin: Origin) -> Placeholder | None:
        """The topic's placeholder if the message holds it anywhere (one substring search)."""
        placeholder = self._placeholders.get(origin.topic)
        if placeholder is None:
            matches = (
                found
                for pattern, found in self._placeholder_rules
                if fnmatch.fnmatchcase(origin.topic, pattern)
            )
            placeholder = self._placeholders[origin.topic] = next(matches, DEFAULT_PLACEHOLDER)
        value = origin.value
        return placeholder if value and placeholder.in_message(value) else None

    # -- versions ---------------------------------------------------------------------------

    def _rule(self, topic: str) -> VersionSource:
        rule = self._topic_rules.get(topic)
        if rule is None:
            matches = (
                source for pattern, source in self._rules if fnmatch.fnmatchcase(topic, pattern)
            )
            rule = self._topic_rules[topic] = next(matches, "auto")
        return rule

    def _version(self, origin: Origin, position: Position, prefix: str, flattened: bool) -> int:
        rule = self._rule(origin.topic)
        fallback = origin.timestamp_ms if flattened else None
        version, clock = resolve_version(rule, position, fallback)
        if version is None:
            raise DecodeError(describe(rule, prefix, origin.topic, flattened))
        self._clocks[origin.topic] = clock
        return version
