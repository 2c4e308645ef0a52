"""Confluent Avro decoding: the wire format, Debezium's logical types, the same events as JSON.

The writer schemas come from an in-process lookup (``SchemaRegistry`` with a ``fetch``): these
tests check decoding; the real registry and connector are in tests/integration/test_avro_*.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

import pytest

from fanout.debezium.avro import AvroPlanCache, framing_for, split_frame
from fanout.debezium.envelope import Decoder
from fanout.debezium.framing import PlanCache
from fanout.debezium.registry import SchemaRegistry
from fanout.errors import DecodeError
from fanout.events import ChangeEvent, Op, Origin
from fanout.settings import load_settings
from tests.support.avro_connect import avro_datum, avro_schema, frame

TOPIC = "p.public.t"


def field(column: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "optional": True, "field": column, **extra}


VALUE_FIELDS = [
    {"type": "int32", "optional": False, "field": "id"},
    field("small", "int16"),
    field(
        "price",
        "bytes",
        name="org.apache.kafka.connect.data.Decimal",
        version=1,
        parameters={"scale": "2", "connect.decimal.precision": "10"},
    ),
    {
        "type": "struct",
        "optional": True,
        "field": "amount",
        "name": "io.debezium.data.VariableScaleDecimal",
        "version": 1,
        "fields": [
            {"type": "int32", "optional": False, "field": "scale"},
            {"type": "bytes", "optional": False, "field": "value"},
        ],
    },
    field("day", "int32", name="io.debezium.time.Date", version=1),
    field("at", "int64", name="io.debezium.time.MicroTimestamp", version=1),
    field("at_tz", "string", name="io.debezium.time.ZonedTimestamp", version=1),
    field("doc", "string", name="io.debezium.data.Json", version=1),
    field("uid", "string", name="io.debezium.data.Uuid", version=1),
    field("mood", "string", name="io.debezium.data.Enum", parameters={"allowed": "sad,ok"}),
    field("flags", "bytes", name="io.debezium.data.Bits", parameters={"length": "3"}),
    field("blob", "bytes"),
    field("ratio", "float64"),
    field("tags", "array", items={"type": "string", "optional": True}),
    field("nums", "array", items={"type": "int32", "optional": True}),
]
ROW_SCHEMA = {"type": "struct", "name": f"{TOPIC}.Value", "optional": True, "fields": VALUE_FIELDS}
SOURCE = {
    "type": "struct",
    "name": "io.debezium.connector.postgresql.Source",
    "optional": False,
    "field": "source",
    "fields": [
        {"type": "int64", "optional": False, "field": "ts_ms"},
        {"type": "string", "optional": False, "field": "schema"},
        {"type": "string", "optional": False, "field": "table"},
        {"type": "int64", "optional": True, "field": "lsn"},
    ],
}
ENVELOPE = {
    "type": "struct",
    "name": f"{TOPIC}.Envelope",
    "optional": False,
    "fields": [
        {**ROW_SCHEMA, "field": "before"},
        {**ROW_SCHEMA, "field": "after"},
        SOURCE,
        {"type": "string", "optional": False, "field": "op"},
        {"type": "int64", "optional": True, "field": "ts_ms"},
    ],
}
KEY = {
    "type": "struct",
    "name": f"{TOPIC}.Key",
    "optional": False,
    "fields": [{"type": "int32", "optional": False, "field": "id"}],
}
ROW = {
    "id": 5,
    "small": -3,
    "price": "MDk=",  # 12345 -> 123.45
    "amount": {"scale": 3, "value": "AeI="},  # 482 -> 0.482
    "day": 19000,
    "at": 1_700_000_000_123_456,
    "at_tz": "2024-01-02T03:04:05.123456Z",
    "doc": '{"a": [1, 2.50, 12345678901234567890]}',
    "uid": "0b7a1c5e-2f0d-4a57-9a43-0e3b8d1f7a11",
    "mood": "ok",
    "flags": "BQ==",
    "blob": "AP8=",
    "ratio": "NaN",
    "tags": ["a", None, "c"],
    "nums": [1, None, -2],
}
SOURCE_VALUE = {"ts_ms": 1000, "schema": "public", "table": "t", "lsn": 100}


def json_message(schema: dict[str, Any], payload: Any) -> bytes:
    return json.dumps({"schema": schema, "payload": payload}).encode()


def lookup(schemas: dict[int, Any]) -> SchemaRegistry:
    return SchemaRegistry("in-process", lambda schema_id: json.dumps(schemas[schema_id]))


def avro_decoder(schemas: dict[int, Any]) -> Decoder:
    registry = lookup(schemas)

    def framing(what: str, build: Any) -> AvroPlanCache[Any]:
        return AvroPlanCache(what, build, registry)

    return Decoder(framing=framing)


def origin(key: bytes | None, value: bytes | None, offset: int = 0) -> Origin:
    return Origin(TOPIC, 0, offset, timestamp_ms=1, key=key, value=value)


def same_events(left: ChangeEvent | None, right: ChangeEvent | None) -> bool:
    """Equal, NaN equal to NaN (ChangeEvent's == says NaN != NaN)."""
    assert left is not None and right is not None
    for name in ("op", "table", "key", "version", "source_ts_ms", "columns"):
        assert getattr(left, name) == getattr(right, name), name
    assert (left.row is None) == (right.row is None)
    for column, value in (left.row or {}).items():
        other = (right.row or {})[column]
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(other, float) and math.isnan(other), column
        else:
            assert type(value) is type(other) and value == other, column
    assert (left.row or {}).keys() == (right.row or {}).keys()
    return True


def test_a_hand_encoded_frame_decodes_per_the_wire_format() -> None:
    """Bytes written out by hand from the Confluent wire-format and Avro binary specs."""
    value_schema = {
        "type": "record",
        "name": "Envelope",
        "namespace": TOPIC,
        "fields": [
            {
                "name": "after",
                "type": [
                    "null",
                    {
                        "type": "record",
                        "name": "Value",
                        "fields": [
                            {"name": "id", "type": "int"},
                            {
                                "name": "day",
                                "type": [
                                    "null",
                                    {"type": "int", "connect.name": "io.debezium.time.Date"},
                                ],
                            },
                        ],
                    },
                ],
            },
            {"name": "before", "type": ["null", "Value"]},  # a reference in the same namespace
            {
                "name": "source",
                "type": {
                    "type": "record",
                    "name": "Source",
                    "namespace": "io.debezium.connector.postgresql",
                    "fields": [
                        {"name": "ts_ms", "type": "long"},
                        {"name": "schema", "type": "string"},
                        {"name": "table", "type": "string"},
                        {"name": "lsn", "type": ["null", "long"]},
                    ],
                },
            },
            {"name": "op", "type": "string"},
        ],
    }
    frame_bytes = b"".join(
        bytes(part)
        for part in (
            [0x00, 0x00, 0x00, 0x00, 0x07],  # magic byte 0, schema id 7 (big-endian)
            [0x02, 0x0A, 0x02, 0xF0, 0xA8, 0x02],  # after: branch 1, id 5, day: branch 1, 19000
            [0x00],  # before: branch 0 (null)
            [0xD0, 0x0F],  # source.ts_ms 1000 (zigzag varint)
            [0x0C, *b"public", 0x02, *b"t"],  # source.schema, source.table
            [0x02, 0xC8, 0x01],  # source.lsn: branch 1, 100
            [0x02, *b"c"],  # op
        )
    )
    assert split_frame(frame_bytes)[0] == 7
    event = avro_decoder({7: value_schema}).decode(origin(None, frame_bytes))
    assert event is not None
    assert (event.op, event.table, event.version, event.source_ts_ms) == (
        Op.UPSERT,
        "public.t",
        100,
        1000,
    )
    assert event.row == {"id": 5, "day": dt.date(2022, 1, 8)}


def test_every_debezium_type_decodes_to_the_json_paths_values() -> None:
    key_avro, value_avro = avro_schema(KEY), avro_schema(ENVELOPE)
    payload = {"before": None, "after": ROW, "source": SOURCE_VALUE, "op": "c", "ts_ms": 1}
    avro_key = frame(1, key_avro, avro_datum(KEY, {"id": 5}))
    avro_value = frame(2, value_avro, avro_datum(ENVELOPE, payload))
    from_avro = avro_decoder({1: key_avro, 2: value_avro}).decode(origin(avro_key, avro_value))
    from_json = Decoder().decode(
        origin(json_message(KEY, {"id": 5}), json_message(ENVELOPE, payload))
    )
    assert same_events(from_avro, from_json)
    assert from_avro is not None and from_avro.row is not None
    row = from_avro.row
    assert row["price"] == Decimal("123.45") and row["amount"] == Decimal("0.482")
    assert row["at_tz"] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
    assert row["flags"] == b"\x05" and row["blob"] == b"\x00\xff"
    assert row["tags"] == ["a", None, "c"] and row["nums"] == [1, None, -2]


def test_a_delete_and_its_before_image_decode_alike() -> None:
    value_avro = avro_schema(ENVELOPE)
    payload = {"before": ROW, "after": None, "source": SOURCE_VALUE, "op": "d", "ts_ms": 1}
    avro_value = frame(2, value_avro, avro_datum(ENVELOPE, payload))
    key = json_message(KEY, {"id": 5})
    decoder = Decoder(framing=lambda what, build: _mixed(what, build, {2: value_avro}))
    from_avro = decoder.decode(origin(key, avro_value))
    from_json = Decoder().decode(origin(key, json_message(ENVELOPE, payload)))
    assert same_events(from_avro, from_json)
    assert from_avro is not None and from_avro.op is Op.DELETE and from_avro.key == {"id": 5}


def _mixed(what: str, build: Any, schemas: dict[int, Any]) -> Any:
    """JSON keys, Avro values (kafka.key_format: json, value_format: avro)."""
    if what == "key":
        return PlanCache(what, build)
    return AvroPlanCache(what, build, lookup(schemas))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"schema": null}', "not Confluent Avro: starts with byte 0x7b"),
        (b"\x00\x00\x00", "not Confluent Avro"),
        (b"\x00\x00\x00\x00\x02\x02", "not Avro of schema id 2"),  # the datum is cut short
        (b"\x00\x00\x00\x00\x09\x00", "schema id 9 is not in the registry"),
    ],
)
def test_an_undecodable_message_is_a_decode_error_with_the_reason(raw: bytes, reason: str) -> None:
    def fetch(schema_id: int) -> str:
        if schema_id == 2:
            return json.dumps(avro_schema(ENVELOPE))
        raise DecodeError(f"schema id {schema_id} is not in the registry")

    registry = SchemaRegistry("in-process", fetch)
    decoder = Decoder(framing=lambda what, build: AvroPlanCache(what, build, registry))
    with pytest.raises(DecodeError, match=reason):
        decoder.decode(origin(None, raw))


