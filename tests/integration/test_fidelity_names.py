"""Target names: dotted ClickHouse targets, two source tables on one target, index names derived
for Elasticsearch.

* A ClickHouse target with a dot (``inventory.orders``, from ``{schema}.{table}``) is one table
  of the sink's database in every statement (create, insert, carry read, truncate, view), in
  both backends: embedded chDB and a server over HTTP.
* Two source tables captured by the real connector that route to one target stop every sink
  with a configuration error naming both (exit code 2), and nothing of the second is merged in;
  ``routing.allow_merge`` makes the merge deliberate; ``{schema}.{table}`` keeps them apart (in
  ClickHouse, as two dotted table names).
* A table named in mixed case with spaces gets a valid Elasticsearch index by the derivation
  rule (PostgreSQL and ClickHouse keep its name), with every row; two tables deriving one index
  name stop the Elasticsearch sink naming both.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from clickhouse_connect.driver.client import Client as ClickHouseClient
from psycopg import sql

from fanout.events import ChangeEvent, Op, Origin
from fanout.settings import ClickHouseSettings
from sinks.clickhouse.sink import ClickHouseSink
from sinks.clickhouse.types import quote_identifier
from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.integration.fidelity_support import (
    ALL_SINKS,
    StackSinks,
    sinks_fixture,
    stack_config,
)
from tests.support.pipeline import (
    WorkerProcess,
    create_topic,
    end_offsets,
    read_topic,
    unique,
    wait_caught_up,
    wait_for,
)

BATCH = {"max_events": 500, "max_wait_ms": 200}


# ---- a dotted ClickHouse target, both backends ----------------------------------------------


@pytest.fixture(params=("embedded", "server"))
def ch_settings(request: pytest.FixtureRequest, tmp_path: Path) -> ClickHouseSettings:
    database = f"chnames_{uuid.uuid4().hex[:10]}"
    if request.param == "embedded":
        return ClickHouseSettings(data_dir=str(tmp_path / "chdb"), database=database)
    request.getfixturevalue("clickhouse")  # fails with the devstack hint if the endpoint is down
    endpoints: Endpoints = request.getfixturevalue("endpoints")
    return ClickHouseSettings(host=endpoints.ch_host, port=endpoints.ch_port, database=database)


@pytest.fixture
def ch_sink(ch_settings: ClickHouseSettings) -> Iterator[ClickHouseSink]:
    sink = ClickHouseSink(ch_settings)
    sink.open()
    yield sink
    sink.backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(ch_settings.database)}")
    sink.close()


def change(op: Op, key: int | None, row: dict[str, Any] | None, version: int) -> ChangeEvent:
    ident = {} if key is None else {"id": key}
    return ChangeEvent(
        op, "inventory.orders", ident, None if row is None else {"id": key, **row}, version,
        1_700_000_000_000, Origin("cdc", 0, version), target="inventory.orders",
    )  # fmt: skip


def test_a_dotted_clickhouse_target_is_one_table_in_every_statement(
    ch_sink: ClickHouseSink, ch_settings: ClickHouseSettings
) -> None:
    upsert, delete, truncate = Op.UPSERT, Op.DELETE, Op.TRUNCATE
    assert ch_sink.write([change(upsert, 1, {"a": "x", "b": "y"}, 1)]) == []
    assert ch_sink.write([change(upsert, 2, {"a": "p", "b": "q"}, 2)]) == []
    # a partial row (b not carried) reads its stored value back through the same name
    assert ch_sink.write([change(upsert, 1, {"a": "z"}, 3), change(delete, 2, None, 4)]) == []
    client = ch_sink.backend.client
    view = quote_identifier("inventory.orders_current")
    rows = client.query(f"SELECT id, a, b FROM {view} ORDER BY id").result_rows
    assert [tuple(row) for row in rows] == [(1, "z", "y")]
    tables = client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"
    ).result_rows
    assert ("inventory.orders",) in [tuple(row) for row in tables]
    databases = client.query("SELECT name FROM system.databases").result_rows
    assert ("inventory",) not in [tuple(row) for row in databases]
    assert ch_sink.write([change(truncate, None, None, 5)]) == []
    assert client.query(f"SELECT count() FROM {view}").result_rows[0][0] == 0
    assert ch_settings.database  # every name above was the sink's own database


# ---- the real connector: collisions and derived index names --------------------------------


targets = sinks_fixture("fidnames")


def create_tables(conn: psycopg.Connection[Any], names: list[tuple[str, str]]) -> None:
    for schema, table in names:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, origin text)").format(
                sql.Identifier(schema, table)
            )
        )


def drop_tables(conn: psycopg.Connection[Any], names: list[tuple[str, str]]) -> None:
    for schema, table in names:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, table)))
        if schema != "public":
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(schema)))


def fill(conn: psycopg.Connection[Any], schema: str, table: str, ids: range) -> None:
    statement = sql.SQL(
        "INSERT INTO {} SELECT g, %s FROM generate_series(%s::int, %s::int) g"
    ).format(sql.Identifier(schema, table))
    conn.execute(statement, (f"{schema}.{table}", ids.start, ids.stop - 1))


def topic_of(prefix: str, schema: str, table: str) -> str:
    # Debezium's topic naming replaces what a topic name cannot hold (a space) by "_".
    return f"{prefix}.{schema}.{table.replace(' ', '_')}"


def captured(
    source_pg: psycopg.Connection[Any], debezium: StartConnector, names: list[tuple[str, str]]
) -> list[str]:
    """A connector capturing ``names``; their topics."""
    prefix = unique("names").replace("_", "-")
    topics = [topic_of(prefix, schema, table) for schema, table in names]
    for topic in topics:
        create_topic(topic, partitions=1)
    debezium(prefix, [f"{schema}.{table}" for schema, table in names])
    return topics


def config_for(targets: StackSinks, topics: list[str], endpoints: Endpoints) -> dict[str, Any]:
    config = stack_config(targets.prefix, topics[0], endpoints, BATCH)
    config["kafka"]["topics"] = topics
    for section in config["sinks"].values():
        section["config_error_exit_s"] = 0.5
    return config


def test_two_tables_the_settings_name_on_one_target_keep_the_worker_from_starting(
    targets: StackSinks, endpoints: Endpoints, tmp_path: Path, workers: list[Any]
) -> None:
    config = config_for(targets, [create_topic(unique("names-start"), partitions=1)], endpoints)
    config["sinks"] = {"postgres": config["sinks"]["postgres"]}
    config["sinks"]["postgres"]["routing"] = {"include": ["public.orders", "archive.orders"]}
    worker = WorkerProcess("postgres", config, tmp_path).start()
    workers.append(worker)
    assert worker.wait(timeout_s=60) == 2, worker.log()[-3000:]
    log = worker.log()
    assert "archive.orders and public.orders both map to target 'orders'" in log, log[-3000:]
    assert "worker started" not in log


def test_two_source_tables_on_one_target_stop_every_sink_naming_both(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    endpoints: Endpoints,
    targets: StackSinks,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    table, archive = unique("orders"), unique("archive")
    names = [("public", table), (archive, table)]
    create_tables(source_pg, names)
    try:
        topics = captured(source_pg, debezium, names)
        fill(source_pg, "public", table, range(1, 21))
        fill(source_pg, archive, table, range(101, 121))
        wait_for(
            lambda: all(len(read_topic(t, timeout_s=5)) >= 20 for t in topics),
            60,
            "both tables' rows",
        )
    finally:
        drop_tables(source_pg, names)

    config = config_for(targets, topics, endpoints)
    running = [WorkerProcess(sink, config, tmp_path).start() for sink in ALL_SINKS]
    workers.extend(running)
    for worker in running:
        assert worker.wait(timeout_s=120) == 2, worker.log()[-3000:]
        log = worker.log()
        assert f"public.{table}" in log and f"{archive}.{table}" in log, log[-3000:]
        assert "routing.allow_merge" in log
    assert all(
        n == 0 for n in end_offsets([f"{targets.prefix}.dlq.{s}" for s in ALL_SINKS]).values()
    )
    made = targets.pg.execute(
        "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s", (targets.prefix, table)
    ).fetchone()
    if made:  # a batch of one table only came first: that table's rows only, never both
        stored = targets.read("postgres", table, ["id", "origin"], ("id",)).values()
        assert len({row["origin"] for row in stored}) <= 1

    # The same stream with the merge configured: one target holds both tables' rows.
    merged = config_for(targets, topics, endpoints)
    merged["kafka"]["group_prefix"] = targets.prefix + "-merged"
    merged["sinks"] = {"postgres": merged["sinks"]["postgres"]}
    merged["sinks"]["postgres"]["routing"] = {"allow_merge": [table]}
    workers.append(WorkerProcess("postgres", merged, tmp_path).start())
    wait_caught_up(f"{targets.prefix}-merged-postgres", topics, timeout_s=120)
    rows = targets.read("postgres", table, ["id", "origin"], ("id",))
    assert sorted(rows) == [(i,) for i in [*range(1, 21), *range(101, 121)]]

    # Or kept apart by schema: ClickHouse targets "public.<t>" and "<archive>.<t>", each one
    # table with a dot in its name, every statement quoting it the same way.
    apart = config_for(targets, topics, endpoints)
    apart["kafka"]["group_prefix"] = targets.prefix + "-apart"
    apart["sinks"] = {"clickhouse": apart["sinks"]["clickhouse"]}
    apart["sinks"]["clickhouse"]["routing"] = {"target_format": "{schema}.{table}"}
    workers.append(WorkerProcess("clickhouse", apart, tmp_path).start())
    wait_caught_up(f"{targets.prefix}-apart-clickhouse", topics, timeout_s=120)
    for schema, ids in (("public", range(1, 21)), (archive, range(101, 121))):
        stored = targets.read("clickhouse", f"{schema}.{table}", ["id", "origin"], ("id",))
        assert stored == {(i,): {"id": i, "origin": f"{schema}.{table}"} for i in ids}


def test_a_table_name_elasticsearch_refuses_derives_a_valid_index_with_every_row(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    endpoints: Endpoints,
    targets: StackSinks,
    clickhouse: ClickHouseClient,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    table = f"Order Items {uuid.uuid4().hex[:8]}"
    names = [("public", table)]
    create_tables(source_pg, names)
    try:
        topics = captured(source_pg, debezium, names)
        fill(source_pg, "public", table, range(1, 31))
        wait_for(lambda: len(read_topic(topics[0], timeout_s=5)) >= 30, 60, "the rows")
    finally:
        drop_tables(source_pg, names)

    config = config_for(targets, topics, endpoints)
    for sink in ALL_SINKS:
        workers.append(WorkerProcess(sink, config, tmp_path).start())
    for sink in ALL_SINKS:
        wait_caught_up(f"{targets.prefix}-{sink}", topics, timeout_s=120)
    assert all(
        n == 0 for n in end_offsets([f"{targets.prefix}.dlq.{s}" for s in ALL_SINKS]).values()
    )

    expected = {(i,): {"id": i, "origin": f"public.{table}"} for i in range(1, 31)}
    assert targets.read("postgres", table, ["id", "origin"], ("id",)) == expected
    assert targets.read("clickhouse", table, ["id", "origin"], ("id",)) == expected
    derived = table.lower().replace(" ", "_")  # the documented rule
    assert targets.read("elasticsearch", derived, ["id", "origin"], ("id",)) == expected
    aliases = f"{endpoints.es_hosts[0]}/_alias/{targets.prefix}-{derived}"
    with urllib.request.urlopen(aliases, timeout=30) as answer:
        assert list(json.loads(answer.read())) == [f"{targets.prefix}-{derived}.fanout"]


def test_two_tables_deriving_one_index_name_stop_the_elasticsearch_sink(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    endpoints: Endpoints,
    targets: StackSinks,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    suffix = uuid.uuid4().hex[:8]
    names = [("public", f"Orders {suffix}"), ("public", f"orders_{suffix}")]
    create_tables(source_pg, names)
    try:
        topics = captured(source_pg, debezium, names)
        for (schema, table), ids in zip(names, (range(1, 6), range(11, 16)), strict=True):
            fill(source_pg, schema, table, ids)
        wait_for(lambda: all(len(read_topic(t, timeout_s=5)) >= 5 for t in topics), 60, "the rows")
    finally:
        drop_tables(source_pg, names)

    config = config_for(targets, topics, endpoints)
    worker = WorkerProcess("elasticsearch", config, tmp_path).start()
    workers.append(worker)
    assert worker.wait(timeout_s=120) == 2, worker.log()[-3000:]
    log = worker.log()
    assert f"public.Orders {suffix}" in log and f"public.orders_{suffix}" in log, log[-3000:]
    assert f"'orders_{suffix}'" in log
