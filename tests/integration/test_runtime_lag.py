"""The lag gauge while a store is down: real Kafka, a `fanout run --sink postgres` process, and
PostgreSQL taken away behind a TCP proxy. The worker is paused then, fetching nothing, and an
operator still has to see the backlog grow (and fall once the store is back)."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.integration.runtime_support import Pipeline, all_tables_state, diff, oracle, stream
from tests.integration.test_runtime_error_classes import free_port, get
from tests.support.debezium import produce_stream
from tests.support.pipeline import WorkerProcess, wait_caught_up, wait_for
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
def pg_proxy(pg_conninfo: dict[str, Any]) -> Iterator[TcpProxy]:
    proxy = TcpProxy((pg_conninfo["host"], pg_conninfo["port"]))
    proxy.up()
    yield proxy
    proxy.down()


def lag(port: int, topic: str) -> int | None:
    """The sum of ``fanout_consumer_lag`` over ``topic``'s partitions; None before any is set."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = rf'^fanout_consumer_lag\{{[^}}]*topic="{re.escape(topic)}"[^}}]*\}} (\S+)$'
    values = [float(value) for value in re.findall(pattern, text, flags=re.MULTILINE)]
    return int(sum(values)) if values else None


def test_the_lag_gauge_keeps_growing_while_postgres_is_down_and_falls_after(
    pipeline: Pipeline, pg: psycopg.Connection[Any], pg_proxy: TcpProxy, workers: list[Any]
) -> None:
    messages = stream(2500, seed=41)
    port = free_port()
    config = pipeline.config(max_events=200)
    config["metrics"] = {"port": port}
    config["sinks"]["postgres"].update(port=pg_proxy.port, connect_timeout_s=3)
    produce_stream(pipeline.topic, messages[:1000])
    worker = WorkerProcess("postgres", config, pipeline.workdir).start()
    workers.append(worker)
    wait_caught_up(pipeline.group, [pipeline.topic])
    wait_for(lambda: lag(port, pipeline.topic) == 0, 60, "lag 0 once caught up")

    pg_proxy.down()
    produce_stream(pipeline.topic, messages[1000:1300])  # a batch that cannot be written
    wait_for(lambda: _down(get(port, "/readyz")), 60, "/readyz 503: sink down")
    produce_stream(pipeline.topic, messages[1300:])  # produced while the worker is paused
    backlog = len(messages) - 1300
    wait_for(lambda: (lag(port, pipeline.topic) or 0) >= backlog, 60, f"lag >= {backlog}")
    assert worker.alive

    pg_proxy.up()
    wait_caught_up(pipeline.group, [pipeline.topic], timeout_s=120)
    wait_for(lambda: lag(port, pipeline.topic) == 0, 60, "lag back to 0")
    actual, expected = all_tables_state(pg, pipeline.schema), oracle(messages)
    assert actual == expected, diff(actual, expected)


def _down(answer: tuple[int, dict[str, Any]]) -> bool:
    status, body = answer
    return status == 503 and not body["sinks"]["postgres"]["sink_up"]
