"""Decoder: the JsonConverter framing shortcuts never change what a message means."""

from __future__ import annotations

import json

import pytest

from fanout.debezium.envelope import Decoder
from fanout.errors import DecodeError
from fanout.events import Origin
from tests.unit._envelope_messages import ROW_FIELDS, decoded, envelope, envelope_schema, wrapped

PAYLOAD_COLUMN = [*ROW_FIELDS, {"type": "string", "optional": True, "field": "payload"}]


def test_other_layouts_of_the_same_message_decode_the_same() -> None:
    schema, payload = envelope_schema(), envelope()
    compact = wrapped(schema, payload)
    spaced = json.dumps({"schema": schema, "payload": payload}).encode()
    payload_first = json.dumps({"payload": payload, "schema": schema}).encode()
    with_newline = compact + b"\n"
    decoder = Decoder()
    events = [
        decoded(raw, decoder) for raw in (compact, spaced, payload_first, with_newline, compact)
    ]
    assert (
        len({(e.table, tuple(e.key.items()), tuple(e.row.items())) for e in events if e.row}) == 1
    )
    assert len({e.columns for e in events}) == 1


def test_a_column_named_payload_holding_the_separator() -> None:
    row = {"id": 1, "name": "x", "payload": ',"payload":{"id": 2}}'}
    message = wrapped(envelope_schema(PAYLOAD_COLUMN), envelope(after=row))
    decoder = Decoder()
    for _ in range(2):  # the first split, then the cached prefix
        assert decoded(message, decoder).row == row


def test_a_schema_holding_a_payload_key_falls_back_to_a_full_parse() -> None:
    odd = {"type": "struct", "optional": True, "default": {"x": 1, "payload": 2}, "field": "extra"}
    schema = envelope_schema([*ROW_FIELDS, odd])
    row = {"id": 1, "name": "x", "extra": {"x": 1, "payload": 3}}
    assert decoded(wrapped(schema, envelope(after=row))).row == row


def test_a_known_schema_with_a_broken_payload_is_still_refused() -> None:
    decoder = Decoder()
    good = wrapped(envelope_schema(), envelope())
    decoded(good, decoder)
    truncated = good[: good.index(b'"after"')] + b"}"
    with pytest.raises(DecodeError, match="value is not valid JSON"):
        decoder.decode(Origin("t", 0, 0, 1, b'{"id":1}', truncated))


def test_a_changed_schema_is_not_served_from_the_cache() -> None:
    decoder = Decoder()
    decoded(wrapped(envelope_schema(), envelope()), decoder)
    widened = [
        *ROW_FIELDS,
        {"type": "int64", "optional": True, "name": "io.debezium.time.Date", "field": "d"},
    ]
    event = decoded(
        wrapped(envelope_schema(widened), envelope(after={"id": 1, "name": "a", "d": 1})), decoder
    )
    assert event.row is not None and str(event.row["d"]) == "1970-01-02"
    assert event.columns[-1].type == "date"
