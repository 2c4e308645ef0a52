"""Bad and odd Kafka records for the resilience suite, built from real-looking Debezium ones.

``bad_records(valid, product)`` returns one :class:`BadRecord` per kind (48; the table in
``docs/RELIABILITY.md``): records no sink may apply (not JSON, wrong shapes, values that lie
about their declared type, keys that disagree with their rows, versions beyond int64, …),
records only some stores refuse (a NUL byte, a lone surrogate, text that is not JSON in a JSON
column), and odd records that are valid (NaN in a double column, a delete without a
before-image, a Debezium message event, odd column and table names, an unknown column type).
Each says which sinks must dead-letter it and with what reason, and where it lands in the sinks
that take it.

Refused records that carry a real key of the valid stream are made newer than every valid
event (a huge LSN): written by mistake, they would win over the valid row and show up as a
wrong row. Records that some sink may take use keys of their own (``FRESH_ID`` and up), so
they never disturb the valid stream's oracle.

``interleave(valid, bad, seed)`` scatters the bad records through the valid stream, after a
warm-up of valid records (so the decoder has seen each topic carry rows: a tombstone first
of all is a DLQ entry of its own, see ``docs/ENVELOPES.md``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.support.debezium import Message

SINKS = ("postgres", "elasticsearch", "clickhouse")
HUGE_LSN = 2**62  # newer than every generated position
FRESH_ID = 5_000_000  # keys from here on are the bad records' own (the valid stream's are small)
DEEP = 100_000  # nesting levels of the deeply nested value

# A reason the decoder gives (a part of fanout.error.message).
NOT_ENVELOPE = "neither a Debezium envelope (before/after/source/op) nor a known flattened row"


@dataclass(frozen=True)
class BadRecord:
    """One bad or odd record: its bytes, who must refuse it and why, where it lands otherwise."""

    kind: str
    key: bytes | None
    value: bytes | None
    # sink -> a text its DLQ entry's fanout.error.message must contain; a sink not named takes
    # the record (writes it, or ignores it when ``lands`` is None)
    refused: Mapping[str, str]
    lands: tuple[str, int] | None = None  # (source table, id) written by the sinks taking it
    timestamp_ms: int | None = None
    notes: str = ""
    stage: str = "decode"  # fanout.error.stage of its DLQ entries: decode, or write (a store)

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"")


def everywhere(reason: str) -> dict[str, str]:
    return dict.fromkeys(SINKS, reason)


@dataclass
class _Templates:
    """Real-looking inserts to edit, as JSON documents."""

    customer: Message
    order: Message
    product: Message | None
    fresh: list[int] = field(default_factory=lambda: [FRESH_ID])

    def next_id(self) -> int:
        self.fresh[0] += 1
        return self.fresh[0]


def _doc(raw: bytes | None) -> Any:
    return json.loads(raw or b"null")


def _dumps(doc: Any) -> bytes:
    # json.dumps writes NaN/Infinity literals and escapes NUL and lone surrogates ("\ud800"),
    # as a producer other than Debezium could.
    return json.dumps(doc).encode()


def _edited(
    message: Message,
    value: Callable[[dict[str, Any]], None] | None = None,
    key: Callable[[dict[str, Any]], None] | None = None,
    *,
    newest: bool = True,
) -> tuple[bytes, bytes]:
    """``message``'s key and value after ``key(doc)`` / ``value(doc)``; ``newest``: with an
    LSN above every valid event's."""
    key_doc, value_doc = _doc(message.key), _doc(message.value)
    if newest:
        value_doc["payload"]["source"]["lsn"] = HUGE_LSN
    if key is not None:
        key(key_doc)
    if value is not None:
        value(value_doc)
    return _dumps(key_doc), _dumps(value_doc)


def _fresh(message: Message, new_id: int, **after: Any) -> tuple[bytes, bytes]:
    """An insert like ``message`` under key ``new_id`` with ``after`` in its row."""

    def rekey(doc: dict[str, Any]) -> None:
        doc["payload"]["id"] = new_id

    def row(doc: dict[str, Any]) -> None:
        doc["payload"]["after"].update(id=new_id, **after)

    return _edited(message, row, rekey, newest=False)


