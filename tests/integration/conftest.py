"""Session fixtures for the real local services started by `scripts/devstack up`.

Connection settings come from the same FANOUT_* variables the runtime reads
(`scripts/devstack env` prints them), defaulting to the devstack's addresses. A service that
does not answer FAILS the test that needs it, with the command to start it: nothing is
skipped silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import clickhouse_connect
import psycopg
import pytest
from clickhouse_connect.driver.client import Client as ClickHouseClient
from confluent_kafka.admin import AdminClient
from elasticsearch import Elasticsearch

# Fixtures for the real Debezium source (tests/integration/debezium_fixtures.py).
from tests.integration.debezium_fixtures import (  # noqa: F401
    connect_client,
    debezium,
    source_db,
    source_pg,
)
from tests.integration.runtime_support import Pipeline, new_pipeline
from tests.support.pipeline import create_topic
from tests.support.tcp_proxy import TcpProxy

START_HINT = "start the local stack with `scripts/devstack up` (see docs/DEVSTACK.md)"


def _env(key: str, default: str) -> str:
    return os.environ.get(f"FANOUT_{key}", default)


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    es_hosts: list[str]
    pg: dict[str, Any]
    ch_host: str
    ch_port: int


def _unreachable(service: str, where: str, exc: BaseException) -> NoReturn:
    pytest.fail(
        f"{service} at {where} is not answering ({type(exc).__name__}: {exc}); {START_HINT}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def endpoints() -> Endpoints:
    return Endpoints(
        kafka_bootstrap=_env("KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        es_hosts=json.loads(_env("SINKS__ELASTICSEARCH__HOSTS", '["http://127.0.0.1:9200"]')),
        pg={
            "host": _env("SINKS__POSTGRES__HOST", "127.0.0.1"),
            "port": int(_env("SINKS__POSTGRES__PORT", "5432")),
            "user": _env("SINKS__POSTGRES__USER", "fanout"),
            "password": _env("SINKS__POSTGRES__PASSWORD", "fanout"),
            "dbname": _env("SINKS__POSTGRES__DBNAME", "fanout"),
        },
        ch_host=_env("SINKS__CLICKHOUSE__HOST", "127.0.0.1"),
        ch_port=int(_env("SINKS__CLICKHOUSE__PORT", "8123")),
    )


@pytest.fixture(scope="session")
def kafka_admin(endpoints: Endpoints) -> AdminClient:
    admin = AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap})
    try:
        metadata = admin.list_topics(timeout=10)
    except Exception as exc:
        _unreachable("Kafka", endpoints.kafka_bootstrap, exc)
    if not metadata.brokers:
        _unreachable("Kafka", endpoints.kafka_bootstrap, RuntimeError("no broker in metadata"))
    return admin


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_admin: AdminClient, endpoints: Endpoints) -> str:
    return endpoints.kafka_bootstrap


@pytest.fixture(scope="session")
def es(endpoints: Endpoints) -> Iterator[Elasticsearch]:
    client = Elasticsearch(endpoints.es_hosts, request_timeout=30)
    try:
        # cluster.health, not ping()/info(): the integ-test distribution has no `GET /`.
        client.cluster.health(wait_for_status="yellow", timeout="10s")
    except Exception as exc:
        _unreachable("Elasticsearch", str(endpoints.es_hosts), exc)
    yield client
    client.close()


@pytest.fixture(scope="session")
def pg_conninfo(endpoints: Endpoints) -> dict[str, Any]:
    try:
        with psycopg.connect(**endpoints.pg, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        _unreachable("PostgreSQL", f"{endpoints.pg['host']}:{endpoints.pg['port']}", exc)
    return endpoints.pg


@pytest.fixture
def pg(pg_conninfo: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection per test."""
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def clickhouse(endpoints: Endpoints) -> Iterator[ClickHouseClient]:
    where = f"{endpoints.ch_host}:{endpoints.ch_port}"
    try:
        client = clickhouse_connect.get_client(
            host=endpoints.ch_host, port=endpoints.ch_port, username="default", password=""
        )
        client.query("SELECT 1")
    except Exception as exc:
        _unreachable("ClickHouse (chDB endpoint)", where, exc)
    yield client
    client.close()


@pytest.fixture
def workers() -> Iterator[list[Any]]:
    """Worker processes a test starts; stopped (SIGTERM, then SIGKILL) when it ends."""
    started: list[Any] = []
    yield started
    for worker in started:
        worker.stop()


@pytest.fixture
def pipeline(pg_conninfo: dict[str, Any], kafka_bootstrap: str, tmp_path: Path) -> Pipeline:
    """A private topic (6 partitions), group prefix and PostgreSQL schema for one test."""
    line = new_pipeline(pg_conninfo, tmp_path)
    create_topic(line.topic, partitions=6)
    return line


@pytest.fixture
def proxy(endpoints: Endpoints) -> Iterator[TcpProxy]:
    """A TCP proxy in front of Elasticsearch: cut or mute it to take the store away."""
    url = urlsplit(endpoints.es_hosts[0])
    proxy = TcpProxy((url.hostname or "127.0.0.1", url.port or 9200))
    proxy.up()
    yield proxy
    proxy.down()
