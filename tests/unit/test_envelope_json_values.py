"""Decoder: every JSON text decodes to the values the stdlib parser gives, the fast path or not.

Payloads are parsed with orjson where it agrees with ``json.loads``; these are the texts where
it would not (integers beyond 64 bits, NaN and Infinity, lone surrogates, deep nesting).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from fanout.debezium.envelope import Decoder
from fanout.errors import DecodeError
from fanout.events import Json
from tests.unit._envelope_messages import (
    ROW_FIELDS,
    decoded,
    dumps,
    envelope,
    envelope_schema,
    key,
    origin,
    wrapped,
)

PLACEHOLDER = b'"__x__"'


def messages(connect: dict[str, Any], text: bytes) -> list[tuple[bytes, bytes]]:
    """(value, key) pairs carrying ``text`` as column ``x``: with a schema, twice (the first
    parse and the cached one), then without a schema."""
    field = {**connect, "optional": True, "field": "x"}
    after = {"id": 1, "name": None, "x": "__x__"}
    with_schema = wrapped(envelope_schema([*ROW_FIELDS, field]), envelope(after=after))
    without = dumps(envelope(after=after))
    return [
        (with_schema.replace(PLACEHOLDER, text), key()),
        (with_schema.replace(PLACEHOLDER, text), key()),
        (without.replace(PLACEHOLDER, text), key(1, schemas=False)),
    ]


def decoded_x(connect: dict[str, Any], text: bytes) -> list[Any]:
    decoder = Decoder()
    rows = [decoded(value, decoder, key_bytes=k).row for value, k in messages(connect, text)]
    return [row["x"] for row in rows if row is not None]


def same(value: Any, expected: Any) -> bool:
    """Equal, of the same types all the way down (``repr`` also tells NaN and -0.0 apart)."""
    return repr(value) == repr(expected) and type(value) is type(expected)


INT64 = {"type": "int64"}
UNTYPED = {"type": "a type Kafka Connect does not have"}  # kept as sent: the parser's value
DOUBLE = {"type": "double"}
STRING = {"type": "string"}
STRUCT = {"type": "struct", "fields": []}
JSON_COLUMN = {"type": "string", "name": "io.debezium.data.Json"}


@pytest.mark.parametrize(
    ("connect", "text"),
    [
        (INT64, b"9223372036854775807"),
        (INT64, b"-9223372036854775808"),
        (INT64, b"-8446744073709551615"),
        (UNTYPED, b"18446744073709551615"),  # the largest integer orjson keeps
        (UNTYPED, b"18446744073709551616"),
        (UNTYPED, b"-9223372036854775809"),
        (UNTYPED, b"123456789012345678901234567890"),
        (DOUBLE, b"NaN"),
        (DOUBLE, b"Infinity"),
        (DOUBLE, b"-Infinity"),
        (DOUBLE, b"1e400"),
        (DOUBLE, b"-0.0"),
        (DOUBLE, b"0.1"),
        (DOUBLE, b"2.2250738585072011e-308"),
        (DOUBLE, b"123456789012345678901.5"),
        (STRING, b'"\\ud800"'),
        (STRING, b'"a\\udc00b"'),
        (STRING, b'"\\ud83d\\ude00 \xc3\xa9"'),
        (STRING, b'"12345678901234567890123 looks like a number"'),
        (STRUCT, b'{"deep": ' + b"[" * 300 + b"-18446744073709551616" + b"]" * 300 + b"}"),
        (STRUCT, b'{"wide": [' + b"[-9223372036854775809]," * 600 + b"[]]}"),
        (STRUCT, b'{"a": 1, "a": 2}'),
    ],
)
def test_payload_values_are_what_json_loads_gives(connect: dict[str, Any], text: bytes) -> None:
    expected = json.loads(text)
    values = decoded_x(connect, text)
    assert len(values) == 3
    assert all(same(value, expected) for value in values), (values, expected)


@pytest.mark.parametrize(
    "text",
    [
        b"9223372036854775808",  # orjson parses it (an unsigned 64-bit integer)
        b"18446744073709551615",
        b"18446744073709551616",  # beyond 64 bits: the stdlib parses it
        b"-9223372036854775809",
        b"123456789012345678901234567890",
    ],
)
def test_integers_beyond_int64_are_refused_with_a_schema_and_kept_without(text: bytes) -> None:
    (first, _), (cached, _), (schemaless, bare_key) = messages(INT64, text)
    decoder = Decoder()
    for value in (first, cached):  # the schema parsed, then matched by its bytes
        with pytest.raises(DecodeError, match=r"column 'x': .*\(int64\): .* out of the int64"):
            decoder.decode(origin(value, key()))
    row = decoded(schemaless, key_bytes=bare_key).row
    assert row is not None and same(row["x"], json.loads(text))


def test_numeric_decimals_beyond_64_bits_stay_exact() -> None:
    numeric = {
        "type": "bytes",
        "name": "org.apache.kafka.connect.data.Decimal",
        "parameters": {"scale": "0"},
    }
    for text, expected in [  # the schemaless message keeps the number
        (b"123456789012345678901234567", Decimal("123456789012345678901234567")),
        (b"-9223372036854775809", Decimal("-9223372036854775809")),
    ]:
        assert decoded_x(numeric, text)[:2] == [expected, expected]


DEEP = "[" * 200_000 + "]" * 200_000  # deep enough to overflow a native parser's stack


def test_nesting_too_deep_for_the_parser_is_a_decode_error_not_a_crash() -> None:
    for value, key_bytes in messages(STRUCT, DEEP.encode()):
        with pytest.raises(DecodeError, match="RecursionError"):
            Decoder().decode(origin(value, key_bytes))
    for value, key_bytes in messages(JSON_COLUMN, f'"{DEEP}"'.encode())[:2]:
        event = Decoder().decode(origin(value, key_bytes))  # a JSON column is never parsed
        assert event is not None and event.row is not None and event.row["x"] == Json(DEEP)


def stdlib_reason(raw: bytes) -> str:
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        return f"value is not UTF-8 text: {exc}"
    try:
        json.loads(text)
    except ValueError as exc:
        return f"value is not valid JSON: {exc}"
    raise AssertionError("valid JSON")


@pytest.mark.parametrize(
    "value",
    [
        b'{"op": "c", "after": {"id": 1,}}',
        b'{"op": "c", "after": {"id": 01}}',
        b'{"op": "c", "after": {"id": "\x01"}}',
        b'{"op": "c"} {"op": "d"}',
        b'\xef\xbb\xbf{"op": "c"}',
        b'{"op": "c", "after": {"name": "\xff"}}',
        b'{"op": "c", "after": {"name": "\xed\xa0\x80"}}',
        b'{"op": "c", "after": {"id": 12345678901234567890123, "x": .5}}',
    ],
)
def test_broken_text_is_refused_with_the_stdlib_reason(value: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        Decoder().decode(origin(value, key(1, schemas=False)))
    assert str(caught.value) == stdlib_reason(value)