def _after(**values: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["payload"]["after"].update(values)

    return edit


def _declared(column: str, **schema: Any) -> Callable[[dict[str, Any]], None]:
    """Change what the value schema declares for ``column`` (before and after alike)."""

    def edit(doc: dict[str, Any]) -> None:
        for part in doc["schema"]["fields"]:
            if part["field"] in ("before", "after"):
                for column_schema in part["fields"]:
                    if column_schema["field"] == column:
                        column_schema.clear()
                        column_schema.update(schema, field=column)

    return edit


def _both(*edits: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        for one in edits:
            one(doc)

    return edit


def _payload(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["payload"].update(changes)

    return edit


def _source(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["payload"]["source"].update(changes)

    return edit


def _first(messages: Iterable[Message], table: str) -> Message | None:
    return next(
        (
            m
            for m in messages
            if m.value is not None and m.event.table == table and m.event.kind == "insert"
        ),
        None,
    )


def bad_records(
    valid: Sequence[Message], product: Message | None = None, first_id: int = FRESH_ID
) -> list[BadRecord]:
    """One record of every kind, edited from inserts of ``valid`` (customers and orders) and
    ``product`` (an insert of ``PRODUCTS``, for its int64 and double columns); their own keys
    from ``first_id`` + 1 on."""
    customer, order = _first(valid, "inventory.customers"), _first(valid, "inventory.orders")
    assert customer is not None and order is not None, "the valid stream needs both tables"
    t = _Templates(customer, order, product, [first_id])
    records = _shapes(t) + _values(t) + _keys_and_versions(t) + _sink_specific(t) + _odd(t)
    if product is not None:
        records += _numbers(t, product)
    return records


def _shapes(t: _Templates) -> list[BadRecord]:
    # Every value carries ``tag`` (this call's first id), at its start where it may be cut in
    # the DLQ: records of several calls in one topic never share their bytes.
    key, tag = t.customer.key, t.fresh[0]
    schema = _doc(t.customer.value)["schema"]
    deep = b'{"n%d": ' % tag + b"[" * DEEP + b"]" * DEEP + b"}"
    return [
        BadRecord(
            "not JSON", key, b'{"n": %d, "schema": {"type"' % tag, everywhere("not valid JSON")
        ),
        BadRecord("not UTF-8", key, b"\xff\xfe{%d}" % tag, everywhere("value is not UTF-8 text")),
        BadRecord("a JSON list", key, b"[1, 2, %d]" % tag, everywhere("a JSON list")),
        BadRecord("a JSON string", key, b'"hello %d"' % tag, everywhere("a JSON str")),
        BadRecord("a JSON number", key, b"%d" % tag, everywhere("a JSON int")),
        BadRecord("wrong shape", key, b'{"id": %d, "name": "x"}' % tag, everywhere(NOT_ENVELOPE)),
        BadRecord(
            "schema without payload",
            key,
            _dumps({"n": tag, "schema": schema}),
            everywhere("JsonConverter schema without a payload"),
        ),
        BadRecord(
            "trailing garbage",
            key,
            (t.customer.value or b"") + b" trailing %d" % tag,
            everywhere("not valid JSON"),
        ),
        BadRecord("deeply nested", key, deep, everywhere("recursion depth exceeded")),
        BadRecord(
            "oversized (beyond the DLQ topic)",
            b'{"id": %d}' % tag,
            _dumps({"n": tag, "blob": "x" * 300_000}),
            everywhere(NOT_ENVELOPE),
            notes="stored truncated in the DLQ (its max.message.bytes is smaller)",
        ),
        BadRecord(
            "unknown op",
            *_edited(t.customer, _payload(op="x")),
            everywhere("unknown op 'x'"),
        ),
        BadRecord(
            "update without after",
            *_edited(t.customer, _payload(op="u", after=None)),
            everywhere("op 'u' without an 'after' row"),
        ),
        BadRecord(
            "schema is not a struct",
            key,
            _dumps({"schema": {"type": "string"}, "payload": f"hello {tag}"}),
            everywhere("not a Debezium struct"),
        ),
    ]


def _values(t: _Templates) -> list[BadRecord]:
    c, o = t.customer, t.order
    return [
        BadRecord(
            "'yes' in a boolean",
            *_edited(c, _after(active="yes")),
            everywhere("column 'active': value does not match its schema (boolean)"),
        ),
        BadRecord(
            "text in an int32",
            *_edited(o, _after(customer_id="12")),
            everywhere("column 'customer_id': value does not match its schema (int32)"),
        ),
        BadRecord(
            "int32 beyond its range (the schema lies)",
            *_edited(o, _after(customer_id=2**31)),
            everywhere("column 'customer_id'"),
        ),
        BadRecord(
            "a fraction in an int32",
            *_edited(o, _after(customer_id=1.5)),
            everywhere("column 'customer_id'"),
        ),
        BadRecord(
            "NaN in an int32",
            *_edited(o, _after(customer_id=float("nan"))),
            everywhere("column 'customer_id'"),
        ),
        BadRecord(
            "Infinity in an int32",
            *_edited(o, _after(customer_id=float("inf"))),
            everywhere("column 'customer_id'"),
        ),
        BadRecord(
            "a number in a text column",
            *_edited(c, _after(first_name=12)),
            everywhere("column 'first_name'"),
        ),
        BadRecord(
            "bad decimal",
            *_edited(o, _after(total="not base64!")),
            everywhere("column 'total'"),
        ),
        BadRecord(
            "NaN in a decimal",
            *_edited(o, _after(total=float("nan"))),
            everywhere("column 'total'"),
        ),
        BadRecord(
            "decimal without a scale",
            *_edited(
                o,
                _declared(
                    "total",
                    type="bytes",
                    optional=False,
                    name="org.apache.kafka.connect.data.Decimal",
                    parameters={},
                ),
            ),
            everywhere("column 'total': Decimal without a valid scale"),
        ),
        BadRecord(
            "a date as text",
            *_edited(c, _after(birth_date="2024-13-45")),
            everywhere("column 'birth_date'"),
        ),
        BadRecord(
            "a date beyond any calendar",
            *_edited(c, _after(birth_date=2**31 - 1)),
            everywhere("column 'birth_date'"),
        ),
        BadRecord(
            "a timestamp that is not one",
            *_edited(c, _after(created_at="yesterday")),
            everywhere("column 'created_at'"),
        ),
        BadRecord(
            "a uuid that is not one",
            *_edited(c, _after(external_id="not-a-uuid")),
            everywhere("column 'external_id'"),
        ),
        BadRecord(
            "a JSON column that is not text",
            *_edited(o, _after(notes=5)),
            everywhere("column 'notes'"),
        ),
    ]


def _keys_and_versions(t: _Templates) -> list[BadRecord]:
    c = t.customer
    other = _doc(c.key)["payload"]["id"] + FRESH_ID * 2

    def other_key(doc: dict[str, Any]) -> None:
        doc["payload"]["id"] = other

    def null_key(doc: dict[str, Any]) -> None:
        doc["payload"]["id"] = None

    return [
        BadRecord(
            "key and row disagree",
            *_edited(c, _after(first_name="POISON"), other_key),
            everywhere("key and value disagree: key column 'id' is"),
        ),
        BadRecord(
            "null key id",
            *_edited(c, _after(first_name="NULL KEY"), null_key),
            everywhere("key column 'id' is null"),
        ),
        BadRecord(
            "key is not an object",
            b"17",
            _edited(c, _after(first_name="KEY 17"))[1],
            everywhere("key is not a JSON object but a JSON int"),
        ),
        BadRecord(
            "key is not JSON",
            b"{oops",
            _edited(c, _after(first_name="KEY OOPS"))[1],
            everywhere("key is not valid JSON"),
        ),
        BadRecord(
            "empty key on a keyed table",
            b"",
            _edited(c, _after(first_name="NO KEY"))[1],
            everywhere("earlier rows of inventory.customers had one"),
        ),
        BadRecord(
            "LSN beyond int64",
            *_edited(c, _both(_after(first_name="LSN"), _source(lsn=2**63))),
            everywhere("does not fit a version"),
        ),
        BadRecord(
            "negative LSN",
            *_edited(c, _both(_after(first_name="NEG"), _source(lsn=-5))),
            everywhere("lsn"),
        ),
    ]


def _sink_specific(t: _Templates) -> list[BadRecord]:
    """Valid for the decoder; some stores cannot hold them (the others take them)."""
    c, o = t.customer, t.order
    surrogates = "surrogates not allowed"
    kinds: list[tuple[str, Message, dict[str, Any], dict[str, str], str]] = [
        ("NUL byte in text", c, {"first_name": "nul \x00 inside"}, {"postgres": "0x00"}, ""),
        (
            "lone surrogate in text",
            c,
            {"last_name": "lone \ud800 surrogate"},
            {"postgres": surrogates, "clickhouse": surrogates},
            "",
        ),
        (
            "text that is not JSON in a JSON column",
            o,
            {"notes": "{not json"},
            {
                "postgres": "invalid input syntax for type json",
                "elasticsearch": "document_parsing_exception",
            },
            "ClickHouse keeps JSON columns as text (docs/ENVELOPES.md)",
        ),
    ]
    records = []
    for kind, template, values, refused, notes in kinds:
        new_id = t.next_id()
        table = template.event.table
        records.append(
            BadRecord(
                kind,
                *_fresh(template, new_id, **values),
                refused,
                (table, new_id),
                notes=notes,
                stage="write",
            )
        )
    return records


def _odd(t: _Templates) -> list[BadRecord]:
    """Odd but valid: taken by every sink (or ignored), never dead-lettered."""
    c = t.customer
    delete_id, odd_id, mystery_id, table_id = (t.next_id() for _ in range(4))

    def delete_without_before(doc: dict[str, Any]) -> None:
        doc["payload"].update(op="d", before=None, after=None)

    def odd_names(doc: dict[str, Any]) -> None:
        for part in doc["schema"]["fields"]:
            if part["field"] in ("before", "after"):
                part["fields"].append({"type": "string", "optional": True, "field": ODD_COLUMN})
        doc["payload"]["after"][ODD_COLUMN] = "odd"

    def unknown_type(doc: dict[str, Any]) -> None:
        for part in doc["schema"]["fields"]:
            if part["field"] in ("before", "after"):
                part["fields"].append({"type": "mystery", "optional": True, "field": "shape"})
        doc["payload"]["after"]["shape"] = {"x": 1, "y": [2, 3]}

    def odd_table(doc: dict[str, Any]) -> None:
        doc["payload"]["source"]["table"] = ODD_TABLE

    return [
        BadRecord(
            "delete without a before-image",
            *_edited(_rekeyed(c, delete_id), delete_without_before, newest=False),
            {},
            None,
        ),
        BadRecord(
            "a Debezium message event (op m)",
            *_edited(c, _payload(op="m", after=None), newest=False),
            {},
            None,
        ),
        BadRecord("tombstone", c.key, None, {}, None, timestamp_ms=c.timestamp_ms),
        BadRecord(
            "an odd column name",
            *_edited(_rekeyed(c, odd_id), odd_names, newest=False),
            {},
            ("inventory.customers", odd_id),
        ),
        BadRecord(
            "an unknown column type",
            *_edited(_rekeyed(c, mystery_id), unknown_type, newest=False),
            {},
            ("inventory.customers", mystery_id),
            notes="kept as sent: a JSON column (docs/ENVELOPES.md)",
        ),
        BadRecord(
            "an odd table name",
            *_edited(_rekeyed(c, table_id), odd_table, newest=False),
            {},
            None,
            notes="PostgreSQL and ClickHouse quote it; Elasticsearch derives an index name from it",
        ),
    ]


ODD_COLUMN = 'Odd "Name"; DROP TABLE x;-- ü'
ODD_TABLE = 'Odd Table "ü"; DROP'


def _rekeyed(message: Message, new_id: int) -> Message:
    key, value = _fresh(message, new_id)
    return Message(key, value, message.event, message.version, message.timestamp_ms)


def _numbers(t: _Templates, product: Message) -> list[BadRecord]:
    nan_id, inf_id = t.next_id(), t.next_id()
    return [
        BadRecord(
            "integer beyond int64",
            *_edited(product, _after(reviews=2**64)),
            everywhere("column 'reviews'"),
        ),
        BadRecord(
            "NaN in an int64",
            *_edited(product, _after(reviews=float("nan"))),
            everywhere("column 'reviews'"),
        ),
        BadRecord(
            "NaN in a double",
            *_fresh(product, nan_id, rating=float("nan")),
            {},
            ("inventory.products", nan_id),
            notes="a value: PostgreSQL and ClickHouse store NaN, Elasticsearch null",
        ),
        BadRecord(
            "Infinity in a double",
            *_fresh(product, inf_id, rating=float("inf")),
            {},
            ("inventory.products", inf_id),
        ),
    ]


def interleave(
    valid: Sequence[Message], bad: Sequence[BadRecord], seed: int = 0, warm_up: int = 50
) -> list[tuple[bytes | None, bytes | None, int | None]]:
    """``valid`` in order with ``bad`` scattered after the first ``warm_up`` valid records, as
    (key, value, timestamp_ms) to produce in this order."""
    rng = random.Random(seed)
    slots = sorted(rng.randrange(warm_up, len(valid)) for _ in bad)
    shuffled = list(bad)
    rng.shuffle(shuffled)
    out: list[tuple[bytes | None, bytes | None, int | None]] = []
    pending = list(zip(slots, shuffled, strict=True))
    for index, message in enumerate(valid):
        while pending and pending[0][0] == index:
            record = pending.pop(0)[1]
            out.append((record.key, record.value, record.timestamp_ms))
        out.append((message.key, message.value, message.timestamp_ms))
    return out
