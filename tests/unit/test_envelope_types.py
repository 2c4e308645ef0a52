"""Decoder: Debezium's encodings of each column type -> Python values and ``Column``s."""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from fanout.errors import DecodeError
from fanout.events import Column, Json
from tests.unit._envelope_messages import decode_field, decoded, dumps, envelope, key, wrapped

UTC = dt.UTC


def named(type_: str, name: str, **parameters: str) -> dict[str, Any]:
    field: dict[str, Any] = {"type": type_, "optional": True, "name": name, "version": 1}
    if parameters:
        field["parameters"] = parameters
    return field


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CONNECT_DECIMAL = "org.apache.kafka.connect.data.Decimal"


@pytest.mark.parametrize(
    ("field", "value", "expected", "logical"),
    [
        (
            named("bytes", CONNECT_DECIMAL, scale="2"),
            b64(b"\x30\x39"),
            Decimal("123.45"),
            "decimal",
        ),
        (
            named("bytes", CONNECT_DECIMAL, scale="2"),
            b64(b"\xcf\xc7"),
            Decimal("-123.45"),
            "decimal",
        ),
        (named("bytes", CONNECT_DECIMAL, scale="0"), b64(b"\x00"), Decimal("0"), "decimal"),
        (named("bytes", CONNECT_DECIMAL, scale="3"), 12.5, Decimal("12.500"), "decimal"),
        (
            named("bytes", CONNECT_DECIMAL, scale="10"),
            b64((10**37 + 1).to_bytes(16, "big", signed=True)),
            Decimal("1000000000000000000000000000.0000000001"),
            "decimal",
        ),
        (
            named("struct", "io.debezium.data.VariableScaleDecimal"),
            {"scale": 3, "value": b64(b"\x01\xe2\x40")},
            Decimal("123.456"),
            "decimal",
        ),
        (named("int32", "io.debezium.time.Date"), 19_000, dt.date(2022, 1, 8), "date"),
        (named("int32", "org.apache.kafka.connect.data.Date"), -1, dt.date(1969, 12, 31), "date"),
        (named("int32", "io.debezium.time.Time"), 3_723_004, dt.time(1, 2, 3, 4000), "time"),
        (named("int64", "io.debezium.time.MicroTime"), 3_723_000_005, dt.time(1, 2, 3, 5), "time"),
        (
            named("int64", "io.debezium.time.NanoTime"),
            3_723_000_005_999,
            dt.time(1, 2, 3, 5),
            "time",
        ),
        (
            named("int64", "org.apache.kafka.connect.data.Time"),
            86_399_999,
            dt.time(23, 59, 59, 999_000),
            "time",
        ),
        (
            named("int64", "io.debezium.time.Timestamp"),
            1_700_000_000_123,
            dt.datetime(2023, 11, 14, 22, 13, 20, 123_000),
            "timestamp",
        ),
        (
            named("int64", "io.debezium.time.MicroTimestamp"),
            1_700_000_000_123_456,
            dt.datetime(2023, 11, 14, 22, 13, 20, 123_456),
            "timestamp",
        ),
        (
            named("int64", "io.debezium.time.NanoTimestamp"),
            1_700_000_000_123_456_789,
            dt.datetime(2023, 11, 14, 22, 13, 20, 123_456),
            "timestamp",
        ),
        (
            named("int64", "org.apache.kafka.connect.data.Timestamp"),
            -1,
            dt.datetime(1969, 12, 31, 23, 59, 59, 999_000),
            "timestamp",
        ),
        (
            named("string", "io.debezium.time.ZonedTimestamp"),
            "2023-11-14T22:13:20.5Z",
            dt.datetime(2023, 11, 14, 22, 13, 20, 500_000, tzinfo=UTC),
            "timestamptz",
        ),
        (
            named("string", "io.debezium.time.ZonedTimestamp"),
            "2023-11-15T00:13:20.123456789+02:00",
            dt.datetime(2023, 11, 14, 22, 13, 20, 123_456, tzinfo=UTC),
            "timestamptz",
        ),
        (named("string", "io.debezium.time.ZonedTime"), "10:15:30Z", "10:15:30Z", "string"),
        (
            named("string", "io.debezium.data.Json"),
            '{"a": [1, null]}',
            Json('{"a": [1, null]}'),
            "json",
        ),
        (named("string", "io.debezium.data.Json"), "3", Json("3"), "json"),
        (
            named("string", "io.debezium.data.Uuid"),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "uuid",
        ),
        (named("string", "io.debezium.data.Enum", allowed="a,b"), "b", "b", "string"),
        (named("string", "io.debezium.data.EnumSet", allowed="a,b"), "a,b", "a,b", "string"),
        (named("bytes", "io.debezium.data.Bits", length="3"), b64(b"\x05"), b"\x05", "bytes"),
        ({"type": "bytes", "optional": True}, b64(b"\x00\xff"), b"\x00\xff", "bytes"),
        (
            named("struct", "io.debezium.data.geometry.Point"),
            {"x": 1.0, "y": 2.0, "wkb": "AQE=", "srid": None},
            {"x": 1.0, "y": 2.0, "wkb": "AQE=", "srid": None},
            "json",
        ),
        (
            {"type": "map", "keys": {"type": "string"}, "values": {"type": "string"}},
            {"k": "v"},
            {"k": "v"},
            "json",
        ),
        ({"type": "int8", "optional": True}, 5, 5, "int16"),
        ({"type": "int16", "optional": True}, -5, -5, "int16"),
        ({"type": "int64", "optional": True}, 2**62, 2**62, "int64"),
        ({"type": "float", "optional": True}, 1.5, 1.5, "float32"),
        ({"type": "double", "optional": True}, 2.25, 2.25, "float64"),
        ({"type": "boolean", "optional": True}, True, True, "boolean"),
        (
            {"type": "string", "optional": True},
            "12.50",
            "12.50",
            "string",
        ),  # decimal.handling=string
    ],
)
def test_value_and_logical_type(
    field: dict[str, Any], value: Any, expected: Any, logical: str
) -> None:
    decoded_value, column = decode_field(field, value)
    assert decoded_value == expected
    assert type(decoded_value) is type(expected)
    assert column.type == logical


