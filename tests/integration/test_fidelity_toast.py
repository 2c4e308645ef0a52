"""Unchanged TOASTed values through a real Debezium connector and real workers.

With the default REPLICA IDENTITY, an UPDATE that does not touch a TOASTed column makes
Debezium send its placeholder (``__debezium_unavailable_value``; its bytes in a bytea column,
``[placeholder]`` in an array) instead of the value. Every sink must keep the stored value of
such a column, set a column carried as NULL to NULL, and never write the placeholder; where it
holds no value for the key (a row the connector never sent, ``snapshot.mode=no_data``), the
column is left NULL/absent and counted in ``fanout_columns_unknown_total``.

The source table has a large random text, a bytea, a jsonb and a text[] column (random, so
PostgreSQL stores them out of line, uncompressed). Each test runs ``fanout run --sink NAME``
on the connector's topic and compares the sink with the source rows value by value:

* ``test_placeholder_updates_in_the_same_batch``: insert, placeholder update and second update
  are all in Kafka before the worker starts, so one batch holds them (the stale count proves
  it) and the batch template merges the columns;
* ``test_placeholder_updates_in_separate_batches``: each step waits until the sink shows the
  previous one, so the sink completes a partial row from what it stored.

A sink is a parameter (``SINKS``): a probe that configures its worker, reads its rows back in
the source's Python form and says how a row the sink could not complete looks.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import socket
import string
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from clickhouse_connect.driver.client import Client as ClickHouseClient
from elasticsearch import Elasticsearch, helpers
from elasticsearch.serializer import JsonSerializer
from psycopg import sql

from sinks.clickhouse.types import quote_identifier
from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.support.debezium_connector import DebeziumConnector, Record, read_topic
from tests.support.pipeline import WorkerProcess, create_topic, unique, wait_for

PLACEHOLDER = "__debezium_unavailable_value"
TOASTED = ("body", "blob", "doc", "tags")  # out of line in the source: the placeholder's columns
COLUMNS = ("id", "n", "body", "blob", "doc", "tags", "note")
EXACT = "1234567890.1234567890123456789"  # in the jsonb: a float64 would round it
Rows = dict[int, dict[str, Any]]


def exact_json(text: str) -> Any:
    """A JSON text parsed with every digit kept, to compare sinks with the source."""
    return json.loads(text, parse_float=Decimal)


class ExactJsonSerializer(JsonSerializer):
    """Elasticsearch responses parsed with every digit kept (the client's default rounds)."""

    def json_loads(self, data: bytes) -> Any:
        return json.loads(data, parse_float=Decimal)


# ---- the sinks ---------------------------------------------------------------------------


@dataclass
class SinkProbe:
    """One sink under test: its worker's settings and its rows in the source's Python form."""

    name: str
    section: dict[str, Any]  # sinks.<name> of the worker's config
    read: Callable[[str], Rows]  # target -> live rows by id
    # how a source row looks in the sink when the columns ``unknown`` had no stored value
    stored_form: Callable[[dict[str, Any], Collection[str]], dict[str, Any]]
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def clickhouse_probe(request: pytest.FixtureRequest) -> SinkProbe:
    client: ClickHouseClient = request.getfixturevalue("clickhouse")
    endpoints: Endpoints = request.getfixturevalue("endpoints")
    database = f"toast_{uuid.uuid4().hex[:10]}"

    def read(target: str) -> Rows:
        exists = client.query(
            "SELECT count() FROM system.tables WHERE database = {d:String} AND name = {t:String}",
            parameters={"d": database, "t": f"{target}_current"},
        ).result_rows[0][0]
        if not exists:
            return {}
        names = ", ".join(map(quote_identifier, COLUMNS))
        view = f"{quote_identifier(database)}.{quote_identifier(target + '_current')}"
        result = client.query(f"SELECT {names} FROM {view}", column_formats={"blob": "bytes"})
        rows = {}
        for values in result.result_rows:
            row = dict(zip(COLUMNS, values, strict=True))
            row["doc"] = None if row["doc"] is None else exact_json(row["doc"])
            rows[row["id"]] = row
        return rows

    def stored_form(row: dict[str, Any], unknown: Collection[str]) -> dict[str, Any]:
        out = {**row, **dict.fromkeys(unknown)}
        out["tags"] = out["tags"] or []  # an Array column is never NULL: it reads empty
        return out

    probe = SinkProbe(
        "clickhouse",
        {"host": endpoints.ch_host, "port": endpoints.ch_port, "database": database},
        read,
        stored_form,
    )
    probe.cleanup.append(
        lambda: client.command(f"DROP DATABASE IF EXISTS {quote_identifier(database)}")
    )
    return probe


def elasticsearch_probe(request: pytest.FixtureRequest) -> SinkProbe:
    request.getfixturevalue("es")  # fails with the devstack hint if it is down
    endpoints: Endpoints = request.getfixturevalue("endpoints")
    es = Elasticsearch(
        endpoints.es_hosts,
        request_timeout=30,
        serializers={JsonSerializer.mimetype: ExactJsonSerializer()},
    )
    prefix = unique("toast").lower() + "-"

    def read(target: str) -> Rows:
        alias = prefix + target
        if not es.indices.exists_alias(name=alias):
            return {}
        es.indices.refresh(index=alias)
        rows = {}
        for hit in helpers.scan(es, index=alias, size=500):
            row = {k: v for k, v in hit["_source"].items() if not k.startswith("_fanout_")}
            if isinstance(row.get("blob"), str):
                row["blob"] = base64.b64decode(row["blob"])
            if isinstance(row.get("doc"), str):  # a JSON column kept as its text
                row["doc"] = exact_json(row["doc"])
            rows[row["id"]] = row
        return rows

    def stored_form(row: dict[str, Any], unknown: Collection[str]) -> dict[str, Any]:
        return {name: value for name, value in row.items() if name not in unknown}  # absent

    probe = SinkProbe(
        "elasticsearch",
        {"hosts": endpoints.es_hosts, "index_prefix": prefix, "request_timeout_s": 10},
        read,
        stored_form,
    )
    probe.cleanup.append(
        lambda: es.options(ignore_status=404).indices.delete(
            index=f"{prefix}*", expand_wildcards="all"
        )
    )
    probe.cleanup.append(es.close)
    return probe


def postgres_probe(request: pytest.FixtureRequest) -> SinkProbe:
    pg: psycopg.Connection[Any] = request.getfixturevalue("pg")
    endpoints: Endpoints = request.getfixturevalue("endpoints")
    schema = unique("toast")

    def read(target: str) -> Rows:
        found = pg.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s", (schema, target)
        ).fetchone()
        if found is None:
            return {}
        names = [sql.Identifier(name) for name in COLUMNS]
        names[COLUMNS.index("doc")] = sql.SQL("{}::text").format(sql.Identifier("doc"))
        table = sql.Identifier(schema, target)
        cur = pg.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(names), table))
        rows = {}
        for values in cur.fetchall():
            row = dict(zip(COLUMNS, values, strict=True))
            row["blob"] = None if row["blob"] is None else bytes(row["blob"])
            row["doc"] = None if row["doc"] is None else exact_json(row["doc"])
            rows[row["id"]] = row
        return rows

    def stored_form(row: dict[str, Any], unknown: Collection[str]) -> dict[str, Any]:
        return {**row, **dict.fromkeys(unknown)}  # NULL

    probe = SinkProbe("postgres", {"schema": schema, **endpoints.pg}, read, stored_form)
    probe.cleanup.append(
        lambda: pg.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
    )
    return probe


