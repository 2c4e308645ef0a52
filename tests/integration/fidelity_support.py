"""The fidelity tests' shared parts: worker settings (one private prefix per test, all sinks on
the stack) and the fixture that makes and drops it, a captured source table, a worker per sink
started and waited on, a topic's records as a worker gets them, the sinks' rows read back and
compared with the source."""

from __future__ import annotations

import contextlib
import json
import random
import string
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from clickhouse_connect.driver.client import Client as ClickHouseClient
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from psycopg import sql

from fanout.events import Origin
from sinks.clickhouse.types import quote_identifier
from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.support.debezium_connector import DebeziumConnector, read_topic
from tests.support.pipeline import (
    WorkerProcess,
    bootstrap,
    create_topic,
    end_offsets,
    unique,
    wait_caught_up,
    wait_for,
)

ALL_SINKS = ("postgres", "clickhouse", "elasticsearch")


def stack_config(
    prefix: str,
    topic: str,
    endpoints: Endpoints,
    batch: dict[str, int],
    sinks: Iterable[str] = ALL_SINKS,
    **es: Any,
) -> dict[str, Any]:
    """``fanout`` settings reading ``topic`` into ``sinks`` of the local stack, every name
    (group, DLQ, schema, database, index prefix) made from ``prefix``; ``es`` goes to the
    Elasticsearch section."""
    sections: dict[str, dict[str, Any]] = {
        "postgres": {"schema": prefix, **endpoints.pg},
        "clickhouse": {
            "mode": "server",
            "host": endpoints.ch_host,
            "port": endpoints.ch_port,
            "database": prefix,
        },
        "elasticsearch": {"hosts": endpoints.es_hosts, "index_prefix": f"{prefix}-", **es},
    }
    return {
        "kafka": {
            "topics": [topic],
            "group_prefix": prefix,
            "dlq_prefix": f"{prefix}.dlq",
            "session_timeout_ms": 6000,
        },
        "metrics": {"port": 0},
        "sinks": {name: {"enabled": True, **sections[name], "batch": batch} for name in sinks},
    }


# ---- a captured source table ----------------------------------------------------------------

Key = tuple[Any, ...]
Rows = dict[Key, dict[str, Any]]


@dataclass
class SourceTable:
    """A table of the CDC source; statements name it ``{t}``."""

    conn: psycopg.Connection[Any]
    name: str
    key: tuple[str, ...] = ("id",)
    connector: DebeziumConnector | None = None

    @property
    def topic(self) -> str:
        assert self.connector is not None, "capture() the table first"
        return self.connector.topic(self.name)

    def run(self, statement: str, *params: Any) -> None:
        self.conn.execute(sql.SQL(statement).format(t=sql.Identifier(self.name)), params)

    def columns(self) -> list[str]:
        found = self.conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (self.name,),
        ).fetchall()
        return [name for (name,) in found]

    def rows(self) -> Rows:
        """Every row, by key, with every column as psycopg reads it."""
        columns = self.columns()
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(self.name)
        )
        return _by_key(
            self.key, (dict(zip(columns, r, strict=True)) for r in self.conn.execute(query))
        )


@contextmanager
def source_table(
    conn: psycopg.Connection[Any], prefix: str, columns: str, key: tuple[str, ...] = ("id",)
) -> Iterator[SourceTable]:
    """A new source table ``CREATE TABLE <unique name> (<columns>)``, dropped afterwards."""
    table = SourceTable(conn, unique(prefix), key)
    table.run(f"CREATE TABLE {{t}} ({columns})")
    try:
        yield table
    finally:
        table.run("DROP TABLE IF EXISTS {t}")


def capture(
    table: SourceTable, debezium: StartConnector, overrides: dict[str, str] | None = None
) -> DebeziumConnector:
    """A connector streaming ``table``; its topic is made first (one partition, as Connect
    makes it) so workers can subscribe before the first change."""
    prefix = table.name.replace("_", "-")
    create_topic(f"{prefix}.public.{table.name}", partitions=1)
    table.connector = debezium(prefix, [f"public.{table.name}"], overrides=overrides)
    return table.connector


def _by_key(key: tuple[str, ...], rows: Iterable[dict[str, Any]]) -> Rows:
    return {tuple(row[name] for name in key): row for row in rows}


# ---- what the sinks hold --------------------------------------------------------------------


