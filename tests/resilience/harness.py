"""The resilience suite's run: one private topic, a stream of valid and bad records, workers of
every sink, and the checks a user would make afterwards.

What is checked, per sink:
- crashes: a worker process that exited on its own (any exit code) is a crash;
- stalls: the sink's group committed every partition to its end within a deadline;
- the DLQ: every record the sink must refuse is there with its reason, nothing else is (apart
  from tombstones read first after a restart, which the decoder cannot order: counted);
- the state: each table's live keys and their versions equal the newest valid event's per key
  (a missing key is lost, an extra one resurrected, another version stale or a wrong write);
  a bad record's own key is there exactly where a sink takes it.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from clickhouse_connect.driver.client import Client as ClickHouseClient
from confluent_kafka import Producer
from elasticsearch import Elasticsearch, helpers
from psycopg import sql

from tests.integration.conftest import Endpoints
from tests.integration.fidelity_support import stack_config
from tests.support.bad_input import BadRecord
from tests.support.debezium import Message, TableSpec
from tests.support.pipeline import (
    WorkerProcess,
    bootstrap,
    committed_offsets,
    create_topic,
    end_offsets,
    read_topic,
    unique,
    wait_caught_up,
)

Versions = dict[str, dict[tuple[Any, ...], int]]  # table -> key -> version
UNORDERED_TOMBSTONE = "before any row of that topic since the decoder started"
DLQ_MAX_BYTES = 100_000


def oracle_versions(valid: Iterable[Message]) -> Versions:
    """The newest valid event's version per live key (deletes remove it; tombstones after a
    delete add nothing)."""
    state: Versions = {}
    for message in valid:
        if message.value is None:
            continue
        event = message.event
        rows = state.setdefault(event.spec.table, {})
        key = event.spec.key_tuple(event.key)
        if event.row is None:
            rows.pop(key, None)
        else:
            rows[key] = message.version
    return state


def produce_records(
    topic: str, records: Iterable[tuple[bytes | None, bytes | None, int | None]]
) -> int:
    """Produce in order, keyed like Kafka Connect (murmur2 on the key bytes)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap(),
            "partitioner": "murmur2_random",
            "linger.ms": 50,
            "compression.type": "lz4",
            "enable.idempotence": True,
            "message.max.bytes": 2_000_000,
        }
    )
    count = 0
    for key, value, timestamp in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, timestamp=timestamp or 0)
                producer.poll(0)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
    remaining = producer.flush(120)
    assert remaining == 0, f"{remaining} records not delivered to {topic}"
    return count


