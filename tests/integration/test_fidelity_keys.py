"""Keys through the real Debezium connector: TRUNCATE, delete + re-insert, a primary-key change.

Each test drives SQL on the source, runs ``fanout run --sink X`` for all three sinks (one
process each) on the connector's topic and waits until every sink equals the source, column by
column. What each sink does on TRUNCATE (docs/sinks/*.md): PostgreSQL empties the table,
ClickHouse hides the older rows behind a watermark (the ``<table>_current`` view) and writes
tombstones, Elasticsearch deletes the older documents; rows inserted after it stay.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.integration.fidelity_support import (
    ALL_SINKS,
    SourceTable,
    StackSinks,
    capture,
    converge,
    dead_letters,
    deliver,
    sinks_fixture,
    source_table,
)
from tests.support.debezium_connector import POSTGRES_CONNECTOR, ConnectClient, read_topic

COLUMNS = "id int PRIMARY KEY, n int, label text, note text"
FAST = {"max_events": 50, "max_wait_ms": 100}


targets = sinks_fixture("fidkeys")


@pytest.fixture
def table(source_pg: psycopg.Connection[Any]) -> Iterator[SourceTable]:
    with source_table(source_pg, "fid_keys", COLUMNS) as created:
        yield created


def ops_in_topic(endpoints: Endpoints, table: SourceTable, expect: int) -> list[str]:
    records = read_topic(endpoints.kafka_bootstrap, table.topic, expect=expect, timeout_s=60)
    return [r.value["payload"]["op"] for r in records if r.value is not None]


def test_debezium_skips_truncate_unless_told_and_the_sinks_follow_one(
    connect_client: ConnectClient,
    debezium: StartConnector,
    table: SourceTable,
    targets: StackSinks,
    endpoints: Endpoints,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    # Debezium 3.6.1's default skips TRUNCATE; users who want it set skipped.operations=none,
    # as the test connector does (tests/support/debezium_connector.py).
    defaults = connect_client.request(
        "PUT",
        f"/connector-plugins/{POSTGRES_CONNECTOR}/config/validate",
        {"connector.class": POSTGRES_CONNECTOR, "topic.prefix": "x"},
    )[1]
    skipped = next(
        c["definition"]
        for c in defaults["configs"]
        if c["definition"]["name"] == "skipped.operations"
    )
    assert skipped["default_value"] == "t"

    capture(table, debezium)
    running = deliver(targets, table, tmp_path, workers, FAST)
    for ident in range(1, 6):
        table.run(
            "INSERT INTO {t} VALUES (%s, %s, 'before', 'kept until the truncate')", ident, ident
        )
    converge(targets, table, running, what="the rows before the truncate")

    table.run("TRUNCATE {t}")
    table.run("INSERT INTO {t} VALUES (6, 6, 'after', NULL), (2, 20, 'again', 'new')")
    converge(targets, table, running, what="only the rows inserted after the truncate")

    assert ops_in_topic(endpoints, table, expect=8) == ["c"] * 5 + ["t", "c", "c"]
    assert sorted(table.rows()) == [(2,), (6,)]
    assert {sink: dead_letters(targets.prefix, sink) for sink in ALL_SINKS} == dict.fromkeys(
        ALL_SINKS, 0
    )


def test_delete_then_reinsert_brings_back_no_old_column(
    debezium: StartConnector,
    table: SourceTable,
    targets: StackSinks,
    endpoints: Endpoints,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    capture(table, debezium)
    # First all in Kafka before the workers start: a batch holds several events of a key.
    for ident in (1, 2):
        table.run("INSERT INTO {t} VALUES (%s, 1, 'first', 'old note')", ident)
    table.run("DELETE FROM {t} WHERE id = 1")
    table.run("INSERT INTO {t} (id, n) VALUES (1, 2)")  # label, note: NULL now
    table.run("DELETE FROM {t} WHERE id = 2")
    table.run("INSERT INTO {t} (id, label) VALUES (2, 'second life')")
    # c c, d + tombstone, c, d + tombstone, c
    ops_in_topic(endpoints, table, expect=8)
    batch = {"max_events": 500, "max_wait_ms": 2000}
    running = deliver(targets, table, tmp_path, workers, batch)
    converge(targets, table, running, what="re-inserted rows without their old columns")

    # Then step by step, each one applied before the next: across batches.
    steps = [
        "UPDATE {t} SET note = 'noted' WHERE id = 1",
        "DELETE FROM {t} WHERE id = 1",
        "INSERT INTO {t} (id, label) VALUES (1, 'third life')",
        "DELETE FROM {t} WHERE id = 2",
        "INSERT INTO {t} (id, n, note) VALUES (2, 3, 'back')",
    ]
    for step in steps:
        table.run(step)
        converge(targets, table, running, what=f"every sink after {step!r}")
    assert table.rows() == {
        (1,): {"id": 1, "n": None, "label": "third life", "note": None},
        (2,): {"id": 2, "n": 3, "label": None, "note": "back"},
    }
    assert {sink: dead_letters(targets.prefix, sink) for sink in ALL_SINKS} == dict.fromkeys(
        ALL_SINKS, 0
    )


def test_a_primary_key_update_moves_the_row(
    debezium: StartConnector,
    table: SourceTable,
    targets: StackSinks,
    endpoints: Endpoints,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    capture(table, debezium)
    running = deliver(targets, table, tmp_path, workers, FAST)
    for ident in (1, 2, 3):
        table.run("INSERT INTO {t} VALUES (%s, %s, 'row', 'note')", ident, ident * 10)
    converge(targets, table, running, what="the rows before the key changes")

    table.run("UPDATE {t} SET id = 10, label = 'moved' WHERE id = 1")  # a new key, new values
    table.run("UPDATE {t} SET id = 20 WHERE id = 2")  # the same values under a new key
    table.run("UPDATE {t} SET id = 2 WHERE id = 3")  # onto the key another row just left
    converge(targets, table, running, what="the rows under their new keys")

    # Debezium sends a key change as a delete of the old key (+ tombstone) and a create.
    assert ops_in_topic(endpoints, table, expect=12)[3:] == ["d", "c"] * 3
    assert sorted(table.rows()) == [(2,), (10,), (20,)]
    assert {sink: dead_letters(targets.prefix, sink) for sink in ALL_SINKS} == dict.fromkeys(
        ALL_SINKS, 0
    )
