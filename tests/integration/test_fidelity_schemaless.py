"""Schemaless JSON from the real connector (``value.converter.schemas.enable=false``): every row
reaches every sink.

Without a schema a message says nothing about types: the sinks infer them from the values
(``sinks/base/columns.py``) when they create a table or column, and check a value against the
column when it exists. Arrays (empty, with NULLs, of numbers or text), JSON documents of any
shape, numerics (``decimal.handling.mode=string``, the usual choice without schemas: exact
text), timestamps (epoch microseconds and ISO text, as Debezium sends them) and dates (day
numbers) go through the connector into all three sinks; none is dead-lettered and every sink
holds every row, value for value.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from sinks.clickhouse.types import quote_identifier
from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.integration.fidelity_support import (
    ALL_SINKS,
    Rows,
    SourceTable,
    StackSinks,
    caught_up,
    dead_letters,
    sinks_fixture,
    source_table,
    stack_config,
    start_workers,
)
from tests.support.pipeline import create_topic, read_topic

COLUMNS = (
    "id int PRIMARY KEY, tags text[], scores int[], doc jsonb, amount numeric(12,2),"
    " loose numeric, ratio float8, created timestamp, created_tz timestamptz, day date,"
    " note text"
)
EPOCH = dt.datetime(1970, 1, 1)
ROWS = 60


def row(i: int) -> tuple[Any, ...]:
    """Row ``i``: every few rows another array and JSON shape (empty, NULL items, nested)."""
    tags: list[str | None] | None = [["a", "b"], [], None, ["x", None], ["ü", '"q"']][i % 5]
    scores: list[int | None] | None = [[1, 2], [], [None, 3], [2**31 - 1], None][i % 3]
    docs = ['{"a": {"b": [1, 2.5]}}', "[]", '"text"', "null", "12345678901234567890.5", None]
    return (
        i,
        tags,
        scores,
        docs[i % len(docs)],
        Decimal(i) / 4,
        Decimal(f"{i}E-22") if i % 2 else None,
        i / 8,
        dt.datetime(2024, 1, 1, 12) + dt.timedelta(seconds=i, microseconds=7),
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i),
        dt.date(1899, 12, 31) + dt.timedelta(days=i),
        f"row {i}" if i % 4 else None,
    )


targets = sinks_fixture("fidsl")


@pytest.fixture
def table(source_pg: psycopg.Connection[Any]) -> Iterator[SourceTable]:
    with source_table(source_pg, "fid_schemaless", COLUMNS) as made:
        yield made


def capture_schemaless(table: SourceTable, debezium: StartConnector) -> str:
    prefix = table.name.replace("_", "-")
    topic = create_topic(f"{prefix}.public.{table.name}", partitions=1)
    table.connector = debezium(
        prefix,
        [f"public.{table.name}"],
        overrides={"decimal.handling.mode": "string"},
        schemas=False,
    )
    return topic


def source_rows(table: SourceTable) -> Rows:
    """The source rows with JSON as its text (what the schemaless message carries)."""
    query = sql.SQL(
        "SELECT id, tags, scores, doc::text AS doc, amount, loose, ratio, created, created_tz,"
        " day, note FROM {}"
    ).format(sql.Identifier(table.name))
    cursor = table.conn.execute(query)
    names = [column.name for column in cursor.description or ()]
    return {(r[0],): dict(zip(names, r, strict=True)) for r in cursor}


def as_sent(values: dict[str, Any]) -> dict[str, Any]:
    """A source row as the schemaless message carries it: numerics as exact text
    (``decimal.handling.mode=string``), timestamps as epoch microseconds, timestamptz as ISO
    text, dates as day numbers, JSON as its text, arrays as arrays."""
    created, created_tz, day = values["created"], values["created_tz"], values["day"]
    return {
        **values,
        "amount": str(values["amount"]),
        "loose": None if values["loose"] is None else format(values["loose"], "f"),
        "created": (created - EPOCH) // dt.timedelta(microseconds=1),
        "created_tz": created_tz.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "day": (day - EPOCH.date()).days,
    }


def comparable(rows: Rows) -> Rows:
    """A sink's rows with arrays kept as JSON text (new columns for lists are JSON) parsed."""
    return {
        key: {
            name: json.loads(value)
            if name in ("tags", "scores") and isinstance(value, str)
            else value
            for name, value in values.items()
        }
        for key, values in rows.items()
    }


