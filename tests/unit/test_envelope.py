"""Decoder: forms, ops, tables, versions and tombstones (encodings: test_envelope_types.py)."""

from __future__ import annotations

import pytest

from fanout.debezium.envelope import Decoder
from fanout.debezium.versions import pack_binlog
from fanout.events import Op
from tests.unit._envelope_messages import (
    KAFKA_TS,
    ROW_FIELDS,
    TOPIC,
    decode,
    decoded,
    dumps,
    envelope,
    envelope_schema,
    key,
    mysql_source,
    pg_source,
    row_schema,
    wrapped,
)

# -- forms and ops ---------------------------------------------------------------------------


@pytest.mark.parametrize("schemas", [True, False])
@pytest.mark.parametrize("op", ["c", "u", "r"])
def test_create_update_and_snapshot_read_are_upserts_of_the_after_row(
    schemas: bool, op: str
) -> None:
    payload = envelope(op, after={"id": 7, "name": "ann"})
    value = wrapped(envelope_schema(), payload) if schemas else dumps(payload)
    event = decoded(value, key_bytes=key(7, schemas))
    assert (event.op, event.table, event.key, event.row) == (
        Op.UPSERT,
        "inventory.customers",
        {"id": 7},
        {"id": 7, "name": "ann"},
    )
    assert (event.version, event.source_ts_ms) == (1000, 1_714_000_000_000)
    assert event.origin.offset == 42


def test_columns_come_from_the_value_schema_and_are_empty_without_one() -> None:
    with_schema = decoded(wrapped(envelope_schema(), envelope()))
    assert [(c.name, c.type, c.optional) for c in with_schema.columns] == [
        ("id", "int32", False),
        ("name", "string", True),
    ]
    assert decoded(dumps(envelope())).columns == ()


def test_delete_carries_the_key_and_no_row() -> None:
    payload = envelope("d", before={"id": 3, "name": None})
    event = decoded(wrapped(envelope_schema(), payload), key_bytes=key(3))
    assert (event.op, event.key, event.row, event.version) == (Op.DELETE, {"id": 3}, None, 1000)


def test_truncate_clears_the_table_without_a_key() -> None:
    value = wrapped(envelope_schema(), {"source": pg_source(lsn=5000), "op": "t", "ts_ms": 1})
    event = decoded(value, key_bytes=b"")
    assert (event.op, event.table, event.key, event.row, event.version) == (
        Op.TRUNCATE,
        "inventory.customers",
        {},
        None,
        5000,
    )


def test_bare_key_with_wrapped_value_and_the_other_way_round() -> None:
    assert decoded(wrapped(envelope_schema(), envelope()), key_bytes=dumps({"id": 1})).key == {
        "id": 1
    }
    assert decoded(dumps(envelope()), key_bytes=key(1)).key == {"id": 1}


def test_composite_keys_keep_every_column() -> None:
    event = decoded(dumps(envelope()), key_bytes=dumps({"order_id": 4, "line_no": 2}))
    assert event.key == {"order_id": 4, "line_no": 2}


@pytest.mark.parametrize(
    "value",
    [
        dumps({"ts_ms": 1_714_000_000_000}),  # heartbeat
        wrapped(
            {"type": "struct", "fields": [], "name": "io.debezium.connector.common.Heartbeat"},
            {"ts_ms": 1},
        ),
        dumps(
            {"source": {}, "databaseName": "inventory", "ddl": "ALTER TABLE …", "tableChanges": []}
        ),
        dumps({"status": "BEGIN", "id": "571", "event_count": None, "data_collections": None}),
        dumps(envelope("m")),  # logical decoding message
    ],
)
def test_messages_without_a_row_decode_to_nothing(value: bytes) -> None:
    assert decode(value) is None


# -- the flattened form ----------------------------------------------------------------------


def flat(row: dict[str, object], schema: bool = False) -> bytes:
    if not schema:
        return dumps(row)
    fields = [
        *ROW_FIELDS,
        *({"type": "string", "optional": True, "field": n} for n in row if n.startswith("__")),
    ]
    return wrapped(row_schema(fields), row)


@pytest.mark.parametrize("schema", [True, False])
def test_flattened_row_loses_its_meta_fields(schema: bool) -> None:
    value = flat(
        {
            "id": 1,
            "name": "ann",
            "__op": "c",
            "__table": "customers",
            "__schema": "crm",
            "__lsn": 77,
        },
        schema,
    )
    event = decoded(value)
    assert (event.op, event.table, event.row, event.version) == (
        Op.UPSERT,
        "crm.customers",
        {"id": 1, "name": "ann"},
        77,
    )
    if schema:
        assert [column.name for column in event.columns] == ["id", "name"]


@pytest.mark.parametrize("deleted", ["true", True])
def test_flattened_rewritten_delete(deleted: object) -> None:
    event = decoded(flat({"id": 1, "name": None, "__deleted": deleted, "__source_ts_ms": 9}))
    assert (event.op, event.row, event.version, event.source_ts_ms) == (Op.DELETE, None, 9, 9)


