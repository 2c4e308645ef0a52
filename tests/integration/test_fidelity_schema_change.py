"""The source table's schema changed mid-stream, through the real Debezium connector.

All three sinks run (``fanout run --sink X``, one process each) while the source table gets a
new column or wider types; every sink must then equal the source, column by column.

A column added with a DEFAULT reads that default at the source in rows written before the
ALTER, but PostgreSQL emits no change for them: the sinks learn of such a row's value only
when the row next changes, and until then hold NULL there (the expectation below says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from tests.integration.debezium_fixtures import StartConnector
from tests.integration.fidelity_support import (
    ALL_SINKS,
    Rows,
    StackSinks,
    capture,
    converge,
    dead_letters,
    deliver,
    settle,
    sinks_fixture,
    source_table,
)

FAST = {"max_events": 50, "max_wait_ms": 100}


targets = sinks_fixture("fidschema")


def no_dead_letters(targets: StackSinks) -> None:
    assert {sink: dead_letters(targets.prefix, sink) for sink in ALL_SINKS} == dict.fromkeys(
        ALL_SINKS, 0
    )


def test_a_column_added_mid_stream_arrives_and_old_rows_keep_null(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    targets: StackSinks,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    with source_table(source_pg, "fid_add", "id int PRIMARY KEY, n int, label text") as table:
        capture(table, debezium)
        running = deliver(targets, table, tmp_path, workers, FAST)
        for ident in (1, 2, 3):
            table.run("INSERT INTO {t} VALUES (%s, %s, 'before')", ident, ident)
        converge(targets, table, running, what="the rows before the ALTER")

        table.run("ALTER TABLE {t} ADD COLUMN extra text, ADD COLUMN score int DEFAULT 7")
        table.run("INSERT INTO {t} VALUES (4, 4, 'after', 'new', 40)")
        table.run("INSERT INTO {t} (id, n, label) VALUES (5, 5, 'after')")  # score: 7
        table.run("UPDATE {t} SET extra = 'set later' WHERE id = 2")  # carries score 7
        untouched = {(1,), (3,)}  # no event since the ALTER: the sinks never saw their score

        def before_alter_is_null(sink: str, rows: Rows) -> Rows:
            return {k: {**r, "score": None} if k in untouched else r for k, r in rows.items()}

        converge(targets, table, running, before_alter_is_null, "the new columns")
        assert table.rows()[(1,)] == {"id": 1, "n": 1, "label": "before", "extra": None, "score": 7}

        table.run("UPDATE {t} SET n = 10 WHERE id IN (1, 3)")  # now their score travels
        converge(targets, table, running, what="every row once changed after the ALTER")
        no_dead_letters(targets)


def test_text_columns_widened_mid_stream_keep_every_value(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    targets: StackSinks,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    columns = "id int PRIMARY KEY, code varchar(10), label varchar(10)"
    with source_table(source_pg, "fid_widen", columns) as table:
        capture(table, debezium)
        running = deliver(targets, table, tmp_path, workers, FAST)
        for ident in (1, 2):
            table.run("INSERT INTO {t} VALUES (%s, 'c', 'short')", ident)
        converge(targets, table, running, what="the rows before the widening")

        table.run(
            "ALTER TABLE {t} ALTER COLUMN code TYPE varchar(100), ALTER COLUMN label TYPE text"
        )
        table.run("INSERT INTO {t} VALUES (3, %s, %s)", "c" * 100, "l" * 5000)
        table.run("INSERT INTO {t} VALUES (4, 'small', 'fits the old types')")
        table.run("UPDATE {t} SET label = %s WHERE id = 1", "wider " * 10)
        converge(targets, table, running, what="values of the wider types")
        no_dead_letters(targets)


def test_an_integer_widened_to_bigint_mid_stream_keeps_every_value(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    targets: StackSinks,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    with source_table(source_pg, "fid_bigint", "id int PRIMARY KEY, n int") as table:
        capture(table, debezium)
        running = deliver(targets, table, tmp_path, workers, FAST)
        for ident in (1, 2):
            table.run("INSERT INTO {t} VALUES (%s, %s)", ident, 2**31 - ident)
        converge(targets, table, running, what="the rows before the widening")

        table.run("ALTER TABLE {t} ALTER COLUMN n TYPE bigint")
        table.run("INSERT INTO {t} VALUES (3, %s), (4, 4)", 2**40)
        table.run("UPDATE {t} SET n = %s WHERE id = 1", -(2**62))
        settle(table, running, records=5)  # everything delivered or dead-lettered: compare now
        converge(targets, table, running, what="values of the wider type", timeout_s=5)
        no_dead_letters(targets)