@dataclass
class StackSinks:
    """The targets of one ``stack_config(prefix, …)``: read back, compared, dropped."""

    prefix: str
    endpoints: Endpoints
    pg: psycopg.Connection[Any]
    clickhouse: ClickHouseClient

    def read(self, sink: str, table: str, columns: list[str], key: tuple[str, ...]) -> Rows:
        """The live rows of ``table`` in ``sink``, ``columns`` of each (NULL and a field an
        Elasticsearch document leaves out both read None)."""
        readers = {
            "postgres": self._postgres,
            "clickhouse": self._clickhouse,
            "elasticsearch": self._elasticsearch,
        }
        return _by_key(key, readers[sink](table, columns))

    def holds_rows(self, sink: str, table: str, key: tuple[str, ...] = ("id",)) -> bool:
        """Whether ``sink`` holds any row of ``table`` yet (not even created: no)."""
        try:
            return bool(self.read(sink, table, list(key), key))
        except Exception:  # the table, view or index is not there yet
            return False

    def _postgres(self, table: str, columns: list[str]) -> list[dict[str, Any]]:
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(self.prefix, table)
        )
        return [dict(zip(columns, row, strict=True)) for row in self.pg.execute(query)]

    def _clickhouse(self, table: str, columns: list[str]) -> list[dict[str, Any]]:
        names = ", ".join(map(quote_identifier, columns))
        view = f"{quote_identifier(self.prefix)}.{quote_identifier(table + '_current')}"
        result = self.clickhouse.query(f"SELECT {names} FROM {view}")
        return [dict(zip(columns, row, strict=True)) for row in result.result_rows]

    def _elasticsearch(self, table: str, columns: list[str]) -> list[dict[str, Any]]:
        host, alias = self.endpoints.es_hosts[0], f"{self.prefix}-{table}"
        refresh = urllib.request.Request(f"{host}/{alias}/_refresh", method="POST")
        urllib.request.urlopen(refresh, timeout=30).close()
        with urllib.request.urlopen(f"{host}/{alias}/_search?size=10000", timeout=30) as answer:
            hits = json.loads(answer.read(), parse_float=Decimal)["hits"]["hits"]
        return [{name: hit["_source"].get(name) for name in columns} for hit in hits]

    def drop(self) -> None:
        es = self.endpoints.es_hosts[0]
        drop = urllib.request.Request(
            f"{es}/{self.prefix}-*?expand_wildcards=all&ignore_unavailable=true", method="DELETE"
        )
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(drop, timeout=30).close()
        self.pg.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.prefix))
        )
        self.clickhouse.command(f"DROP DATABASE IF EXISTS {quote_identifier(self.prefix)}")


def start_workers(
    config: dict[str, Any], workdir: Path, workers: list[Any], sinks: Iterable[str] = ALL_SINKS
) -> dict[str, WorkerProcess]:
    """``fanout run --sink X`` for each of ``sinks``, one process each (the production layout)."""
    started = {sink: WorkerProcess(sink, config, workdir).start() for sink in sinks}
    workers.extend(started.values())
    return started


@contextmanager
def private_sinks(
    name: str, endpoints: Endpoints, pg: psycopg.Connection[Any], clickhouse: ClickHouseClient
) -> Iterator[StackSinks]:
    """The targets of a new prefix ``unique(name)`` (for ``stack_config``), dropped afterwards."""
    sinks = StackSinks(unique(name), endpoints, pg, clickhouse)
    try:
        yield sinks
    finally:
        sinks.drop()


def sinks_fixture(name: str, fixture: str = "targets", prefix_only: bool = False) -> Any:
    """A fixture for a test module (``targets = sinks_fixture("fidx")``): the ``StackSinks``
    of ``private_sinks(name, …)``, or its prefix alone with ``prefix_only``."""

    @pytest.fixture(name=fixture)
    def made(
        endpoints: Endpoints, pg: psycopg.Connection[Any], clickhouse: ClickHouseClient
    ) -> Iterator[StackSinks | str]:
        with private_sinks(name, endpoints, pg, clickhouse) as sinks:
            yield sinks.prefix if prefix_only else sinks

    return made


def deliver(
    targets: StackSinks,
    table: SourceTable,
    workdir: Path,
    workers: list[Any],
    batch: dict[str, int],
    sinks: Iterable[str] = ALL_SINKS,
) -> dict[str, WorkerProcess]:
    """A worker per sink (``start_workers``) reading the captured ``table`` into ``targets``."""
    config = stack_config(targets.prefix, table.topic, targets.endpoints, batch, sinks)
    return start_workers(config, workdir, workers, sinks)


def dead_letters(prefix: str, sink: str) -> int:
    """How many records the sink's DLQ topic holds."""
    return sum(end_offsets([f"{prefix}.dlq.{sink}"]).values())


def converge(
    targets: StackSinks,
    source: SourceTable,
    running: dict[str, WorkerProcess],
    expected: Callable[[str, Rows], Rows] = lambda sink, rows: rows,
    what: str = "every sink to equal the source",
    timeout_s: float = 120,
) -> None:
    """Wait until every sink of ``running`` holds the source's rows, column by column
    (``expected(sink, source rows)`` where a sink is meant to differ); on timeout say which
    sink differs where, with its worker's log."""
    last: dict[str, str] = {}
    sinks = tuple(running)

    def settled() -> bool:
        nonlocal last
        last = {
            sink: f"worker exited:\n{running[sink].log()[-3000:]}"
            for sink in sinks
            if not running[sink].alive
        }
        last = last or differences(targets, source, sinks, expected)
        return not last

    with contextlib.suppress(AssertionError):  # the message below says what differs
        wait_for(settled, timeout_s, what, interval_s=0.5)
    if last:
        report = "\n".join(
            f"--- {sink}: {text}\n{running[sink].log()[-2000:]}" for sink, text in last.items()
        )
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}:\n{report}")


