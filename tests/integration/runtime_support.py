"""Shared pieces of the runtime's end-to-end tests: a worker config, a table reader, the oracle."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.support.debezium import (
    DEFAULT_TABLES,
    Message,
    TableSpec,
    expected_state,
    generate_stream,
    produce_stream,
)
from tests.support.pipeline import WorkerProcess, unique, wait_caught_up


@dataclass
class Pipeline:
    """One test's private topic, consumer-group prefix, DLQ prefix and PostgreSQL schema."""

    topic: str
    prefix: str
    schema: str
    pg: Mapping[str, Any]
    workdir: Path

    @property
    def group(self) -> str:
        return f"{self.prefix}-postgres"

    @property
    def dlq_topic(self) -> str:
        return f"{self.prefix}.dlq.postgres"

    def config(self, **batch: int) -> dict[str, Any]:
        return {
            "kafka": {
                "topics": [self.topic],
                "group_prefix": self.prefix,
                "dlq_prefix": f"{self.prefix}.dlq",
                "session_timeout_ms": 6000,
            },
            "metrics": {"port": 0},
            "sinks": {
                "postgres": {
                    "enabled": True,
                    "schema": self.schema,
                    **{k: v for k, v in self.pg.items() if k != "dbname"},
                    "dbname": self.pg["dbname"],
                    "batch": {"max_events": 500, "max_wait_ms": 100, **batch},
                    "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 1000},
                }
            },
        }

    def worker(self, **batch: int) -> WorkerProcess:
        return WorkerProcess("postgres", self.config(**batch), self.workdir).start()

    def drain(self, messages: list[Message], workers: list[Any]) -> WorkerProcess:
        """Produce ``messages``, start a worker (tracked in ``workers``), wait until caught up."""
        produce_stream(self.topic, messages)
        worker = self.worker()
        workers.append(worker)
        wait_caught_up(self.group, [self.topic])
        return worker


def new_pipeline(pg: Mapping[str, Any], workdir: Path) -> Pipeline:
    prefix = unique("rt")
    return Pipeline(
        topic=f"{prefix}.cdc",
        prefix=prefix,
        schema=f"rt_{uuid.uuid4().hex[:8]}",
        pg=pg,
        workdir=workdir,
    )


def table_state(
    conn: psycopg.Connection[Any], schema: str, spec: TableSpec
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The live rows of ``spec``'s target table, bookkeeping columns left out."""
    exists = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        (schema, spec.table),
    ).fetchone()
    if not exists:
        return {}
    names = [column.name for column in spec.columns]
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, names)), sql.Identifier(schema, spec.table)
    )
    state = {}
    for values in conn.execute(query):
        row = {name: _plain(value) for name, value in zip(names, values, strict=True)}
        state[tuple(row[k] for k in spec.primary_key)] = row
    return state


def all_tables_state(
    conn: psycopg.Connection[Any], schema: str, tables: Iterable[TableSpec] = DEFAULT_TABLES
) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    return {spec.name: table_state(conn, schema, spec) for spec in tables}


def oracle(
    messages: Iterable[Message], tables: Iterable[TableSpec] = DEFAULT_TABLES
) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    expected = expected_state(messages)
    return {
        spec.name: {
            key: {name: _plain(value) for name, value in row.items()}
            for key, row in expected.get(spec.name, {}).items()
        }
        for spec in tables
    }


def _plain(value: Any) -> Any:
    """One spelling per value on both sides: PostgreSQL gives uuid.UUID where the decoder gives
    the canonical string."""
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def diff(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    """A short, readable difference for assertion messages."""
    lines = []
    for table in sorted(set(actual) | set(expected)):
        got, want = actual.get(table, {}), expected.get(table, {})
        missing = [k for k in want if k not in got][:3]
        extra = [k for k in got if k not in want][:3]
        wrong = [k for k in want if k in got and got[k] != want[k]][:2]
        if missing or extra or wrong:
            lines.append(
                f"{table}: {len(got)} rows vs {len(want)} expected; missing {missing}, "
                f"extra {extra}, wrong {[(k, got[k], want[k]) for k in wrong]}"
            )
    return "\n".join(lines) or "no difference"


def stream(n_events: int, n_keys: int = 200, seed: int = 1) -> list[Message]:
    return list(generate_stream(n_events, n_keys=n_keys, seed=seed))