@dataclass
class Run:
    """One run's names (topic, groups, DLQs, schema, database, index prefix) and workers."""

    endpoints: Endpoints
    workdir: Path
    partitions: int = 6
    prefix: str = field(default_factory=lambda: unique("rs"))
    workers: dict[str, list[WorkerProcess]] = field(default_factory=dict)
    killed: set[int] = field(default_factory=set)  # ids of workers a fault killed on purpose

    @property
    def topic(self) -> str:
        return f"{self.prefix}.cdc"

    def group(self, sink: str) -> str:
        return f"{self.prefix}-{sink}"

    def dlq(self, sink: str) -> str:
        return f"{self.prefix}.dlq.{sink}"

    def create(self) -> None:
        create_topic(self.topic, partitions=self.partitions)

    def config(self, sink: str, **overrides: Any) -> dict[str, Any]:
        config = stack_config(
            self.prefix,
            self.topic,
            self.endpoints,
            {"max_events": 500, "max_wait_ms": 100},
            sinks=[sink],
        )
        config["kafka"]["dlq_max_message_bytes"] = DLQ_MAX_BYTES
        section = config["sinks"][sink]
        section["retry"] = {"initial_backoff_ms": 100, "max_backoff_ms": 1000}
        section.update(overrides)
        return config

    def start(self, sink: str, config: Mapping[str, Any] | None = None) -> WorkerProcess:
        worker = WorkerProcess(sink, config or self.config(sink), self.workdir).start()
        self.workers.setdefault(sink, []).append(worker)
        return worker

    def stop_all(self) -> dict[str, list[int | None]]:
        """SIGTERM every worker still running; the exit codes of those not killed by a fault."""
        return {
            sink: [w.stop() for w in started if id(w) not in self.killed]
            for sink, started in self.workers.items()
        }

    def crashes(self, sink: str) -> list[str]:
        """Workers of ``sink`` that exited without being asked to (with their log's tail)."""
        return [
            f"exit {w.process.returncode}: {w.log()[-2000:]}"
            for w in self.workers.get(sink, [])
            if w.process is not None and w.process.poll() is not None and id(w) not in self.killed
        ]

    def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL ``worker`` (a fault, not a crash) and reap it."""
        self.killed.add(id(worker))
        worker.signal(signal.SIGKILL)
        worker.wait(30)

    def wait_caught_up(self, sink: str, timeout_s: float) -> None:
        try:
            wait_caught_up(self.group(sink), [self.topic], timeout_s=timeout_s)
        except AssertionError as exc:
            tails = "\n".join(w.log()[-3000:] for w in self.workers.get(sink, []))
            raise AssertionError(f"{sink}: {exc}\nworker logs:\n{tails}") from None

    def records(self) -> int:
        return sum(end_offsets([self.topic]).values())


# ---- the DLQ ---------------------------------------------------------------------------------


@dataclass
class DlqReport:
    """What one sink's DLQ holds, matched with the bad records."""

    found: dict[str, int]  # kind -> entries
    wrong_reason: dict[str, str]  # kind -> the message it came with
    unexpected: list[str]  # entries that are no refused bad record (key, reason)
    tombstones: int  # valid tombstones the decoder could not order (after a restart)
    truncated: int
    reasons: dict[str, str] = field(default_factory=dict)  # kind -> the message


def read_dlq(run: Run, sink: str, bad: Sequence[BadRecord]) -> DlqReport:
    refused = [r for r in bad if sink in r.refused]
    entries = read_topic(run.dlq(sink), timeout_s=30, expect=len(refused))
    report = DlqReport(Counter(), {}, [], 0, 0)
    for entry in entries:
        headers = {k: (v or b"").decode(errors="replace") for k, v in entry.headers() or []}
        reason = headers.get("fanout.error.message", "")
        truncated = headers.get("fanout.truncated") == "true"
        report.truncated += truncated
        if entry.value() is None and UNORDERED_TOMBSTONE in reason:
            report.tombstones += 1  # a valid tombstone read first after a (re)start
            continue
        record = _match(entry.key(), entry.value(), truncated, bad)
        if record is None:
            report.unexpected.append(f"{entry.key()!r:.80}: {reason[:200]}")
            continue
        if sink not in record.refused:
            report.unexpected.append(f"{record.kind}: {reason[:200]}")
            continue
        report.found[record.kind] = report.found.get(record.kind, 0) + 1
        report.reasons[record.kind] = reason
        if record.refused[sink] not in reason:
            report.wrong_reason[record.kind] = reason
        wrong = _wrong_headers(run, record, headers, truncated)
        if wrong:
            report.wrong_reason[record.kind] = f"headers {wrong}"
    return report


def _wrong_headers(
    run: Run, record: BadRecord, headers: Mapping[str, str], truncated: bool
) -> dict[str, str]:
    """The headers of ``record``'s DLQ entry that do not say what they must."""
    want = {
        "fanout.error.stage": record.stage,
        "fanout.origin.topic": run.topic,  # where the whole record lies
    }
    if record.stage == "decode":
        want["fanout.error.class"] = "DecodeError"
    else:  # a store refused the record: the data class, however the batch was split to find it
        want["fanout.error.class"] = "MappingError"
    if truncated:  # cut to fit the DLQ topic, and saying how large it was
        want["fanout.original.value_bytes"] = str(len(record.value or b""))
        want["fanout.original.key_bytes"] = str(len(record.key or b""))
    return {
        name: headers.get(name, "<absent>")
        for name, value in want.items()
        if headers.get(name) != value
    }