SINKS: dict[str, Callable[[pytest.FixtureRequest], SinkProbe]] = {
    "postgres": postgres_probe,
    "clickhouse": clickhouse_probe,
    "elasticsearch": elasticsearch_probe,
}


@pytest.fixture(params=sorted(SINKS))
def sink(request: pytest.FixtureRequest) -> Iterator[SinkProbe]:
    probe = SINKS[request.param](request)
    yield probe
    for clean in probe.cleanup:
        clean()


# ---- the source ---------------------------------------------------------------------------


@dataclass
class Source:
    """A source table with TOASTed columns, captured by a connector (``snapshot.mode=no_data``:
    rows inserted before it started are never sent, so the sinks hold nothing for them)."""

    conn: psycopg.Connection[Any]
    table: str
    rng: random.Random = field(default_factory=lambda: random.Random(13))
    connector: DebeziumConnector | None = None

    @property
    def topic(self) -> str:
        assert self.connector is not None
        return self.connector.topic(self.table)

    def execute(self, query: str, params: tuple[Any, ...] = ()) -> None:
        self.conn.execute(sql.SQL(query).format(t=sql.Identifier(self.table)), params)

    def text(self, size: int) -> str:
        return "".join(self.rng.choices(string.ascii_letters, k=size))

    def insert(self, key: int) -> None:
        doc = f'{{"text": "{self.text(6000)}", "n": {key}, "exact": {EXACT}, "nested": {{}}}}'
        self.execute(
            "INSERT INTO {t} VALUES (%s, 1, %s, %s, %s::jsonb, %s, 'a note')",
            (
                key,
                self.text(9000),
                self.rng.randbytes(6000),
                doc,
                [self.text(10) for _ in range(600)],
            ),
        )

    def rows(self) -> Rows:
        """The source rows, the jsonb parsed from its text with every digit kept."""
        names = [sql.Identifier(name) for name in COLUMNS]
        names[COLUMNS.index("doc")] = sql.SQL("doc::text")
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(names), sql.Identifier(self.table)
        )
        rows = {}
        for values in self.conn.execute(query):
            row = dict(zip(COLUMNS, values, strict=True))
            row["doc"] = None if row["doc"] is None else exact_json(row["doc"])
            rows[row["id"]] = row
        return rows