def test_flattened_not_deleted_is_an_upsert() -> None:
    assert decoded(flat({"id": 1, "name": "x", "__deleted": "false"})).op is Op.UPSERT


@pytest.mark.parametrize(
    ("meta", "topic", "table"),
    [
        ({"__db": "shop", "__table": "orders"}, TOPIC, "shop.orders"),
        ({"__table": "orders"}, "srv.sales.orders", "sales.orders"),
        ({"__table": "orders"}, "orders_topic", "orders"),
        ({}, "srv.sales.orders", "sales.orders"),
    ],
)
def test_flattened_table_name(meta: dict[str, object], topic: str, table: str) -> None:
    declared = Decoder(flattened_topics=["srv.*", "orders_topic"])  # rows without __ fields
    assert decoded(flat({"id": 1} | meta), declared, topic=topic).table == table


def test_flattened_version_falls_back_from_lsn_to_source_ts_to_kafka_timestamp() -> None:
    assert decoded(flat({"id": 1, "__lsn": 5, "__source_ts_ms": 6})).version == 5
    assert decoded(flat({"id": 1, "__source_ts_ms": 6})).version == 6
    assert decoded(flat({"id": 1}), Decoder(flattened_topics=["dbserver1.*"])).version == KAFKA_TS


# -- tables and versions ---------------------------------------------------------------------


def test_mysql_table_is_db_dot_table_and_version_packs_the_binlog_position() -> None:
    event = decoded(dumps(envelope(source=mysql_source("mysql-bin.000042", 1_234_567, 3))))
    assert event.table == "inventory.customers"
    assert event.version == pack_binlog(42, 1_234_567, 3) == (42 << 45) | (1_234_567 << 13) | 3


def test_binlog_versions_order_like_file_pos_row() -> None:
    positions = [(3, 999_999, 8191), (4, 4, 0), (4, 4, 1), (4, 5, 0), (2**18 - 1, 2**32 - 1, 8191)]
    versions = [pack_binlog(*position) for position in positions]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert versions[-1] < 2**63


def test_without_lsn_or_binlog_the_version_is_source_ts_ms() -> None:
    source = {
        "schema": "dbo",
        "table": "customers",
        "ts_ms": 123,
        "change_lsn": "00000027:00000758:0003",
    }
    assert decoded(dumps(envelope(source=source))).version == 123


def test_version_source_per_topic_glob() -> None:
    decoder = Decoder({"other.*": "lsn", "dbserver1.*": "ts_ms"})
    assert decoded(dumps(envelope(source=pg_source(lsn=1000, ts_ms=55))), decoder).version == 55
    mysql = dumps(envelope(source=mysql_source(pos=154)))
    assert decoded(mysql, Decoder({"*": "binlog"})).version == pack_binlog(3, 154, 0)


def test_the_table_falls_back_to_the_topic_name() -> None:
    event = decoded(dumps(envelope(source={"ts_ms": 1})), topic="srv.sales.orders")
    assert event.table == "sales.orders"


# -- tombstones ------------------------------------------------------------------------------


def test_tombstone_after_a_full_envelope_is_redundant() -> None:
    decoder = Decoder()
    assert decoded(dumps(envelope("d")), decoder).op is Op.DELETE
    assert decode(None, decoder) is None
    assert decode(b"", decoder) is None


def test_tombstone_on_a_flattened_topic_is_a_delete_versioned_by_the_kafka_timestamp() -> None:
    decoder = Decoder()
    decoded(flat({"id": 1, "__source_ts_ms": 5}), decoder)
    event = decoded(None, decoder, key_bytes=key(1))
    assert (event.op, event.table, event.key, event.row, event.version) == (
        Op.DELETE,
        "inventory.customers",
        {"id": 1},
        None,
        KAFKA_TS,
    )


def test_tombstone_modes_force_the_choice() -> None:
    forced = Decoder(tombstones="delete")
    decoded(
        dumps(envelope(source={"table": "customers", "schema": "inventory", "ts_ms": 1})), forced
    )
    assert decoded(None, forced).op is Op.DELETE
    assert decode(None, Decoder(tombstones="skip")) is None


def test_tombstone_after_rewritten_deletes_is_redundant() -> None:
    decoder = Decoder()
    decoded(flat({"id": 1, "__deleted": "false", "__source_ts_ms": 5}), decoder)
    assert decode(None, decoder) is None


def test_tombstone_table_comes_from_the_key_schema_name() -> None:
    decoder = Decoder()
    decoded(flat({"id": 1, "__table": "a", "__schema": "s"}), decoder, topic="all")
    decoded(flat({"id": 1, "__table": "b", "__schema": "s"}), decoder, topic="all")
    assert decoded(None, decoder, topic="all").table == "inventory.customers"


def test_a_truncate_does_not_turn_off_tombstone_deletes_on_a_flattened_topic() -> None:
    decoder = Decoder()
    decoded(flat({"id": 1, "__source_ts_ms": 5}), decoder)
    decoded(
        dumps({"source": {"table": "customers", "schema": "inventory", "ts_ms": 6}, "op": "t"}),
        decoder,
    )
    assert decoded(None, decoder).op is Op.DELETE
