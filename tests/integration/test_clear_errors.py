"""What an operator reads when a store is not there at start-up: one line per store saying what,
where (and the setting), why and how to check, not a driver's traceback per retry; and the
worker comes in by itself once the store is back. Each store sits behind a TCP proxy the test
takes away (the shared services themselves are never stopped)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from elasticsearch import Elasticsearch

from tests.integration.conftest import Endpoints
from tests.support.debezium import generate_stream, produce_stream
from tests.support.pipeline import (
    WorkerProcess,
    create_topic,
    unique,
    wait_caught_up,
    wait_for,
)
from tests.support.tcp_proxy import TcpProxy

SINKS = ("postgres", "elasticsearch", "clickhouse")


@pytest.fixture
def prefix(es: Elasticsearch) -> Iterator[str]:
    name = unique("away")
    yield name
    es.options(ignore_status=404).indices.delete(index=f"{name}-*", expand_wildcards="all")


@pytest.fixture
def proxies(endpoints: Endpoints) -> Iterator[dict[str, TcpProxy]]:
    es_url = urlsplit(endpoints.es_hosts[0])
    made = {
        "postgres": TcpProxy((endpoints.pg["host"], endpoints.pg["port"])),
        "elasticsearch": TcpProxy((es_url.hostname or "127.0.0.1", es_url.port or 9200)),
        "clickhouse": TcpProxy((endpoints.ch_host, endpoints.ch_port)),
    }
    yield made
    for proxy in made.values():
        proxy.down()


def test_stores_away_at_start_are_one_clear_line_each_and_come_in_when_back(
    endpoints: Endpoints,
    proxies: dict[str, TcpProxy],
    workers: list[Any],
    tmp_path: Path,
    prefix: str,
) -> None:
    topic = create_topic(f"{prefix}.cdc", partitions=3)
    pg = {k: v for k, v in endpoints.pg.items() if k not in ("host", "port")}
    retry = {"initial_backoff_ms": 100, "max_backoff_ms": 500}
    config = {
        "kafka": {"topics": [topic], "group_prefix": prefix, "dlq_prefix": f"{prefix}.dlq"},
        "metrics": {"port": 0},
        "logging": {"format": "text"},
        "sinks": {
            "postgres": {
                "enabled": True,
                **pg,
                "host": "127.0.0.1",
                "port": proxies["postgres"].port,
                "schema": prefix,
                "retry": retry,
            },
            "elasticsearch": {
                "enabled": True,
                "hosts": [proxies["elasticsearch"].url],
                "index_prefix": f"{prefix}-",
                "retry": retry,
            },
            "clickhouse": {
                "enabled": True,
                "mode": "server",
                "host": "127.0.0.1",
                "port": proxies["clickhouse"].port,
                "routing": {"target_format": f"{prefix}_{{table}}"},
                "retry": retry,
            },
        },
    }
    worker = WorkerProcess(None, config, tmp_path).start()
    workers.append(worker)
    expected = {
        "postgres": f"cannot reach PostgreSQL at 127.0.0.1:{proxies['postgres'].port}/"
        f"{pg['dbname']} (sinks.postgres.host, .port, .dbname): connection refused — is it "
        f"running and listening there? check with: pg_isready -h 127.0.0.1 -p "
        f"{proxies['postgres'].port} -d {pg['dbname']}",
        "elasticsearch": f"cannot reach Elasticsearch at {proxies['elasticsearch'].url} "
        "(sinks.elasticsearch.hosts): connection refused — is it running and listening there? "
        f"check with: curl -s {proxies['elasticsearch'].url}/_cluster/health",
        "clickhouse": f"cannot reach ClickHouse at http://127.0.0.1:{proxies['clickhouse'].port} "
        "(sinks.clickhouse.host, .port): connection refused — is it running and listening "
        f"there? check with: curl -s http://127.0.0.1:{proxies['clickhouse'].port}/ping",
    }
    for sink, line in expected.items():
        try:
            wait_for(lambda line=line: line in worker.log(), 60, f"the {sink} line")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{worker.log()[-3000:]}") from None
    for proxy in proxies.values():
        proxy.up()
    wait_for(lambda: worker.log().count("sink back up") == 3, 60, "every sink back up")
    produce_stream(topic, list(generate_stream(300, n_keys=50, seed=3)))
    for sink in SINKS:
        wait_caught_up(f"{prefix}-{sink}", [topic], timeout_s=120)
    assert worker.stop() == 0
    log = worker.log()
    down = [line for line in log.splitlines() if "sink down" in line]
    assert len(down) == 3, down  # once per store, however many retries
    assert "Traceback" not in log and "urllib3" not in log and "elastic_transport" not in log
