"""`fanout backfill` end to end: real Kafka, real PostgreSQL, the command run as a subprocess."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Producer

from fanout.ops.backfill import parse_mark
from fanout.ops.offsets import KafkaOffsets
from fanout.settings import KafkaSettings
from tests.integration.ops_support import fanout, start_fanout, write_config
from tests.integration.runtime_support import (
    Pipeline,
    all_tables_state,
    diff,
    oracle,
    stream,
)
from tests.support.debezium import CUSTOMERS, Message, produce_stream
from tests.support.pipeline import bootstrap, wait_caught_up, wait_for


def into_schema(line: Pipeline, schema: str, **batch: int) -> Path:
    """A config for the same topics and groups whose PostgreSQL sink writes to ``schema``."""
    config = line.config(**batch)
    config["sinks"]["postgres"]["schema"] = schema
    return write_config(line.workdir, config)


def new_schema() -> str:
    return f"bf_{uuid.uuid4().hex[:8]}"


def offsets() -> KafkaOffsets:
    return KafkaOffsets(KafkaSettings(bootstrap_servers=bootstrap()))


def backfill_groups(line: Pipeline) -> list[str]:
    return [g for g in offsets().groups() if g.startswith(f"{line.group}-backfill-")]


def test_backfill_into_an_empty_schema_equals_the_live_sink(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    messages = stream(4000)
    pipeline.drain(messages, workers)

    schema = new_schema()
    result = fanout(into_schema(pipeline, schema), "backfill", "--sink", "postgres", "--json")

    assert result.code == 0, result
    summary = result.json()
    assert summary["status"] == "complete" and summary["resumed"] is False
    assert summary["done"] == summary["total"] == len(messages)
    assert summary["group"] == f"{pipeline.group}-backfill-{summary['id']}"
    live, backfilled = all_tables_state(pg, pipeline.schema), all_tables_state(pg, schema)
    assert backfilled == live, diff(backfilled, live)
    assert live == oracle(messages), diff(live, oracle(messages))
    assert backfill_groups(pipeline) == []  # a finished backfill deletes its group
    assert "record(s) up to the captured ends" in result.stderr
    assert f"{len(messages):,}/{len(messages):,} (100.0%)" in result.stderr  # plain lines


def test_backfill_beside_the_live_consumer_while_events_arrive_converges(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any], tmp_path: Path
) -> None:
    messages = stream(8000, n_keys=150, seed=7)
    first, second = messages[:4000], messages[4000:]
    produce_stream(pipeline.topic, first)
    workers.append(pipeline.worker())
    wait_caught_up(pipeline.group, [pipeline.topic])
    # The backfill writes into the live sink's own tables, in small batches ...
    config = into_schema(pipeline, pipeline.schema)
    backfill = start_fanout(
        config, tmp_path / "backfill.log", "backfill", "--sink", "postgres", "--batch-size", "50"
    )
    # ... while new events, deletes and re-inserts among them, keep arriving.
    produce_stream(pipeline.topic, second)
    assert backfill.wait(timeout=240) == 0, (tmp_path / "backfill.log").read_text()[-3000:]
    wait_caught_up(pipeline.group, [pipeline.topic])
    actual, expected = all_tables_state(pg, pipeline.schema), oracle(messages)
    assert actual == expected, diff(actual, expected)


def committed_progress(group: str) -> int:
    marks = {tp: parse_mark(c.metadata) for tp, c in offsets().committed(group).items()}
    committed = offsets().committed(group)
    return sum(committed[tp].offset - mark.start for tp, mark in marks.items() if mark is not None)


def test_a_killed_backfill_resumes_to_the_same_bound_and_state(
    pipeline: Pipeline, pg: psycopg.Connection[Any], tmp_path: Path
) -> None:
    messages = stream(12000, n_keys=300, seed=5)
    produce_stream(pipeline.topic, messages)
    schema = new_schema()
    config = into_schema(pipeline, schema)
    args = ("backfill", "--sink", "postgres", "--id", "kill-me", "--batch-size", "40")
    group = f"{pipeline.group}-backfill-kill-me"

    first = start_fanout(config, tmp_path / "first.log", *args)
    try:
        wait_for(lambda: 0 < committed_progress(group) < len(messages) // 2, 120, "mid-way")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    marks = {tp: parse_mark(c.metadata) for tp, c in offsets().committed(group).items()}
    assert all(marks.values())
    assert sum(m.end - m.start for m in marks.values() if m) == len(messages)

    # More events arrive before the re-run; it still stops at the bound it captured first.
    produce_stream(pipeline.topic, stream(600, n_keys=300, seed=99))
    resumed = fanout(config, *args, "--json")

    assert resumed.code == 0, resumed
    summary = resumed.json()
    assert summary["resumed"] is True and summary["status"] == "complete"
    assert summary["total"] == len(messages)
    assert "resuming" in resumed.stderr


def test_killed_backfill_resumed_ends_with_the_uninterrupted_state(
    pipeline: Pipeline, pg: psycopg.Connection[Any], tmp_path: Path
) -> None:
    messages = stream(12000, n_keys=300, seed=6)
    produce_stream(pipeline.topic, messages)
    schema = new_schema()
    config = into_schema(pipeline, schema)
    args = ("backfill", "--sink", "postgres", "--batch-size", "40")
    group_prefix = f"{pipeline.group}-backfill-"

    first = start_fanout(config, tmp_path / "first.log", *args)
    try:
        wait_for(
            lambda: (
                [g for g in offsets().groups() if g.startswith(group_prefix)]
                and 0 < committed_progress(backfill_groups(pipeline)[0]) < len(messages) // 2
            ),
            120,
            "the backfill to be mid-way",
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert len(backfill_groups(pipeline)) == 1  # left behind by the kill, to resume from

    resumed = fanout(config, *args, "--json")  # same arguments: same default id

    assert resumed.code == 0, resumed
    assert resumed.json()["resumed"] is True
    actual, expected = all_tables_state(pg, schema), oracle(messages)
    assert actual == expected, diff(actual, expected)
    assert backfill_groups(pipeline) == []


def test_from_a_time_takes_only_later_events_and_tables_narrow_it(
    pipeline: Pipeline, pg: psycopg.Connection[Any]
) -> None:
    messages = stream(3000, seed=8)
    older, newer = messages[:1500], messages[1500:]
    produce_stream(pipeline.topic, older)
    cut = max(m.timestamp_ms for m in older) + 1
    produce_stream(pipeline.topic, [_at(m, cut + i) for i, m in enumerate(newer)])
    schema = new_schema()
    from_time = _iso(cut)

    result = fanout(
        into_schema(pipeline, schema),
        "backfill",
        "--sink",
        "postgres",
        "--from",
        from_time,
        "--tables",
        "*.customers",
        "--json",
    )

    assert result.code == 0, result
    assert result.json()["total"] == len(newer)
    actual = all_tables_state(pg, schema)
    expected = oracle(newer)
    assert actual[CUSTOMERS.name] == expected[CUSTOMERS.name], diff(actual, expected)
    assert expected[CUSTOMERS.name]
    assert {t: rows for t, rows in actual.items() if t != CUSTOMERS.name} == {
        "inventory.orders": {},
        "inventory.order_lines": {},
    }


def test_a_transaction_marker_at_the_end_does_not_keep_the_backfill_waiting(
    pipeline: Pipeline, pg: psycopg.Connection[Any]
) -> None:
    """With exactly-once Debezium the last offset of a partition is a commit marker, which no
    consumer ever receives: the backfill must see there is nothing left below its end."""
    messages = stream(500, seed=9)
    producer = Producer(
        {"bootstrap.servers": bootstrap(), "transactional.id": f"tx-{uuid.uuid4().hex[:8]}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for message in messages:
        producer.produce(pipeline.topic, key=message.key, value=message.value, partition=0)
    producer.commit_transaction(30)
    schema = new_schema()

    result = fanout(
        into_schema(pipeline, schema), "backfill", "--sink", "postgres", "--json", timeout_s=120
    )

    assert result.code == 0, result
    assert result.json()["total"] == len(messages) + 1  # the marker is inside the bound
    actual, expected = all_tables_state(pg, schema), oracle(messages)
    assert actual == expected, diff(actual, expected)


def _at(message: Message, timestamp_ms: int) -> Message:
    from dataclasses import replace

    return replace(message, timestamp_ms=timestamp_ms)


def _iso(ms: int) -> str:
    from fanout.ops.offsets import iso_ms

    return iso_ms(ms) or ""