def test_schemaless_rows_with_arrays_json_numerics_and_timestamps_reach_every_sink(
    table: SourceTable,
    debezium: StartConnector,
    targets: StackSinks,
    endpoints: Endpoints,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    topic = capture_schemaless(table, debezium)
    insert = "INSERT INTO {t} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    for i in range(1, ROWS + 1):
        table.run(insert, *row(i))
    table.run("UPDATE {t} SET tags = %s, doc = %s WHERE mod(id, 7) = 0", [], '{"v": [[]]}')
    table.run("DELETE FROM {t} WHERE mod(id, 11) = 0")
    expected_records = ROWS + ROWS // 7 + 2 * (ROWS // 11)
    first = read_topic(topic, timeout_s=60, expect=expected_records)
    assert "schema" not in json.loads(first[0].value())  # really schemaless

    config = stack_config(targets.prefix, topic, endpoints, {"max_events": 7, "max_wait_ms": 100})
    caught_up(start_workers(config, tmp_path, workers))
    assert {sink: dead_letters(targets.prefix, sink) for sink in ALL_SINKS} == dict.fromkeys(
        ALL_SINKS, 0
    )

    want = {key: as_sent(values) for key, values in source_rows(table).items()}
    assert len(want) == ROWS - ROWS // 11
    columns = list(next(iter(want.values())))
    for sink in ALL_SINKS:
        got = comparable(targets.read(sink, table.name, columns, table.key))
        assert got == want, sink


def test_schemaless_values_take_the_types_of_existing_target_columns(
    table: SourceTable,
    debezium: StartConnector,
    targets: StackSinks,
    endpoints: Endpoints,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    """Pre-made targets with array columns take every list (empty, NULL items) as an array;
    a value that fits no existing column (text for an integer column) is dead-lettered with
    the reason, and its row only."""
    sinks = ("postgres", "clickhouse")
    prefix = targets.prefix
    targets.pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(prefix)))
    targets.pg.execute(
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, tags text[], scores int[], note int)").format(
            sql.Identifier(prefix, table.name)
        )
    )
    targets.clickhouse.command(f"CREATE DATABASE {quote_identifier(prefix)}")
    targets.clickhouse.command(
        f"CREATE TABLE {quote_identifier(prefix)}.{quote_identifier(table.name)} (id Int32,"
        " tags Array(Nullable(String)), scores Array(Nullable(Int32)), note Nullable(Int32),"
        " _fanout_version UInt64, _fanout_deleted UInt8, _fanout_source_ts_ms Int64)"
        " ENGINE = ReplacingMergeTree(_fanout_version, _fanout_deleted) ORDER BY id"
    )
    topic = capture_schemaless(table, debezium)
    insert = "INSERT INTO {t} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    for i in range(1, ROWS + 1):
        table.run(insert, *row(i))
    table.run("UPDATE {t} SET tags = %s WHERE mod(id, 7) = 0", [])
    table.run("DELETE FROM {t} WHERE mod(id, 11) = 0")
    read_topic(topic, timeout_s=60, expect=ROWS + ROWS // 7 + 2 * (ROWS // 11))

    config = stack_config(prefix, topic, endpoints, {"max_events": 7, "max_wait_ms": 100}, sinks)
    caught_up(start_workers(config, tmp_path, workers, sinks))

    source = source_rows(table)
    # "row i" (text) fits no integer column: those events, and only those, are dead-lettered
    refused = ROWS - ROWS // 4 + sum(1 for i in range(7, ROWS + 1, 7) if i % 4)
    want = {
        key: {"id": values["id"], "tags": values["tags"], "scores": values["scores"]}
        for key, values in source.items()
        if values["note"] is None
    }
    for sink in sinks:
        dead = read_topic(f"{prefix}.dlq.{sink}", timeout_s=10, expect=refused)
        assert len(dead) == refused, sink
        reasons = {dict(m.headers() or [])["fanout.error.message"].decode() for m in dead}
        assert all("note" in reason for reason in reasons), (sink, reasons)
        got = targets.read(sink, table.name, ["id", "tags", "scores"], table.key)
        if sink == "clickhouse":  # a NULL array reads [] (ClickHouse has no Nullable(Array))
            want_here = {
                key: {
                    name: [] if value is None and name != "id" else value
                    for name, value in w.items()
                }
                for key, w in want.items()
            }
        else:
            want_here = want
        assert got == want_here, sink