def differences(
    targets: StackSinks,
    source: SourceTable,
    sinks: Iterable[str] = ALL_SINKS,
    expected: Callable[[str, Rows], Rows] = lambda sink, rows: rows,
) -> dict[str, str]:
    """Per sink that does not hold the source's rows (``expected(sink, rows)``), how not."""
    want = source.rows()
    columns = source.columns()
    found = {}
    for sink in sinks:
        try:
            got = targets.read(sink, source.name, columns, source.key)
        except Exception as exc:  # a table or column not made yet reads as "not there yet"
            found[sink] = f"{type(exc).__name__}: {exc}"
            continue
        sink_want = expected(sink, want)
        if got != sink_want:
            found[sink] = _diff(got, sink_want)
    return found


def settle(
    table: SourceTable, running: dict[str, WorkerProcess], records: int, timeout_s: float = 120
) -> None:
    """Until the connector has written ``records`` messages of ``table`` and the consumer group
    of every worker of ``running`` has committed them all (applied or dead-lettered)."""
    read_topic(bootstrap(), table.topic, expect=records, timeout_s=timeout_s)
    caught_up(running, timeout_s)


def caught_up(running: dict[str, WorkerProcess], timeout_s: float = 180) -> None:
    """Until the consumer group of every worker of ``running`` has committed the end of its
    topics (every record applied or dead-lettered)."""
    for sink, worker in running.items():
        kafka = worker.config["kafka"]
        wait_caught_up(f"{kafka['group_prefix']}-{sink}", kafka["topics"], timeout_s=timeout_s)


def topic_records(bootstrap: str, topic: str, expect: int) -> list[Origin]:
    """The first ``expect`` records of ``topic`` (its one partition, as the connector makes
    it) as a worker gets them: bytes, timestamps, headers."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("fid-read")})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    records: list[Origin] = []

    def read() -> bool:
        for m in consumer.consume(100, timeout=0.5):
            if m.error() is None:
                given = m.headers() or []
                pairs = given.items() if isinstance(given, dict) else given
                headers = tuple((k, v if isinstance(v, bytes) else b"") for k, v in pairs)
                stamp = m.timestamp()[1]
                records.append(
                    Origin(topic, 0, m.offset() or 0, stamp, m.key(), m.value(), headers)
                )
        return len(records) >= expect

    try:
        wait_for(read, 90, f"{expect} records on {topic}")
    finally:
        consumer.close()
    return records


def _diff(got: Rows, want: Rows) -> str:
    lines = []
    for key in sorted(set(got) | set(want), key=repr):
        if got.get(key) != want.get(key):
            lines.append(
                f"  key {key}: sink {_cut(got.get(key))} != expected {_cut(want.get(key))}"
            )
    return "\n".join(lines[:20])


def _cut(row: dict[str, Any] | None, width: int = 300) -> str:
    text = repr(row)
    return text if len(text) <= width else f"{text[:width]}... ({len(text)} chars)"


# ---- a workload ---------------------------------------------------------------------------

CHURN_COLUMNS = "id int PRIMARY KEY, n int, label text, body text"


def churn(table: SourceTable, statements: int, keys: int, rng: random.Random) -> int:
    """Inserts, updates and deletes over ``keys`` keys of a ``CHURN_COLUMNS`` table, some rows
    with a large random ``body`` (TOASTed: updates that leave it make Debezium send its
    placeholder). Returns how many records the connector writes for them (a delete is two:
    the delete and its tombstone)."""
    live = {
        key
        for (key,) in table.conn.execute(
            sql.SQL("SELECT id FROM {}").format(sql.Identifier(table.name))
        )
    }
    records = 0
    for _ in range(statements):
        key = rng.randint(1, keys)
        if key not in live:
            body = (
                "".join(rng.choices(string.ascii_letters, k=6000))
                if rng.random() < 0.3
                else "small"
            )
            table.run(
                "INSERT INTO {t} VALUES (%s, %s, %s, %s)", key, rng.randint(0, 999), "new", body
            )
            live.add(key)
        elif (roll := rng.random()) < 0.6:
            table.run(
                "UPDATE {t} SET n = %s, label = %s WHERE id = %s",
                rng.randint(0, 999),
                f"u{rng.randint(0, 99)}",
                key,
            )
        elif roll < 0.75:
            table.run("UPDATE {t} SET body = %s WHERE id = %s", f"rewritten {rng.random()}", key)
        else:
            table.run("DELETE FROM {t} WHERE id = %s", key)
            live.discard(key)
            records += 1
        records += 1
    return records