def _match(
    key: bytes | None, value: bytes | None, truncated: bool, bad: Sequence[BadRecord]
) -> BadRecord | None:
    for record in bad:
        if truncated:
            if (record.value or b"").startswith(value or b"\0") and record.size > DLQ_MAX_BYTES:
                return record
        elif (record.key or None) == (key or None) and record.value == value:
            return record
    return None


def missing_from_dlq(report: DlqReport, sink: str, bad: Sequence[BadRecord]) -> list[str]:
    return [r.kind for r in bad if sink in r.refused and r.kind not in report.found]


# ---- each sink's state -------------------------------------------------------------------------


def sink_versions(
    sink: str,
    run: Run,
    tables: Sequence[TableSpec],
    pg: psycopg.Connection[Any],
    clickhouse: ClickHouseClient,
    es: Elasticsearch,
) -> Versions:
    read: dict[str, Callable[[Any, str, TableSpec], dict[tuple[Any, ...], int]]] = {
        "postgres": _pg_versions,
        "clickhouse": _ch_versions,
        "elasticsearch": _es_versions,
    }
    client: Any = {"postgres": pg, "clickhouse": clickhouse, "elasticsearch": es}[sink]
    return {spec.table: read[sink](client, run.prefix, spec) for spec in tables}


def _pg_versions(
    conn: psycopg.Connection[Any], prefix: str, spec: TableSpec
) -> dict[tuple[Any, ...], int]:
    exists = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        (prefix, spec.table),
    ).fetchone()
    if not exists:
        return {}
    query = sql.SQL("SELECT {}, _fanout_version FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, spec.primary_key)),
        sql.Identifier(prefix, spec.table),
    )
    return {tuple(row[:-1]): row[-1] for row in conn.execute(query)}


def _ch_versions(
    client: ClickHouseClient, prefix: str, spec: TableSpec
) -> dict[tuple[Any, ...], int]:
    exists = client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": prefix, "t": spec.table},
    ).result_rows[0][0]
    if not exists:
        return {}
    keys = ", ".join(f"`{name}`" for name in spec.primary_key)  # names of the generator's specs
    query = (
        f"SELECT {keys}, _fanout_version FROM `{prefix}`.`{spec.table}` FINAL"
        " WHERE _fanout_deleted = 0"
    )
    return {tuple(row[:-1]): int(row[-1]) for row in client.query(query).result_rows}


def _es_versions(es: Elasticsearch, prefix: str, spec: TableSpec) -> dict[tuple[Any, ...], int]:
    alias = f"{prefix}-{spec.table}"
    if not es.indices.exists_alias(name=alias):
        return {}
    es.indices.refresh(index=alias)
    fields = [*spec.primary_key, "_fanout_version"]
    return {
        tuple(hit["_source"][name] for name in spec.primary_key): hit["_source"]["_fanout_version"]
        for hit in helpers.scan(es, index=alias, size=2000, _source=fields)
    }


@dataclass
class StateReport:
    lost: int
    resurrected: int
    stale: int
    examples: list[str]

    @property
    def clean(self) -> bool:
        return not (self.lost or self.resurrected or self.stale)


def compare(actual: Versions, expected: Versions, own_keys: set[tuple[str, Any]]) -> StateReport:
    """``actual`` against ``expected``, leaving out the bad records' own keys (checked apart)."""
    report = StateReport(0, 0, 0, [])
    for table in sorted(set(actual) | set(expected)):
        got = {k: v for k, v in actual.get(table, {}).items() if (table, k[0]) not in own_keys}
        want = expected.get(table, {})
        for key in want.keys() - got.keys():
            report.lost += 1
            report.examples.append(f"lost {table}{key}")
        for key in got.keys() - want.keys():
            report.resurrected += 1
            report.examples.append(f"resurrected {table}{key} v{got[key]}")
        for key in want.keys() & got.keys():
            if got[key] != want[key]:
                report.stale += 1
                report.examples.append(f"{table}{key}: v{got[key]}, newest v{want[key]}")
    report.examples = report.examples[:8]
    return report


