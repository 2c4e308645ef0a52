"""`fanout dlq replay` of entries stored truncated (larger than the DLQ topic takes): replayed
from the whole record read back at its origin, or, where the source topic no longer has it,
reported unavailable and left pending while the rest is replayed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]
from psycopg import sql

from tests.integration.ops_support import fanout, write_config
from tests.integration.runtime_support import all_tables_state, new_pipeline, oracle
from tests.integration.test_runtime_error_classes import a_customer_insert, customer
from tests.support.debezium import CUSTOMERS, generate_stream, produce_stream
from tests.support.pipeline import (
    WorkerProcess,
    bootstrap,
    create_topic,
    produce,
    read_topic,
    wait_caught_up,
)

BROKEN_ROUTING = {"tables": {CUSTOMERS.name: {"drop": ["id"]}}}  # drops the key: MappingError
DLQ_LIMIT = 100_000
BIG = 300_000  # characters of a first name: three times what the DLQ topic takes


def test_truncated_entries_replay_from_their_origin_or_are_reported_unavailable(
    pg_conninfo: dict[str, Any], kafka_bootstrap: str, tmp_path: Path, pg: psycopg.Connection[Any]
) -> None:
    line = new_pipeline(pg_conninfo, tmp_path)
    create_topic(line.topic, partitions=1)
    messages = [m for m in generate_stream(300, n_keys=40, seed=51) if m.value is not None]
    template = a_customer_insert(messages)
    gone = customer(template, 900_002, first_name="b" * BIG)  # offset 0, deleted below
    kept = customer(template, 900_001, first_name="a" * BIG)
    produce(line.topic, [gone])
    produce_stream(line.topic, messages)
    produce(line.topic, [kept])
    broken, fixed = line.config(), line.config()
    for config in (broken, fixed):
        config["kafka"]["dlq_max_message_bytes"] = DLQ_LIMIT
    broken["sinks"]["postgres"]["routing"] = BROKEN_ROUTING
    worker = WorkerProcess("postgres", broken, tmp_path).start()
    try:
        wait_caught_up(line.group, [line.topic])
    finally:
        assert worker.stop() == 0
    customers = sum(1 for m in messages if m.event.spec is CUSTOMERS) + 2
    dead = read_topic(line.dlq_topic, expect=customers)
    truncated = {m.offset() for m in dead if dict(m.headers()).get("fanout.truncated") == b"true"}
    assert len(truncated) == 2
    entry_of = {_origin_offset(m): f"0:{m.offset()}" for m in dead}
    gone_entry, kept_entry = entry_of[0], entry_of[len(messages) + 1]
    _delete_first_record(line.topic)  # the source topic's retention took it

    config = write_config(tmp_path, fixed)
    dry = fanout(config, "dlq", "replay", "--sink", "postgres", "--json", "--dry-run")
    assert dry.code == 4, dry
    rehearsed = {e["entry"]: e["outcome"] for e in dry.json()["entries"]}
    assert (rehearsed[kept_entry], rehearsed[gone_entry]) == ("would_write", "unavailable")

    result = fanout(config, "dlq", "replay", "--sink", "postgres", "--json")
    assert result.code == 4, result
    summary = result.json()
    assert (summary["written"], summary["unavailable"], summary["failed"]) == (customers - 1, 1, 0)
    (unavailable,) = [e for e in summary["entries"] if e["outcome"] == "unavailable"]
    assert unavailable["entry"] == gone_entry
    assert f"{line.topic}[0]@0 is gone: the topic keeps offsets from 1 on" in unavailable["error"]

    stored = all_tables_state(pg, line.schema)[CUSTOMERS.name]
    first_name = stored.pop((900_001,))["first_name"]
    assert first_name == "a" * BIG  # the whole value, not the DLQ's cut
    assert stored == oracle(messages)[CUSTOMERS.name]
    assert _count(pg, line.schema, 900_002) == 0

    pending = fanout(config, "dlq", "ls", "--sink", "postgres", "--pending", "--json")
    assert [e["entry"] for e in pending.json()] == [gone_entry]  # not replayed: still pending
    text = fanout(config, "dlq", "replay", "--sink", "postgres")
    assert text.code == 4 and "1 unavailable (stored truncated" in text.stdout, text
    assert f"{gone_entry}  unavailable  fetch: OriginalUnavailable" in text.stdout


def _origin_offset(message: Any) -> int:
    return int(dict(message.headers())["fanout.origin.offset"])


def _delete_first_record(topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap()})
    futures = admin.delete_records([TopicPartition(topic, 0, 1)])
    for future in futures.values():
        future.result(timeout=30)


def _count(pg: psycopg.Connection[Any], schema: str, id_: int) -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE id = %s").format(
        sql.Identifier(schema, CUSTOMERS.table)
    )
    row = pg.execute(query, (id_,)).fetchone()
    return int(row[0]) if row else 0
