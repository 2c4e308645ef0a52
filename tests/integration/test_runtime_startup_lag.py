"""The lag gauge while a store is away at start-up: real Kafka, ``fanout run --sink postgres``
processes, PostgreSQL behind a TCP proxy that is down when the worker starts. The worker has no
consumer yet (it joins its group once the sink opens), and an operator still has to see the
backlog: a first start (the group never committed) and a restart (it did)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.integration.runtime_support import Pipeline, all_tables_state, diff, oracle, stream
from tests.integration.test_runtime_error_classes import free_port, get
from tests.integration.test_runtime_lag import lag
from tests.support.debezium import produce_stream
from tests.support.pipeline import WorkerProcess, end_offsets, wait_caught_up, wait_for
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
def pg_away(pg_conninfo: dict[str, Any]) -> Iterator[TcpProxy]:
    """A proxy in front of PostgreSQL, down until the test brings it up."""
    proxy = TcpProxy((pg_conninfo["host"], pg_conninfo["port"]))
    yield proxy
    proxy.down()


def test_the_lag_gauge_shows_the_backlog_while_postgres_is_away_at_start(
    pipeline: Pipeline, pg: psycopg.Connection[Any], pg_away: TcpProxy, workers: list[Any]
) -> None:
    messages = stream(700, seed=43)
    config = pipeline.config(max_events=200)
    config["sinks"]["postgres"].update(port=pg_away.port, connect_timeout_s=2)

    def start_while_away() -> tuple[WorkerProcess, int]:
        port = config["metrics"]["port"] = free_port()
        worker = WorkerProcess("postgres", config, pipeline.workdir).start()
        workers.append(worker)
        wait_for(lambda: _opening(get(port, "/readyz")), 60, "/readyz 503: sink not open")
        return worker, port

    produce_stream(pipeline.topic, messages[:400])
    first = records(pipeline.topic)
    worker, port = start_while_away()  # the group has never committed: all are behind
    wait_for(lambda: lag(port, pipeline.topic) == first, 60, f"lag {first} while PG is away")
    pg_away.up()
    wait_caught_up(pipeline.group, [pipeline.topic], timeout_s=120)
    wait_for(lambda: lag(port, pipeline.topic) == 0, 60, "lag 0 once caught up")
    assert worker.stop() == 0, worker.log()[-3000:]

    pg_away.down()
    produce_stream(pipeline.topic, messages[400:])
    new = records(pipeline.topic) - first
    worker, port = start_while_away()  # a restart: behind its commits by the new records
    wait_for(lambda: lag(port, pipeline.topic) == new, 60, f"lag {new} while PG is away")
    assert worker.alive
    pg_away.up()
    wait_caught_up(pipeline.group, [pipeline.topic], timeout_s=120)
    actual, expected = all_tables_state(pg, pipeline.schema), oracle(messages)
    assert actual == expected, diff(actual, expected)


def records(topic: str) -> int:
    """Records in ``topic`` (a deleted row is two: the delete and its tombstone)."""
    return sum(end_offsets([topic]).values())


def _opening(answer: tuple[int, dict[str, Any]]) -> bool:
    status, body = answer
    sink = body.get("sinks", {}).get("postgres", {})
    return status == 503 and not sink.get("opened", True)
