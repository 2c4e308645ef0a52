"""The benchmark's stream: realistic Debezium records, produced once, and their final rows."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench import env
from tests.support.debezium import (
    ALL_TABLES,
    LogicalEvent,
    Message,
    MessageFactory,
    TableSpec,
    expected_state,
    generate_stream,
)
from tests.support.pipeline import create_topic

PARTITIONS = 6
TABLES: tuple[TableSpec, ...] = ALL_TABLES  # 6 to 30 columns of mixed types


@dataclass
class Stream:
    topic: str
    events: int  # change events (inserts, updates, deletes)
    records: int  # Kafka records: the events plus a tombstone after each delete
    ends: dict[int, int]  # partition -> end offset
    final: dict[str, dict[tuple[Any, ...], dict[str, Any]]]  # table -> key -> newest row
    facts: dict[str, Any] = field(default_factory=dict)


def generate(events: int, keys: int, seed: int) -> list[Message]:
    """``keys`` distinct keys in all, spread evenly over the tables."""
    per_table = max(1, keys // len(TABLES))
    messages = generate_stream(events, n_keys=per_table, tables=TABLES, seed=seed)
    return [_with_filled_before(m) if m.event.kind == "delete" else m for m in messages]


# What Debezium's Postgres connector puts in the NOT NULL non-key columns of a delete's
# before-image under REPLICA IDENTITY DEFAULT. The generator leaves them null, which Kafka
# Connect's JsonConverter rejects ("Invalid null value for required STRING field"), so the peer
# could not read the stream at all.
_REQUIRED_DEFAULTS = {"string": "", "bytes": "AA==", "boolean": False, "double": 0.0}


def _with_filled_before(message: Message) -> Message:
    if message.value is None:
        return message
    record = json.loads(message.value)
    before = record["payload"].get("before")
    fields = next(f for f in record["schema"]["fields"] if f["field"] == "before")["fields"]
    if before is None:
        return message
    for spec in fields:
        if before.get(spec["field"]) is None and not spec.get("optional", False):
            before[spec["field"]] = _REQUIRED_DEFAULTS.get(spec["type"], 0)
    return replace(message, value=json.dumps(record, separators=(",", ":")).encode())


# Column kinds PostgreSQL stores out of line when large (TOAST): an UPDATE that leaves such a
# column alone makes Debezium send its placeholder instead of the value.
TOASTABLE = frozenset({"text", "json", "text[]"})
PLACEHOLDER = "__debezium_unavailable_value"  # Debezium's unavailable.value.placeholder


def with_placeholders(messages: list[Message], fraction: float, seed: int) -> list[Message]:
    """``messages`` with ``fraction`` of the updates (seeded choice) carrying Debezium's
    placeholder in every TOASTable column they left unchanged and that holds a value, as if
    those values were TOASTed. The final state is the same as without placeholders."""
    unchanged = _unchanged_toastable(messages)
    updates = sum(m.event.kind == "update" and m.value is not None for m in messages)
    # drawn among the updates that have such a column, so that ``fraction`` of all carry one
    chance = min(1.0, fraction * updates / max(1, len(unchanged)))
    rng = random.Random(seed)
    return [
        _placeholders(m, unchanged[i]) if i in unchanged and rng.random() < chance else m
        for i, m in enumerate(messages)
    ]


def _unchanged_toastable(messages: list[Message]) -> dict[int, list[str]]:
    """Update index -> the TOASTable columns it carries unchanged (non-key, not NULL)."""
    rows: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] = {}
    found = {}
    for index, message in enumerate(messages):
        event = message.event
        key = (event.table, event.spec.key_tuple(event.key))
        previous = rows.pop(key, None) or {}
        if event.row is None:
            continue
        rows[key] = event.row
        if event.kind != "update" or message.value is None:
            continue
        same = [
            column.name
            for column in event.spec.columns
            if column.kind in TOASTABLE
            and column.name not in event.spec.primary_key
            and event.row.get(column.name) is not None
            and previous.get(column.name) == event.row[column.name]
        ]
        if same:
            found[index] = same
    return found


def _placeholders(message: Message, columns: list[str]) -> Message:
    record = json.loads(message.value or b"")
    after = record["payload"]["after"]
    for name in columns:
        after[name] = [PLACEHOLDER] if isinstance(after[name], list) else PLACEHOLDER
    return replace(message, value=json.dumps(record, separators=(",", ":")).encode())


def placeholder_share(messages: list[Message]) -> float:
    """The share of update records that carry the placeholder."""
    updates = [m for m in messages if m.value is not None and m.event.kind == "update"]
    marked = sum(PLACEHOLDER.encode() in (m.value or b"") for m in updates)
    return round(marked / max(1, len(updates)), 4)


def snapshot_of(messages: list[Message]) -> list[Message]:
    """The stream's final rows as a Debezium initial snapshot: one ``op: r`` record per live key,
    same tables, schema and key encoding as the stream (each at its key's newest position)."""
    newest: dict[tuple[str, tuple[Any, ...]], LogicalEvent] = {}
    for message in messages:
        event = message.event
        if message.value is not None:
            newest[(event.table, event.spec.key_tuple(event.key))] = event
    factory = MessageFactory()
    return [
        m
        for event in newest.values()
        if event.row is not None
        for m in factory.messages(replace(event, kind="read"))
    ]


def describe(messages: list[Message]) -> dict[str, Any]:
    values = [len(m.value) for m in messages if m.value is not None]
    kinds = Counter(m.event.kind for m in messages if m.value is not None)
    return {
        "records": len(messages),
        "events": len(values),
        "mix": {kind: round(count / len(values), 3) for kind, count in sorted(kinds.items())},
        "avg_value_bytes": round(sum(values) / len(values)),
        "avg_payload_bytes": round(_avg_payload(messages)),
        "tables": {spec.table: len(spec.columns) for spec in TABLES},
    }


def _avg_payload(messages: list[Message]) -> float:
    """Value size without the inline Connect schema (what ``schemas.enable=false`` would send)."""
    sample = [m for m in messages[:2000] if m.value is not None]
    total = 0
    for message in sample:
        text = message.value.decode() if message.value else ""
        start = text.find('"payload":')
        total += len(text) - start if start >= 0 else len(text)
    return total / max(1, len(sample))


def produce_once(topic: str, messages: list[Message]) -> Stream:
    create_topic(topic, partitions=PARTITIONS)
    started = time.monotonic()
    _produce_now(topic, messages)
    produce_s = time.monotonic() - started
    facts = describe(messages)
    facts["produce_s"] = round(produce_s, 2)
    final = expected_state(messages)
    return Stream(
        topic=topic,
        events=facts["events"],
        records=facts["records"],
        ends=end_offsets(topic),
        final=final,
        facts=facts,
    )


def _produce_now(topic: str, messages: list[Message]) -> None:
    """Produce in order with the current time as the Kafka timestamp.

    Not the generator's own timestamps (2024): the broker's time-based retention (7 days)
    deletes segments whose newest timestamp is older than that at its next check, minutes into
    the run, and every later consumer then finds nothing to read.
    """
    producer = Producer(
        {
            "bootstrap.servers": env.bootstrap(),
            "partitioner": "murmur2_random",  # as Kafka Connect keys records
            "linger.ms": 50,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_097_151,
            "enable.idempotence": True,
        }
    )
    for message in messages:
        while True:
            try:
                producer.produce(topic, key=message.key, value=message.value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError(f"not every record was delivered to {topic}")


def end_offsets(topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": env.bootstrap(), "group.id": "bench-probe"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def spec_of(table: str) -> TableSpec:
    return next(spec for spec in TABLES if spec.name == table)