def misplaced(actual: Versions, sink: str, bad: Sequence[BadRecord]) -> list[str]:
    """Bad records' own keys that are where they must not be, or missing where they must be."""
    wrong = []
    for record in bad:
        if record.lands is None:
            continue
        table, id_ = record.lands
        present = (id_,) in actual.get(table.split(".")[-1], {})
        if present == (sink in record.refused):
            wrong.append(f"{record.kind}: {'written' if present else 'missing'}")
    return wrong


def own_keys(bad: Sequence[BadRecord]) -> set[tuple[str, Any]]:
    return {(r.lands[0].split(".")[-1], r.lands[1]) for r in bad if r.lands}


def summary(data: Mapping[str, Any]) -> str:
    """One JSON line for the suite's figures (printed; docs/RELIABILITY.md quotes them)."""
    line = json.dumps(data, sort_keys=True, default=str)
    figures = os.environ.get("RESILIENCE_FIGURES")
    if figures:
        with open(figures, "a") as out:
            out.write(line + "\n")
    return line


@dataclass
class Verdict:
    """Everything checked for one sink after a run: problems (empty when it held) and figures."""

    sink: str
    problems: list[str]
    figures: dict[str, Any]


def check_sink(
    run: Run,
    sink: str,
    valid: Sequence[Message],
    bad: Sequence[BadRecord],
    tables: Sequence[TableSpec],
    clients: tuple[psycopg.Connection[Any], ClickHouseClient, Elasticsearch],
) -> Verdict:
    """The checks of this module's docstring for ``sink``, once its group has caught up."""
    problems = [f"crashed: {crash}" for crash in run.crashes(sink)]
    dlq = read_dlq(run, sink, bad)
    problems += [f"not in the DLQ: {kind}" for kind in missing_from_dlq(dlq, sink, bad)]
    problems += [f"DLQ reason of {k!r}: {m[:200]}" for k, m in dlq.wrong_reason.items()]
    problems += [f"in the DLQ unexpectedly: {entry}" for entry in dlq.unexpected]
    actual = sink_versions(sink, run, tables, *clients)
    state = compare(actual, oracle_versions(valid), own_keys(bad))
    if not state.clean:
        problems.append(
            f"state: {state.lost} lost, {state.resurrected} resurrected, {state.stale} stale: "
            f"{state.examples}"
        )
    problems += [f"bad record's own key {m}" for m in misplaced(actual, sink, bad)]
    logs = [line for w in run.workers.get(sink, []) for line in w.log().splitlines()]
    problems += [f"logged: {line[:300]}" for line in logs if "worker crashed" in line]
    tracebacks = [line for line in logs if "Traceback" in line]
    problems += [f"a traceback in the log: {line[:300]}" for line in tracebacks[:3]]
    figures = {
        "sink": sink,
        "dead_lettered": sum(dlq.found.values()),
        "kinds_dead_lettered": len(dlq.found),
        "dlq_duplicates": sum(dlq.found.values()) - len(dlq.found),
        "unordered_tombstones": dlq.tombstones,
        "truncated_in_dlq": dlq.truncated,
        "live_keys": sum(len(rows) for rows in actual.values()),
        "lost": state.lost,
        "resurrected": state.resurrected,
        "stale": state.stale,
        "crashes": len(run.crashes(sink)),
        "tracebacks_logged": len(tracebacks),
    }
    return Verdict(sink, problems, figures)


def committed_to_end(run: Run, sink: str, partly: bool = False) -> bool:
    """Whether ``sink``'s group committed every partition to its end (``partly``: anything)."""
    ends = end_offsets([run.topic])
    committed = committed_offsets(run.group(sink), [run.topic])
    if partly:
        return any(committed.get(tp, -1) > 0 for tp in ends)
    return all(committed.get(tp, -1) >= end or end == 0 for tp, end in ends.items())
