"""Debezium smoke test: the real PostgreSQL connector captures a snapshot, then insert, update,
delete and truncate, and writes the envelopes fanout consumes (JsonConverter with schemas)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql

from tests.integration.debezium_fixtures import StartConnector
from tests.support.debezium_connector import Record, read_topic
from tests.support.pipeline import unique

DOC = {"tags": ["a", "b"], "n": 1.5, "nested": {"ok": True}}


def test_connector_emits_every_operation(
    source_pg: psycopg.Connection[Any], debezium: StartConnector, kafka_bootstrap: str
) -> None:
    table = unique("smoke_dbz")
    ident = sql.Identifier(table)
    source_pg.execute(
        sql.SQL(
            "CREATE TABLE {t} (tenant int, id int, name text, doc jsonb, PRIMARY KEY (tenant, id))"
        ).format(t=ident)
    )
    try:
        insert = sql.SQL("INSERT INTO {t} VALUES (%s, %s, %s, %s)").format(t=ident)
        source_pg.execute(insert, (1, 1, "snap-1", json.dumps(DOC)))
        source_pg.execute(insert, (1, 2, "snap-2", None))
        connector = debezium(table.replace("_", "-"), [f"public.{table}"])

        source_pg.execute(insert, (2, 1, "new", json.dumps({"x": None})))
        source_pg.execute(
            sql.SQL("UPDATE {t} SET name = 'renamed' WHERE id = 1 AND tenant = 1").format(t=ident)
        )
        source_pg.execute(sql.SQL("DELETE FROM {t} WHERE tenant = 1 AND id = 2").format(t=ident))
        source_pg.execute(sql.SQL("TRUNCATE {t}").format(t=ident))

        # 2 snapshot reads, create, update, delete + its tombstone, truncate
        records = read_topic(kafka_bootstrap, connector.topic(table), expect=7, timeout_s=60)
    finally:
        source_pg.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=ident))

    assert [_op(r) for r in records] == ["r", "r", "c", "u", "d", None, "t"]
    reads, (create, update, delete, tombstone, truncate) = records[:2], records[2:]
    _assert_wrapped(records, table)
    assert [r.key["payload"] for r in reads] == [{"tenant": 1, "id": 1}, {"tenant": 1, "id": 2}]
    assert json.loads(reads[0].value["payload"]["after"]["doc"]) == DOC
    assert reads[1].value["payload"]["after"]["doc"] is None
    assert create.value["payload"]["after"]["name"] == "new"
    assert update.value["payload"]["after"]["name"] == "renamed"
    assert delete.value["payload"]["before"] == {
        "tenant": 1,
        "id": 2,
        "name": None,
        "doc": None,  # default REPLICA IDENTITY: key only
    }
    # The tombstone follows the delete, same key, null value (log compaction drops the key).
    assert tombstone.key == delete.key and tombstone.value is None
    assert truncate.key is None and truncate.value["payload"]["after"] is None
    _assert_lsn_grows([*reads, create, update, delete, truncate])


def _op(record: Record) -> str | None:
    return None if record.value is None else str(record.value["payload"]["op"])


def _assert_wrapped(records: list[Record], table: str) -> None:
    """JsonConverter with schemas: every key and value is {"schema": ..., "payload": ...}."""
    for record in records:
        if record.key is not None:
            assert set(record.key) == {"schema", "payload"}, record.key
            assert record.key["schema"]["name"].endswith(f".{table}.Key")
        if record.value is not None:
            assert set(record.value) == {"schema", "payload"}, record.value
            assert record.value["schema"]["name"].endswith(f".{table}.Envelope")
            assert record.value["payload"]["source"]["connector"] == "postgresql"


def _assert_lsn_grows(records: list[Record]) -> None:
    """Snapshot reads share the snapshot's LSN; each later transaction commits later."""
    lsns = [r.value["payload"]["source"]["lsn"] for r in records]
    assert all(isinstance(lsn, int) and lsn > 0 for lsn in lsns), lsns
    snapshot, streamed = lsns[:2], lsns[2:]
    assert snapshot[0] == snapshot[1], lsns
    assert snapshot[1] < streamed[0] and streamed == sorted(set(streamed)), lsns