def test_nulls_stay_null() -> None:
    value, column = decode_field(named("int32", "io.debezium.time.Date"), None)
    assert value is None and column.optional


def test_decimal_column_carries_scale_and_precision() -> None:
    field = named("bytes", CONNECT_DECIMAL, scale="2", **{"connect.decimal.precision": "12"})
    _, column = decode_field(field, b64(b"\x01"))
    assert column == Column("x", "decimal", True, (("precision", "12"), ("scale", "2")))


def test_arrays_convert_their_items_and_name_the_item_type() -> None:
    field = {"type": "array", "optional": True, "items": named("int32", "io.debezium.time.Date")}
    value, column = decode_field(field, [0, None, 1])
    assert value == [dt.date(1970, 1, 1), None, dt.date(1970, 1, 2)]
    assert column.param("items") == "date"
    text_array, text_column = decode_field(
        {"type": "array", "items": {"type": "string"}}, ["a", "b"]
    )
    assert text_array == ["a", "b"] and text_column.param("items") == "string"


def test_source_column_type_is_kept_as_parameters() -> None:
    field = {
        "type": "string",
        "optional": False,
        "parameters": {
            "__debezium.source.column.type": "VARCHAR",
            "__debezium.source.column.length": "255",
        },
    }
    _, column = decode_field(field, "x")
    assert column == Column(
        "x", "string", False, (("source_length", "255"), ("source_type", "VARCHAR"))
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (named("int64", "io.debezium.time.MicroTime"), 86_400_000_000),  # 24:00:00
        (named("int64", "io.debezium.time.MicroTimestamp"), "yesterday"),
        (named("int64", "io.debezium.time.MicroTimestamp"), 2**63),
        (named("string", "io.debezium.time.ZonedTimestamp"), "not a time"),
        (named("string", "io.debezium.data.Json"), {"not": "text"}),
        (named("int32", "io.debezium.time.Date"), 1.5),
        ({"type": "bytes", "optional": True}, "***"),
    ],
)
def test_values_that_do_not_match_their_schema(field: dict[str, Any], value: Any) -> None:
    with pytest.raises(DecodeError, match="column 'x': value does not match its schema"):
        decode_field(field, value)


def test_key_values_are_converted_with_the_key_schema() -> None:
    uuid_field = {
        "type": "string",
        "optional": False,
        "name": "io.debezium.data.Uuid",
        "field": "id",
    }
    date_field = {**named("int32", "io.debezium.time.Date"), "optional": False, "field": "day"}
    key_schema = {
        "type": "struct",
        "fields": [uuid_field, date_field],
        "optional": False,
        "name": "dbserver1.inventory.visits.Key",
    }
    key_bytes = wrapped(key_schema, {"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "day": 1})
    after = {"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "day": 1, "n": 5}
    event = decoded(dumps(envelope(after=after)), key_bytes=key_bytes)
    assert event.key == {"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "day": dt.date(1970, 1, 2)}


def test_schemaless_values_stay_as_json_gives_them() -> None:
    after = {"id": 1, "price": "MDk=", "born": 19000, "doc": '{"a": 1}'}
    event = decoded(dumps(envelope(after=after)), key_bytes=key(1, schemas=False))
    assert event.row == after
