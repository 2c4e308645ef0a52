"""Decoder: what it refuses, and that the reason says why (these land in the DLQ)."""

from __future__ import annotations

from typing import Any

import pytest

from fanout.debezium.envelope import Decoder
from fanout.errors import DecodeError
from tests.unit._envelope_messages import (
    ROW_FIELDS,
    decode,
    dumps,
    envelope,
    envelope_schema,
    mysql_source,
    origin,
    pg_source,
    wrapped,
)

DECIMAL = {
    "type": "bytes",
    "optional": True,
    "name": "org.apache.kafka.connect.data.Decimal",
    "parameters": {"scale": "2"},
    "field": "price",
}


def refused(value: bytes | None, decoder: Decoder | None = None, **kwargs: Any) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(value, decoder, **kwargs)
    return str(caught.value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"before": null, "after": {"id": 1', "value is not valid JSON"),
        (b"\xff\xfe{}", "value is not UTF-8 text"),
        (b"[1, 2]", "value is not a Debezium change event: a JSON list"),
        (b'"text"', "value is not a Debezium change event: a JSON str"),
        (dumps(envelope("x")), "unknown op 'x'"),
        (dumps(envelope("u") | {"after": None}), "op 'u' without an 'after' row"),
        (wrapped({"type": "string"}, "hello"), "value schema is a 'string', not a Debezium struct"),
        (wrapped({"type": "struct", "fields": 3}, {"op": "c"}), "value schema is malformed"),
    ],
)
def test_undecodable_values(value: bytes, reason: str) -> None:
    assert reason in refused(value)


@pytest.mark.parametrize("op", ["c", "u", "r", "d"])
@pytest.mark.parametrize("key", [b"", b"null", b'{"schema": null, "payload": null}', b"{}"])
def test_a_row_without_a_key_is_decoded_for_routing_to_decide(op: str, key: bytes) -> None:
    event = decode(dumps(envelope(op)), key_bytes=key)
    assert event is not None and event.key == {}


def test_key_that_is_not_an_object() -> None:
    assert "key is not a JSON object but a JSON int" in refused(dumps(envelope()), key_bytes=b"17")
    assert "key is not valid JSON" in refused(dumps(envelope()), key_bytes=b"{oops")


def test_value_not_matching_its_schema_names_the_column() -> None:
    fields = [*ROW_FIELDS, DECIMAL]
    value = wrapped(
        envelope_schema(fields), envelope(after={"id": 1, "name": "a", "price": "not base64!"})
    )
    reason = refused(value)
    assert "column 'price'" in reason and "does not match its schema" in reason


def test_decimal_schema_without_scale() -> None:
    broken = {**DECIMAL, "parameters": {}}
    value = wrapped(envelope_schema([*ROW_FIELDS, broken]), envelope())
    assert "column 'price': Decimal without a valid scale" in refused(value)


def test_no_version_under_the_configured_source_names_what_is_missing() -> None:
    reason = refused(dumps(envelope(source=pg_source(lsn=None))), Decoder({"dbserver1.*": "lsn"}))
    topic = "dbserver1.inventory.customers"
    assert reason == f"no version: version source 'lsn' for topic '{topic}' needs source.lsn"
    auto = refused(dumps(envelope(source={"schema": "s", "table": "t"})))
    assert "needs source.lsn or source.file/source.pos or source.ts_ms" in auto
    binlog = refused(dumps(envelope()), Decoder({"*": "binlog"}))
    assert "needs source.file or source.pos" in binlog


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (mysql_source(row=8192), "binlog row 8192 does not fit the version's 13 bits"),
        (mysql_source(pos=2**32), "binlog pos 4294967296 does not fit"),
        (mysql_source(file="mysql-bin.000300000"), "binlog file index 300000 does not fit"),
        (mysql_source(file="binlog"), "binlog file name 'binlog' has no numeric suffix"),
        (pg_source(lsn=-1), "lsn is not a non-negative integer: -1"),
        (pg_source(lsn="0/16B3748"), "lsn is not a non-negative integer: '0/16B3748'"),
    ],
)
def test_unusable_positions(source: dict[str, Any], reason: str) -> None:
    assert reason in refused(dumps(envelope(source=source)))


def test_tombstone_without_a_key_or_a_timestamp() -> None:
    deletes = Decoder(tombstones="delete")
    assert refused(None, deletes, key_bytes=b"").startswith("tombstone: missing key")
    assert "without a Kafka timestamp" in refused(None, deletes, timestamp_ms=None)


def test_tombstone_before_any_row_of_its_topic_is_not_guessed_at() -> None:
    reason = refused(None, Decoder())
    assert "before any row of that topic" in reason
    assert "set kafka.tombstones to skip or delete" in reason


def test_tombstone_on_a_topic_versioned_by_position_cannot_be_ordered() -> None:
    decoder = Decoder(tombstones="delete")
    decoder.decode(origin(dumps({"id": 1, "__lsn": 50})))
    assert "cannot be ordered against its rows" in refused(None, decoder)
    assert "cannot be ordered" in refused(None, Decoder({"*": "lsn"}, tombstones="delete"))


def test_tombstone_on_a_topic_with_several_tables_and_a_bare_key() -> None:
    decoder = Decoder()
    for table in ("a", "b"):
        decoder.decode(
            origin(dumps({"id": 1, "__table": table}), key_bytes=b'{"id": 1}', topic="all")
        )
    reason = refused(None, decoder, key_bytes=b'{"id": 1}', topic="all")
    assert "carries several tables" in reason


def test_nothing_but_decode_errors_escape() -> None:
    odd = dumps({"before": None, "after": {"id": 1}, "op": "c", "source": "not an object"})
    assert "malformed Debezium message" in refused(odd)


def test_a_row_without_a_key_after_keyed_rows_of_its_table_is_refused() -> None:
    decoder = Decoder()
    assert decode(dumps(envelope("c")), decoder) is not None  # keyed: the table has a key
    reason = refused(dumps(envelope("u")), decoder, key_bytes=b"")
    assert reason.startswith("missing key") and "earlier rows of" in reason
