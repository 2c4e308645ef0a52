"""A real Debezium PostgreSQL connector for tests: Kafka Connect's REST API, the source cluster.

`scripts/devstack up` runs the source (PostgreSQL with `wal_level=logical`, service
`source-pg`) and Kafka Connect with the Debezium PostgreSQL connector (service `connect`); see
docs/DEVSTACK.md. Here:

* ``SourceDb.from_env()``: where the source is (``DEVSTACK_SOURCE_PG_*``, as
  `scripts/devstack env` prints them; the devstack's addresses by default).
* ``ConnectClient``: create, inspect and delete connectors over REST.
* ``debezium_connector(...)``: a context manager that starts a connector configured as users
  run it, waits until its snapshot is done and it streams, and afterwards deletes it and drops
  its replication slot and publication, so tests never collide nor leave WAL pinned.
* ``read_topic(...)``: the messages of a topic from its beginning, with a deadline.

Standard library, psycopg and confluent_kafka only (no fanout modules).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from psycopg import sql

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")
        time.sleep(0.2)  # polling interval of a deadline-bounded wait, not a sync point


# --- the source cluster ---------------------------------------------------------------------


@dataclass(frozen=True)
class SourceDb:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str

    @classmethod
    def from_env(cls) -> SourceDb:
        env = os.environ.get
        return cls(
            host=env("DEVSTACK_SOURCE_PG_HOST", "127.0.0.1"),
            port=int(env("DEVSTACK_SOURCE_PG_PORT", "5433")),
            user=env("DEVSTACK_SOURCE_PG_USER", "debezium"),
            password=env("DEVSTACK_SOURCE_PG_PASSWORD", "debezium"),
            dbname=env("DEVSTACK_SOURCE_PG_DBNAME", "source"),
        )

    def conninfo(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
        }

    def connect(self, autocommit: bool = True) -> psycopg.Connection[Any]:
        return psycopg.connect(**self.conninfo(), autocommit=autocommit, connect_timeout=5)


# --- Kafka Connect's REST API ---------------------------------------------------------------


class ConnectError(Exception):
    """Kafka Connect refused a request (status and its error message)."""


class ConnectClient:
    def __init__(self, url: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = (url or os.environ.get("DEVSTACK_CONNECT_URL", "http://127.0.0.1:8083")).rstrip(
            "/"
        )
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """(status, parsed JSON body or None). Connection errors raise OSError."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, json.loads(raw) if raw.strip() else None

    def _expect(self, method: str, path: str, ok: tuple[int, ...], body: object = None) -> Any:
        status, answer = self.request(method, path, body)
        if status not in ok:
            message = answer.get("message") if isinstance(answer, dict) else answer
            raise ConnectError(f"{method} {path}: HTTP {status}: {message}")
        return answer

    def worker(self) -> dict[str, Any]:
        """The worker's version and Kafka cluster id (`GET /`)."""
        answer: dict[str, Any] = self._expect("GET", "/", (200,))
        return answer

    def plugins(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self._expect(
            "GET", "/connector-plugins?connectorsOnly=true", (200,)
        )
        return answer

    def connectors(self) -> list[str]:
        answer: list[str] = self._expect("GET", "/connectors", (200,))
        return answer

    def create(self, name: str, config: Mapping[str, str]) -> None:
        self._expect("POST", "/connectors", (201,), {"name": name, "config": dict(config)})

    def status(self, name: str) -> dict[str, Any] | None:
        """`GET /connectors/<name>/status`, None if there is no such connector."""
        status, answer = self.request("GET", f"/connectors/{name}/status")
        if status == 404:
            return None
        if status != 200 or not isinstance(answer, dict):
            raise ConnectError(f"status of {name}: HTTP {status}: {answer}")
        return answer

    def delete(self, name: str) -> None:
        """Delete if present; in standalone mode it returns once the tasks have stopped."""
        self._expect("DELETE", f"/connectors/{name}", (204, 404))


def task_failure(status: Mapping[str, Any]) -> str | None:
    """The trace of a FAILED connector or task in a status answer, if any."""
    parts = [status.get("connector", {}), *status.get("tasks", [])]
    for part in parts:
        if part.get("state") == "FAILED":
            return str(part.get("trace") or part)
    return None


def all_running(status: Mapping[str, Any]) -> bool:
    tasks = status.get("tasks", [])
    return (
        status.get("connector", {}).get("state") == "RUNNING"
        and bool(tasks)
        and all(task.get("state") == "RUNNING" for task in tasks)
    )


# --- a Debezium PostgreSQL connector --------------------------------------------------------


@dataclass(frozen=True)
class DebeziumConnector:
    name: str
    topic_prefix: str
    tables: tuple[str, ...]  # "schema.table"
    slot: str
    publication: str
    config: dict[str, str] = field(repr=False)

    def topic(self, table: str) -> str:
        """The topic of ``table`` ("schema.table", or "table" in schema public)."""
        qualified = table if "." in table else f"public.{table}"
        return f"{self.topic_prefix}.{qualified}"


def connector_config(
    source: SourceDb,
    topic_prefix: str,
    tables: tuple[str, ...],
    slot: str,
    publication: str,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What users typically run: pgoutput, JsonConverter with schemas for key and value,
    exact decimals, TRUNCATE captured, a publication for just these tables. One-partition
    topics keep one total order per table for tests to reason about."""
    config = {
        "connector.class": POSTGRES_CONNECTOR,
        "tasks.max": "1",
        "database.hostname": source.host,
        "database.port": str(source.port),
        "database.user": source.user,
        "database.password": source.password,
        "database.dbname": source.dbname,
        "plugin.name": "pgoutput",
        "topic.prefix": topic_prefix,
        "table.include.list": ",".join(tables),
        "slot.name": slot,
        "publication.name": publication,
        "publication.autocreate.mode": "filtered",
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "true",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "true",
        "decimal.handling.mode": "precise",
        "skipped.operations": "none",  # Debezium's default skips TRUNCATE ("t")
        "topic.creation.default.partitions": "1",
        "topic.creation.default.replication.factor": "1",
    }
    config.update(overrides or {})
    return config


# Debezium's signal table (signal.data.collection): signals such as execute-snapshot are rows
# inserted here; the connector must capture it too (table.include.list).
SIGNAL_TABLE_COLUMNS = "id varchar(64) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048)"


def signal_table(source: SourceDb, table: str) -> dict[str, str]:
    """Create the signal table ``table`` ("schema.table") in the source if missing; the
    connector settings (``overrides``) that make the connector read signals from it. Pass the
    table in the connector's ``tables`` too."""
    schema, _, name = table.rpartition(".")
    with source.connect() as conn:
        statement = sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            sql.Identifier(schema or "public", name), sql.SQL(SIGNAL_TABLE_COLUMNS)
        )
        conn.execute(statement)
    return {"signal.data.collection": table, "signal.enabled.channels": "source"}


def _pg_name(prefix: str) -> str:
    """A slot/publication name: lower-case letters, digits and _, at most 63 bytes, unique."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:40]
    return f"{cleaned}_{uuid.uuid4().hex[:12]}"


def streaming(source: SourceDb, slot: str) -> bool:
    """Whether a WAL sender streams from ``slot``. Debezium opens the replication stream only
    after its snapshot has completed, so this is also "snapshot done"."""
    with source.connect() as conn:
        row = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    return bool(row and row[0])


def wait_streaming(
    client: ConnectClient, connector: DebeziumConnector, source: SourceDb, timeout_s: float
) -> None:
    """Until the task is RUNNING and its slot streams; fail at once if the task FAILED."""

    def ready() -> bool:
        status = client.status(connector.name)
        if status is None:
            raise AssertionError(f"connector {connector.name} vanished")
        if failure := task_failure(status):
            raise AssertionError(f"connector {connector.name} failed:\n{failure}")
        return all_running(status) and streaming(source, connector.slot)

    wait_until(ready, timeout_s, f"connector {connector.name} to finish its snapshot and stream")


def drop_slot(source: SourceDb, slot: str, timeout_s: float = 30.0) -> None:
    """Drop ``slot`` once no WAL sender holds it (a sender that outlives its connector is
    terminated: the role may signal its own backends)."""
    with source.connect() as conn:

        def released() -> bool:
            row = conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row and row[0] is not None:
                conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                return False
            return True

        wait_until(released, timeout_s, f"replication slot {slot} to be released")
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot,),
        )


def remove(client: ConnectClient, source: SourceDb, connector: DebeziumConnector) -> None:
    """Delete the connector, then its slot (which would pin WAL forever) and publication."""
    client.delete(connector.name)
    drop_slot(source, connector.slot)
    with source.connect() as conn:
        conn.execute(f'DROP PUBLICATION IF EXISTS "{connector.publication}"')


@contextmanager
def debezium_connector(
    topic_prefix: str,
    tables: list[str] | tuple[str, ...],
    *,
    client: ConnectClient | None = None,
    source: SourceDb | None = None,
    overrides: Mapping[str, str] | None = None,
    timeout_s: float = 90.0,
) -> Iterator[DebeziumConnector]:
    """A Debezium PostgreSQL connector capturing ``tables`` ("schema.table") into topics
    ``<topic_prefix>.<schema>.<table>``, streaming when the block starts, gone after it.

    Its replication slot and publication are its own, so connectors of concurrent tests do not
    collide. ``overrides`` changes or adds connector settings."""
    client = client or ConnectClient()
    source = source or SourceDb.from_env()
    tables = tuple(t if "." in t else f"public.{t}" for t in tables)
    slot = _pg_name(topic_prefix)
    config = connector_config(source, topic_prefix, tables, slot, slot, overrides)
    connector = DebeziumConnector(
        name=f"{topic_prefix}-{slot[-12:]}",
        topic_prefix=topic_prefix,
        tables=tables,
        slot=config["slot.name"],
        publication=config["publication.name"],
        config=config,
    )
    client.create(connector.name, config)
    try:
        wait_streaming(client, connector, source, timeout_s)
        yield connector
    finally:
        remove(client, source, connector)


# --- reading what the connector wrote -------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One Kafka message, its key and value parsed as JSON (None for a null key/tombstone)."""

    partition: int
    offset: int
    key: Any
    value: Any


def _parse(raw: bytes | None) -> Any:
    return None if raw is None else json.loads(raw)


def read_topic(bootstrap: str, topic: str, expect: int, timeout_s: float = 30.0) -> list[Record]:
    """At least ``expect`` messages of ``topic`` from its beginning, in partition order
    (the connector's topics have one partition: source order). Fails with what it has read
    when the deadline passes first."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"debezium-read-{uuid.uuid4().hex[:8]}",  # assign() only, nothing commits
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    records: list[Record] = []
    try:
        partitions = wait_until(
            lambda: _partitions(consumer, topic), timeout_s, f"topic {topic} to exist"
        )
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout_s
        while len(records) < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                records.append(_record(msg))
    finally:
        consumer.close()
    if len(records) < expect:
        shown = "\n".join(f"  {r.offset}: {r.value}" for r in records)
        raise AssertionError(
            f"{topic}: {len(records)} of {expect} messages in {timeout_s}s:\n{shown}"
        )
    return records


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    found = consumer.list_topics(topic, timeout=5).topics.get(topic)
    if found is None or found.error is not None:
        return []
    return sorted(found.partitions)


def _record(msg: Message) -> Record:
    if msg.error():
        raise KafkaException(msg.error())
    return Record(msg.partition() or 0, msg.offset() or 0, _parse(msg.key()), _parse(msg.value()))
