"""`fanout repair` against the real pipeline: rows changed, deleted and added by hand in every
sink are put right — the changed and deleted ones re-emitted by the real Debezium connector
(an incremental snapshot of exactly those keys, asked for through its signal table), the added
one deleted in its sink — after which `verify` finds every sink equal to the source again.
`--dry-run` prints the signal and the delete and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from clickhouse_connect.driver.client import Client as ClickHouseClient
from psycopg import sql

from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.integration.fidelity_support import sinks_fixture
from tests.integration.ops_support import fanout, write_config
from tests.integration.ops_verify_support import (
    DAMAGE,
    damage_clickhouse,
    damage_elasticsearch,
    damage_postgres,
    found,
    many_types_table,
    pipeline_config,
    start_workers,
    verify,
)
from tests.support.debezium_connector import SourceDb, signal_table
from tests.support.pipeline import unique

SINKS = ("postgres", "clickhouse", "elasticsearch")


prefix = sinks_fixture("repair", "prefix", prefix_only=True)


@pytest.fixture
def tables(source_pg: psycopg.Connection[Any]) -> Iterator[tuple[str, str]]:
    """The captured table (40 rows) and the connector's signal table."""
    signals = unique("repair_signal")
    with many_types_table(source_pg, "repair_t", 40) as table:
        yield table, signals
    source_pg.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(signals)))


def test_repair_puts_every_sink_right_through_the_connector(
    debezium: StartConnector,
    tables: tuple[str, str],
    prefix: str,
    endpoints: Endpoints,
    pg: psycopg.Connection[Any],
    clickhouse: ClickHouseClient,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    table, signals = tables
    signalling = signal_table(SourceDb.from_env(), f"public.{signals}")
    connector = debezium(
        table.replace("_", "-"), [f"public.{table}", f"public.{signals}"], signalling
    )
    config = pipeline_config(prefix, connector.topic(table), table, endpoints)
    config["source"]["signal_table"] = f"public.{signals}"
    path = write_config(tmp_path, config)
    start_workers(config, tmp_path, workers, records=40)
    damage_postgres(pg, prefix, table)
    damage_clickhouse(clickhouse, prefix, table)
    damage_elasticsearch(endpoints.es_hosts[0], f"{prefix}-{table}")

    dry = fanout(path, "repair", "--sink", "postgres", "--dry-run", "--json")
    assert dry.code == 0, str(dry)
    plan = dry.json()["plan"]
    (signal,) = plan["signals"]
    assert signal["data"]["additional-conditions"] == [
        {"data-collection": f"public.{table}", "filter": '("id") IN ((3), (4))'}
    ]
    assert signal["data"]["type"] == "incremental"
    assert plan["deletes"] == [
        {"table": f"public.{table}", "target": table, "keys": [{"id": 1000}]}
    ]
    code, report = verify(path, "postgres")
    assert (code, found(report)) == (1, DAMAGE)  # the dry run changed nothing

    for sink in SINKS:
        repaired = fanout(path, "repair", "--sink", sink, "--json", "--timeout", "120")
        assert repaired.code == 0, str(repaired)
        assert repaired.json()["after"] in (None, {**repaired.json()["after"], "equal": True})

    for sink in SINKS:
        code, report = verify(path, sink)
        assert (code, found(report)) == (0, found_nothing()), (sink, report)


def found_nothing() -> dict[str, Any]:
    return {"missing": [], "extra": [], "different": [], "columns": {}}