def test_each_schema_id_is_fetched_once() -> None:
    fetched: list[int] = []
    value_avro = avro_schema(ENVELOPE)

    def fetch(schema_id: int) -> str:
        fetched.append(schema_id)
        return json.dumps(avro_schema(KEY) if schema_id == 1 else value_avro)

    registry = SchemaRegistry("in-process", fetch)
    decoder = Decoder(framing=lambda what, build: AvroPlanCache(what, build, registry))
    key = frame(1, avro_schema(KEY), {"id": 5})
    for offset in range(3):
        payload = {"before": None, "after": ROW, "source": SOURCE_VALUE, "op": "u", "ts_ms": 1}
        decoder.decode(origin(key, frame(4, value_avro, avro_datum(ENVELOPE, payload)), offset))
    assert fetched == [1, 4]


def test_unchanged_toasted_values_leave_the_row_as_under_json() -> None:
    """Debezium's placeholder: the text in a text column, its bytes in a bytea column."""
    placeholder = "__debezium_unavailable_value"
    row = {**ROW, "doc": placeholder, "blob": base64.b64encode(placeholder.encode()).decode()}
    payload = {"before": None, "after": row, "source": SOURCE_VALUE, "op": "u", "ts_ms": 1}
    value_avro = avro_schema(ENVELOPE)
    avro_value = frame(2, value_avro, avro_datum(ENVELOPE, payload))
    key = json_message(KEY, {"id": 5})
    decoder = Decoder(framing=lambda what, build: _mixed(what, build, {2: value_avro}))
    from_avro = decoder.decode(origin(key, avro_value))
    from_json = Decoder().decode(origin(key, json_message(ENVELOPE, payload)))
    assert same_events(from_avro, from_json)
    assert from_avro is not None and from_avro.row is not None
    assert "doc" not in from_avro.row and "blob" not in from_avro.row


@pytest.mark.parametrize(
    ("formats", "named"),
    [
        ({}, "kafka.key_format is not set, so keys follow kafka.value_format: avro"),
        ({"key_format": "avro"}, "kafka.key_format is avro"),
    ],
)
def test_a_key_that_is_not_avro_names_the_setting_the_user_wrote(
    formats: dict[str, str], named: str
) -> None:
    kafka = load_settings(
        kafka={"value_format": "avro", "schema_registry": {"url": "http://r.test"}, **formats}
    ).kafka
    decoder = Decoder(framing=framing_for(kafka))  # no request: the key fails before its id
    with pytest.raises(DecodeError) as refused:
        decoder.decode(origin(json_message(KEY, {"id": 5}), b"\x00\x00\x00\x00\x01"))
    assert "key is not Confluent Avro: starts with byte 0x7b" in str(refused.value)
    assert named in str(refused.value)
