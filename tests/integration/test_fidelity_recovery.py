"""Recovery with the real Debezium connector: a SIGKILLed worker restarted, and a backfill.

The source table takes a seeded churn of inserts, updates and deletes, some rows with a
TOASTed ``body`` (so updates carry Debezium's placeholder and the sinks must keep the stored
value across the kill and in the backfill). Every sink is compared with the source, column by
column, at the end.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.integration.fidelity_support import (
    ALL_SINKS,
    CHURN_COLUMNS,
    SourceTable,
    StackSinks,
    capture,
    churn,
    converge,
    dead_letters,
    deliver,
    differences,
    sinks_fixture,
    source_table,
    stack_config,
    start_workers,
)
from tests.integration.ops_support import fanout, write_config
from tests.support.debezium_connector import read_topic
from tests.support.pipeline import wait_for

KEYS = 40


@pytest.fixture
def table(source_pg: psycopg.Connection[Any]) -> Iterator[SourceTable]:
    with source_table(source_pg, "fid_recover", CHURN_COLUMNS) as created:
        yield created


targets = sinks_fixture("fidrec")


backfilled = sinks_fixture("fidbf", "backfilled")


def test_workers_killed_mid_stream_converge_after_a_restart(
    debezium: StartConnector,
    table: SourceTable,
    targets: StackSinks,
    endpoints: Endpoints,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    rng = random.Random(13)
    capture(table, debezium)
    config = stack_config(
        targets.prefix, table.topic, endpoints, {"max_events": 20, "max_wait_ms": 50}
    )
    running = start_workers(config, tmp_path, workers)
    records = churn(table, 200, KEYS, rng)

    def started_writing(sink: str) -> bool:
        return not running[sink].alive or targets.holds_rows(sink, table.name)

    for sink in ALL_SINKS:  # each has written part of the stream
        wait_for(partial(started_writing, sink), 60, f"the {sink} worker's first rows")
    for worker in running.values():
        worker.signal(signal.SIGKILL)
    assert all(worker.wait() == -signal.SIGKILL for worker in running.values())

    records += churn(table, 100, KEYS, rng)  # while no worker runs
    restarted = start_workers(config, tmp_path, workers)
    records += churn(table, 60, KEYS, rng)
    converge(targets, table, restarted, what="every sink after the restart")

    read_topic(endpoints.kafka_bootstrap, table.topic, expect=records, timeout_s=30)
    assert {sink: dead_letters(targets.prefix, sink) for sink in ALL_SINKS} == dict.fromkeys(
        ALL_SINKS, 0
    )


def test_a_backfill_from_the_earliest_offset_equals_the_source(
    debezium: StartConnector,
    table: SourceTable,
    targets: StackSinks,
    backfilled: StackSinks,
    endpoints: Endpoints,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    capture(table, debezium)
    running = deliver(targets, table, tmp_path, workers, {"max_events": 50, "max_wait_ms": 100})
    records = churn(table, 250, KEYS, random.Random(7))
    converge(targets, table, running, what="the live sinks")
    read_topic(endpoints.kafka_bootstrap, table.topic, expect=records, timeout_s=30)

    # Into empty targets: the whole topic again, from its first record to today's end.
    config = write_config(
        tmp_path,
        stack_config(
            backfilled.prefix, table.topic, endpoints, {"max_events": 30, "max_wait_ms": 100}
        ),
    )
    for sink in ALL_SINKS:
        result = fanout(config, "backfill", "--sink", sink, "--json")
        assert result.code == 0, result
        summary = result.json()
        assert summary["status"] == "complete" and summary["done"] == summary["total"] == records
    assert differences(backfilled, table) == {}
    assert differences(targets, table) == {}
    assert {sink: dead_letters(backfilled.prefix, sink) for sink in ALL_SINKS} == dict.fromkeys(
        ALL_SINKS, 0
    )
