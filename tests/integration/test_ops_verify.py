"""`fanout verify` against the real pipeline: a table of many column types captured by the real
Debezium connector, delivered to every sink (one column renamed, one dropped by routing), verifies
equal in each; rows changed, deleted and added by hand in a sink are reported exactly, with the
column that differs; `--across` compares the sinks with each other and finds the one that
was damaged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from clickhouse_connect.driver.client import Client as ClickHouseClient
from elasticsearch import Elasticsearch
from psycopg import sql

from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.integration.fidelity_support import sinks_fixture
from tests.integration.ops_support import write_config
from tests.integration.ops_verify_support import (
    DAMAGE,
    damage_clickhouse,
    damage_elasticsearch,
    damage_postgres,
    found,
    insert,
    many_types_table,
    pipeline_config,
    start_workers,
    verify,
    verify_across,
)

SINKS = ("postgres", "clickhouse", "elasticsearch")


prefix = sinks_fixture("verify", "prefix", prefix_only=True)


@pytest.fixture
def table(source_pg: psycopg.Connection[Any]) -> Iterator[str]:
    with many_types_table(source_pg, "verify_t", 40) as name:
        yield name


def test_a_clean_pipeline_verifies_equal_and_damage_by_hand_is_reported_exactly(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    table: str,
    prefix: str,
    endpoints: Endpoints,
    pg: psycopg.Connection[Any],
    clickhouse: ClickHouseClient,
    es: Elasticsearch,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    connector = debezium(table.replace("_", "-"), [f"public.{table}"])
    insert(source_pg, table, range(41, 61))
    ident = sql.Identifier(table)
    source_pg.execute(
        sql.SQL("UPDATE {} SET name = 'renamed', doc = '[1.0e-30]' WHERE id = 7").format(ident)
    )
    source_pg.execute(sql.SQL("DELETE FROM {} WHERE id IN (8, 45)").format(ident))
    config = pipeline_config(prefix, connector.topic(table), table, endpoints)
    path = write_config(tmp_path, config)
    start_workers(config, tmp_path, workers, records=40 + 20 + 1 + 2 * 2)

    for sink in SINKS:
        code, report = verify(path, sink)
        assert (code, found(report)) == (0, found_nothing()), report
        assert report["tables"][0]["source_rows"] == report["tables"][0]["target_rows"] == 58

    code, across = verify_across(path)
    assert code == 0 and [pair["sink"] for pair in across["pairs"]] == [
        "postgres~elasticsearch",
        "postgres~clickhouse",
    ], across

    # damage in ClickHouse alone: --across finds it between postgres and clickhouse only (the
    # columns named as the reference, postgres, names them: routing renamed name to label)
    damage_clickhouse(clickhouse, prefix, table)
    code, across = verify_across(path)
    assert code == 1
    assert [found(pair) for pair in across["pairs"]] == [
        found_nothing(),
        {**DAMAGE, "columns": {3: ["label"]}},
    ], across

    damage_postgres(pg, prefix, table)
    damage_elasticsearch(endpoints.es_hosts[0], f"{prefix}-{table}")
    for sink in SINKS:
        code, report = verify(path, sink)
        assert (code, found(report)) == (1, DAMAGE), (sink, report)


def found_nothing() -> dict[str, Any]:
    return {"missing": [], "extra": [], "different": [], "columns": {}}