@pytest.fixture
def source(source_pg: psycopg.Connection[Any]) -> Iterator[Source]:
    src = Source(source_pg, unique("toast"))
    src.execute(
        "CREATE TABLE {t} (id int PRIMARY KEY, n int, body text, blob bytea, doc jsonb,"
        " tags text[], note text)"
    )
    try:
        yield src
    finally:
        src.execute("DROP TABLE IF EXISTS {t}")


def start_capture(source: Source, debezium: StartConnector) -> None:
    """Start the connector; its topic is made first (one partition, as Connect would make
    it), so a worker can subscribe before the first change."""
    prefix = source.table.replace("_", "-")
    create_topic(f"{prefix}.public.{source.table}", partitions=1)
    source.connector = debezium(
        prefix, [f"public.{source.table}"], overrides={"snapshot.mode": "no_data"}
    )


# The statements of the scenario, in order: (step, SQL, the key's columns Debezium cannot send).
UNSEEN = 3  # inserted before the connector started: no sink ever holds a value for it
STEPS: list[list[tuple[str, tuple[Any, ...], tuple[str, ...]]]] = [
    [],  # inserts of 1 and 2 (random values): Source.insert
    [
        ("UPDATE {t} SET n = 2 WHERE id = %s", (1,), TOASTED),
        ("UPDATE {t} SET n = 2, note = NULL WHERE id = %s", (2,), TOASTED),
        ("UPDATE {t} SET n = 2 WHERE id = %s", (UNSEEN,), TOASTED),
    ],
    [
        (
            "UPDATE {t} SET body = 'rewritten ' || repeat('z', 3000) WHERE id = %s",
            (1,),
            TOASTED[1:],
        ),
        ("UPDATE {t} SET tags = NULL, n = 3 WHERE id = %s", (2,), ("body", "blob", "doc")),
    ],
]


def run_step(source: Source, step: int) -> None:
    if step == 0:
        source.insert(1)
        source.insert(2)
    for statement, params, _ in STEPS[step]:
        source.execute(statement, params)


def expected_rows(source: Source, probe: SinkProbe) -> Rows:
    """The source rows as the sink must hold them; the unseen row's TOASTed columns had no
    value anywhere in the sink."""
    return {
        key: probe.stored_form(row, TOASTED if key == UNSEEN else ())
        for key, row in source.rows().items()
    }


def assert_placeholders_sent(records: list[Record]) -> None:
    """Debezium sent the placeholder for exactly the columns each update left untouched (the
    scenario is the one under test), and the insert carried real values."""
    encoded = base64.b64encode(PLACEHOLDER.encode()).decode()
    updates = [r.value["payload"] for r in records if r.value and r.value["payload"]["op"] == "u"]
    expected = [lacking for step in STEPS for _, _, lacking in step]
    assert len(updates) == len(expected)
    for payload, lacking in zip(updates, expected, strict=True):
        after = payload["after"]
        marked = [
            name
            for name, value in after.items()
            if value in (PLACEHOLDER, encoded) or value == [PLACEHOLDER]
        ]
        assert sorted(marked) == sorted(lacking), after.get("id")
    creates = [
        r.value["payload"]["after"] for r in records if r.value and r.value["payload"]["op"] == "c"
    ]
    assert all(PLACEHOLDER not in json.dumps(after) for after in creates)


