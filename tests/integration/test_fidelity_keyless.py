"""Tables without a primary key, captured by the real Debezium connector.

Debezium sends their rows without a message key. Each sink follows the table's keyless policy:
PostgreSQL by default skips them (one log line, a metric), ClickHouse by default appends every
row keyed by its source position. Never a DLQ entry per row, and an excluded table costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from clickhouse_connect.driver.client import Client as ClickHouseClient
from psycopg import sql

from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.integration.fidelity_support import stack_config
from tests.support.pipeline import (
    WorkerProcess,
    read_topic,
    unique,
    wait_caught_up,
    wait_for,
)

ROWS = 70


def test_rows_without_a_key_are_skipped_or_appended_never_dead_lettered(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    endpoints: Endpoints,
    pg: psycopg.Connection[Any],
    clickhouse: ClickHouseClient,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    table = unique("keyless")
    source_pg.execute(sql.SQL("CREATE TABLE {} (n int, note text)").format(sql.Identifier(table)))
    try:
        connector = debezium(table.replace("_", "-"), [f"public.{table}"])
        source_pg.execute(
            sql.SQL("INSERT INTO {} SELECT g, 'row ' || g FROM generate_series(1, %s) g").format(
                sql.Identifier(table)
            ),
            (ROWS,),
        )
        topic = connector.topic(table)
        wait_for(lambda: len(read_topic(topic, timeout_s=5)) >= ROWS, 60, "the connector's rows")
    finally:
        source_pg.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))

    prefix = unique("kl")
    batch = {"max_events": 25, "max_wait_ms": 100}
    config = stack_config(prefix, topic, endpoints, batch, sinks=("postgres", "clickhouse"))
    for sink in ("postgres", "clickhouse"):
        workers.append(WorkerProcess(sink, config, tmp_path).start())
    for sink in ("postgres", "clickhouse"):
        wait_caught_up(f"{prefix}-{sink}", [topic], timeout_s=120)

    assert read_topic(f"{prefix}.dlq.postgres", timeout_s=2, expect=0) == []
    assert read_topic(f"{prefix}.dlq.clickhouse", timeout_s=2, expect=0) == []
    # PostgreSQL skipped the table: no table made, one warning for it in the log.
    found = pg.execute(
        "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s", (prefix, table)
    ).fetchone()
    assert found is None
    assert workers[0].log().count("rows of a table without a primary key are skipped") == 1
    # ClickHouse appended every row, keyed by its source position.
    rows = clickhouse.query(
        f"SELECT n, note, _fanout_position FROM `{prefix}`.`{table}` FINAL ORDER BY n"
    ).result_rows
    assert [(n, note) for n, note, _ in rows] == [(i, f"row {i}") for i in range(1, ROWS + 1)]
    assert len({position for _, _, position in rows}) == ROWS
