"""Fixtures for tests driven by a real Debezium connector (imported by conftest.py).

* ``source_db``: where the CDC source cluster is; FAILS the test if it does not answer.
* ``source_pg``: an autocommit psycopg connection to it, per test.
* ``connect_client``: Kafka Connect's REST API; FAILS the test if the worker is not up.
* ``debezium``: starts connectors (``debezium(prefix, ["public.t"])``), each streaming when
  returned; all deleted, with their slots and publications, when the test ends.
  ``schemas=False`` runs the JsonConverter without schemas (``schemas.enable=false`` for key
  and value): messages are bare JSON, no ``schema``/``payload`` envelope.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any, NoReturn

import psycopg
import pytest

from tests.support.debezium_connector import (
    POSTGRES_CONNECTOR,
    ConnectClient,
    DebeziumConnector,
    SourceDb,
    debezium_connector,
)

START_HINT = "start the local stack with `scripts/devstack up` (see docs/DEVSTACK.md)"
StartConnector = Callable[..., DebeziumConnector]
SCHEMALESS = {"key.converter.schemas.enable": "false", "value.converter.schemas.enable": "false"}


def _unreachable(service: str, where: str, exc: BaseException) -> NoReturn:
    pytest.fail(
        f"{service} at {where} is not answering ({type(exc).__name__}: {exc}); {START_HINT}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def source_db() -> SourceDb:
    source = SourceDb.from_env()
    try:
        with source.connect() as conn:
            level = conn.execute("SHOW wal_level").fetchone()
    except Exception as exc:
        _unreachable("The CDC source PostgreSQL", f"{source.host}:{source.port}", exc)
    if not level or level[0] != "logical":
        pytest.fail(f"source PostgreSQL has wal_level={level}, Debezium needs logical")
    return source


@pytest.fixture
def source_pg(source_db: SourceDb) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the source cluster, per test."""
    with source_db.connect() as conn:
        yield conn


@pytest.fixture(scope="session")
def connect_client() -> ConnectClient:
    client = ConnectClient()
    try:
        plugins = client.plugins()
    except Exception as exc:
        _unreachable("Kafka Connect", client.url, exc)
    if not any(p.get("class") == POSTGRES_CONNECTOR for p in plugins):
        pytest.fail(f"Kafka Connect at {client.url} has no {POSTGRES_CONNECTOR}; {START_HINT}")
    return client


@pytest.fixture
def debezium(
    connect_client: ConnectClient, source_db: SourceDb, kafka_bootstrap: str
) -> Iterator[StartConnector]:
    """``debezium(topic_prefix, tables, overrides=None, timeout_s=90, schemas=True)``: a
    streaming connector."""
    with ExitStack() as stack:

        def start(
            topic_prefix: str,
            tables: list[str],
            overrides: dict[str, str] | None = None,
            timeout_s: float = 90.0,
            schemas: bool = True,
        ) -> DebeziumConnector:
            if not schemas:
                overrides = {**SCHEMALESS, **(overrides or {})}
            return stack.enter_context(
                debezium_connector(
                    topic_prefix,
                    tables,
                    client=connect_client,
                    source=source_db,
                    overrides=overrides,
                    timeout_s=timeout_s,
                )
            )

        yield start