# ---- the worker ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, OSError):
        return ""


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Worker:
    process: WorkerProcess
    port: int
    sink: str
    target: str

    def count(self, name: str) -> float:
        return metric(metrics(self.port), name, sink=self.sink, table=self.target)


def start_worker(
    probe: SinkProbe, source: Source, workdir: Path, workers: list[Any], max_wait_ms: int
) -> Worker:
    prefix = unique("toastrt")
    port = free_port()
    config = {
        "kafka": {
            "topics": [source.topic],
            "group_prefix": prefix,
            "dlq_prefix": f"{prefix}.dlq",
            "session_timeout_ms": 6000,
        },
        "metrics": {"port": port},
        "sinks": {
            probe.name: {
                "enabled": True,
                **probe.section,
                "batch": {"max_events": 500, "max_wait_ms": max_wait_ms},
                "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 1000},
            }
        },
    }
    process = WorkerProcess(probe.name, config, workdir).start()
    workers.append(process)
    worker = Worker(process, port, probe.name, source.table)
    wait_for(lambda: metrics(port), 60, f"the {probe.name} worker's /metrics")
    return worker


def converge(probe: SinkProbe, worker: Worker, target: str, want: Rows, what: str) -> None:
    """Wait until the sink holds ``want``; on timeout, compare to show the difference."""

    def done() -> bool:
        return not worker.process.alive or probe.read(target) == want

    with contextlib.suppress(AssertionError):  # the checks below say what is wrong
        wait_for(done, 120, what, interval_s=0.5)
    assert worker.process.alive, f"worker exited:\n{worker.process.log()[-3000:]}"
    got = probe.read(target)
    if got != want:
        log = worker.process.log()[-3000:]
        for key in sorted(set(got) | set(want)):
            assert got.get(key) == want.get(key), f"{what}: row {key} differs; log:\n{log}"


def assert_no_placeholder(rows: Rows) -> None:
    encoded = base64.b64encode(PLACEHOLDER.encode())
    for row in rows.values():
        text = repr(row)
        assert PLACEHOLDER not in text and encoded.decode() not in text, row["id"]
        assert not (isinstance(row.get("blob"), bytes) and PLACEHOLDER.encode() in row["blob"])


# ---- the tests ------------------------------------------------------------------------------


def test_placeholder_updates_in_the_same_batch(
    sink: SinkProbe,
    source: Source,
    debezium: StartConnector,
    kafka_bootstrap: str,
    workers: list[Any],
    tmp_path: Path,
) -> None:
    source.insert(UNSEEN)
    start_capture(source, debezium)
    for step in range(len(STEPS)):
        run_step(source, step)
    records = read_topic(kafka_bootstrap, source.topic, expect=7, timeout_s=60)
    assert_placeholders_sent(records)

    worker = start_worker(sink, source, tmp_path, workers, max_wait_ms=3000)
    want = expected_rows(source, sink)
    converge(sink, worker, source.table, want, f"{sink.name} to match the source")

    assert_no_placeholder(sink.read(source.table))
    # One batch: the two older events of keys 1 and 2 were superseded within it.
    assert worker.count("fanout_stale_events_total") == 4
    # The unseen row's four TOASTed columns: nothing in the batch or the sink had them.
    assert worker.count("fanout_columns_unknown_total") == len(TOASTED)


def test_placeholder_updates_in_separate_batches(
    sink: SinkProbe,
    source: Source,
    debezium: StartConnector,
    kafka_bootstrap: str,
    workers: list[Any],
    tmp_path: Path,
) -> None:
    source.insert(UNSEEN)
    start_capture(source, debezium)
    worker = start_worker(sink, source, tmp_path, workers, max_wait_ms=100)
    for step in range(len(STEPS)):
        run_step(source, step)
        want = expected_rows(source, sink)
        if step == 0:
            want.pop(UNSEEN)  # not sent yet: the connector never snapshotted it
        converge(sink, worker, source.table, want, f"{sink.name} after step {step}")

    assert_no_placeholder(sink.read(source.table))
    assert_placeholders_sent(read_topic(kafka_bootstrap, source.topic, expect=7, timeout_s=30))
    # Every event was applied in a batch of its own key's past: none superseded in a batch.
    assert worker.count("fanout_stale_events_total") == 0
    assert worker.count("fanout_columns_unknown_total") == len(TOASTED)
