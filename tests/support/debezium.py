"""Realistic Debezium messages for tests, the demo and the benchmark, and the oracle to check them.

* ``TableSpec`` / ``ColumnSpec``: a source table; ``CUSTOMERS``, ``ORDERS``, ``ORDER_LINES``
  (composite key) and the wide ``PRODUCTS`` are ready-made.
* ``LogicalEvent``: one change at the source (table, key, row, position).
* ``MessageFactory(MessageFormat(...))``: turns a logical event into the Kafka messages Debezium
  would write for it (Postgres or MySQL connector, ``schemas.enable`` true or false, full envelope
  or ``ExtractNewRecordState``-flattened, tombstones after deletes).
* ``generate_stream(...)``: a deterministic, source-ordered stream of messages.
* ``expected_state(...)``: the oracle — the newest row per key, deletes and truncates applied,
  in the Python values the decoder produces.
* ``produce_stream(topic, messages)``: writes messages to Kafka, partitioned like Kafka Connect.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fanout.events import Origin
from tests.support._debezium_columns import ColumnSpec
from tests.support._debezium_source import MessageFormat, SourcePosition, encode_key, encode_value
from tests.support._debezium_tables import (
    ALL_TABLES,
    CUSTOMERS,
    DEFAULT_TABLES,
    ORDER_LINES,
    ORDERS,
    PRODUCTS,
    Kind,
    LogicalEvent,
    TableSpec,
)

__all__ = [
    "ALL_TABLES",
    "CUSTOMERS",
    "DEFAULT_TABLES",
    "ORDERS",
    "ORDER_LINES",
    "PRODUCTS",
    "ColumnSpec",
    "LogicalEvent",
    "Message",
    "MessageFactory",
    "MessageFormat",
    "SourcePosition",
    "TableSpec",
    "expected_state",
    "generate_events",
    "generate_stream",
    "produce_stream",
]


@dataclass(frozen=True)
class Message:
    """One Kafka record as Debezium writes it, with the change it carries."""

    key: bytes | None
    value: bytes | None  # None: a tombstone
    event: LogicalEvent
    version: int  # the version the decoder derives (version source "auto")
    timestamp_ms: int  # the Kafka record timestamp to produce with

    @property
    def is_tombstone(self) -> bool:
        return self.value is None

    def origin(
        self, topic: str = "dbserver1.inventory", partition: int = 0, offset: int = 0
    ) -> Origin:
        return Origin(topic, partition, offset, self.timestamp_ms, self.key, self.value)


@dataclass
class MessageFactory:
    """Serializes logical events the way one configured Debezium connector would."""

    format: MessageFormat = field(default_factory=MessageFormat)
    _schema_cache: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    def messages(self, event: LogicalEvent) -> list[Message]:
        """The records for ``event``: a delete is followed by a tombstone when configured."""
        fmt = self.format
        key = None if event.kind == "truncate" else self.key_bytes(event)
        value = encode_value(fmt, event, self._schema_cache)
        messages = []
        if value is not None:
            messages.append(self._message(key, value.encode(), event))
        if event.kind == "delete" and fmt.emits_tombstone:
            messages.append(self._message(key, None, event))
        return messages

    def key_bytes(self, event: LogicalEvent) -> bytes:
        return encode_key(self.format, event.spec, event.key, self._schema_cache).encode()

    def _message(self, key: bytes | None, value: bytes | None, event: LogicalEvent) -> Message:
        ts_ms = event.position.ts_ms
        tombstone_delete = value is None and not self.format.deletes_in_band
        version = ts_ms if tombstone_delete else self.format.version_of(event.position)
        return Message(key, value, event, version, ts_ms)


class _KeyPool:
    """A set of key indexes with O(1) add, remove and seeded random choice."""

    def __init__(self) -> None:
        self._items: list[int] = []
        self._slots: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, index: int) -> bool:
        return index in self._slots

    def add(self, index: int) -> None:
        if index not in self._slots:
            self._slots[index] = len(self._items)
            self._items.append(index)

    def remove(self, index: int) -> None:
        slot = self._slots.pop(index)
        last = self._items.pop()
        if last != index:
            self._items[slot] = last
            self._slots[last] = slot

    def choice(self, rng: random.Random) -> int:
        return self._items[rng.randrange(len(self._items))]

    def clear(self) -> None:
        self._items.clear()
        self._slots.clear()


@dataclass
class _TableKeys:
    """Which keys of one table are live, and which were deleted (candidates for re-insert)."""

    n_keys: int
    live: _KeyPool = field(default_factory=_KeyPool)
    deleted: _KeyPool = field(default_factory=_KeyPool)
    rows: dict[int, dict[str, Any] | None] = field(default_factory=dict)

    def insert(self, rng: random.Random) -> int:
        if len(self.deleted) and rng.random() < 0.3:
            index = self.deleted.choice(rng)
        else:
            index = self._unused(rng)
        if index in self.deleted:
            self.deleted.remove(index)
        self.live.add(index)
        return index

    def delete(self, rng: random.Random) -> int:
        index = self.live.choice(rng)
        self.live.remove(index)
        self.deleted.add(index)
        return index

    def truncate(self) -> None:
        self.live.clear()
        self.deleted.clear()

    def _unused(self, rng: random.Random) -> int:
        # Random probing needs 1/(1 - live share) tries on average; only a nearly full key
        # space is worth the O(n_keys) scan.
        if len(self.live) * 100 > self.n_keys * 97:
            return rng.choice([i for i in range(self.n_keys) if i not in self.live])
        while True:
            index = rng.randrange(self.n_keys)
            if index not in self.live:
                return index


def generate_events(
    n_events: int,
    n_keys: int = 1000,
    tables: Sequence[TableSpec] = DEFAULT_TABLES,
    seed: int = 0,
    mix: tuple[float, float, float] = (0.2, 0.7, 0.1),
    truncate_rate: float = 0.0,
) -> Iterator[LogicalEvent]:
    """``n_events`` changes in source order over ``n_keys`` keys per table.

    ``mix`` is the insert/update/delete share. Updates and deletes only touch live keys and
    inserts only keys that are not live (deleted keys come back now and then); when the wanted
    op is not possible the other kind is used. Positions (LSN, binlog, ``ts_ms``) strictly
    increase. ``truncate_rate`` is the share of TRUNCATE events (none by default).
    """
    rng = random.Random(seed)
    keys = {spec.name: _TableKeys(n_keys) for spec in tables}
    position = SourcePosition.start()
    for _ in range(n_events):
        spec = rng.choice(tables)
        position = position.advance(rng)
        if truncate_rate and rng.random() < truncate_rate:
            keys[spec.name].truncate()
            yield LogicalEvent(spec, "truncate", {}, None, position)
        else:
            yield _next_change(rng, spec, keys[spec.name], mix, position)


def _next_change(
    rng: random.Random,
    spec: TableSpec,
    keys: _TableKeys,
    mix: tuple[float, float, float],
    position: SourcePosition,
) -> LogicalEvent:
    has_free = len(keys.live) < keys.n_keys
    kind = _pick_kind(rng, mix, has_live=len(keys.live) > 0, has_free=has_free)
    if kind == "insert":
        index = keys.insert(rng)
    elif kind == "delete":
        index = keys.delete(rng)
    else:
        index = keys.live.choice(rng)
    key = spec.key_for(index)
    row: dict[str, Any] | None = None
    if kind == "insert":
        row = spec.random_row(rng, key)
    elif kind == "update":
        row = spec.changed_row(rng, keys.rows[index])
    keys.rows[index] = row
    return LogicalEvent(spec, kind, key, row, position)


def _pick_kind(
    rng: random.Random, mix: tuple[float, float, float], has_live: bool, has_free: bool
) -> Kind:
    draw = rng.random() * sum(mix)
    kind: Kind = "insert" if draw < mix[0] else "update" if draw < mix[0] + mix[1] else "delete"
    if kind == "insert" and not has_free:
        return "update"
    if kind != "insert" and not has_live:
        return "insert"
    return kind


def generate_stream(
    n_events: int,
    n_keys: int = 1000,
    tables: Sequence[TableSpec] = DEFAULT_TABLES,
    seed: int = 0,
    mix: tuple[float, float, float] = (0.2, 0.7, 0.1),
    fmt: MessageFormat | None = None,
    truncate_rate: float = 0.0,
) -> Iterator[Message]:
    """The Kafka records for ``generate_events(...)``, deterministic for a seed."""
    factory = MessageFactory(fmt or MessageFormat())
    for event in generate_events(n_events, n_keys, tables, seed, mix, truncate_rate):
        yield from factory.messages(event)


def expected_state(
    events: Iterable[Message | LogicalEvent], *, schemas: bool = True
) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Newest row per key for each table (deleted keys absent, truncate clears the table).

    Values are what the decoder produces: Python types with a schema, the JSON encoding
    (base64 decimals, epoch numbers, JSON text) with ``schemas=False``.
    """
    state: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for item in events:
        event = item.event if isinstance(item, Message) else item
        rows = state.setdefault(event.table, {})
        if event.kind == "truncate":
            rows.clear()
        elif event.row is None:
            rows.pop(event.spec.key_tuple(event.key), None)
        else:
            rows[event.spec.key_tuple(event.key)] = _decoded_row(event, schemas)
    return state


def _decoded_row(event: LogicalEvent, schemas: bool) -> dict[str, Any]:
    assert event.row is not None
    if schemas:
        return _with_parsed_json(event)
    return event.spec.encode_row(event.row)


def _with_parsed_json(event: LogicalEvent) -> dict[str, Any]:
    assert event.row is not None
    row = dict(event.row)
    for column in event.spec.columns:
        if column.kind == "json" and row[column.name] is not None:
            row[column.name] = json.loads(json.dumps(row[column.name]))
    return row


def produce_stream(
    topic: str, messages: Iterable[Message], bootstrap_servers: str | None = None
) -> int:
    """Produce ``messages`` in order; keyed like Kafka Connect (murmur2 on the key bytes)."""
    from confluent_kafka import Producer

    servers = bootstrap_servers or os.environ.get(
        "FANOUT_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"
    )
    producer = Producer(
        {
            "bootstrap.servers": servers,
            "partitioner": "murmur2_random",
            "linger.ms": 50,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_097_151,
            "enable.idempotence": True,
        }
    )
    count = 0
    for message in messages:
        _produce_one(producer, topic, message)
        count += 1
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} messages not delivered to {topic}")
    return count


def _produce_one(producer: Any, topic: str, message: Message) -> None:
    while True:
        try:
            producer.produce(
                topic, key=message.key, value=message.value, timestamp=message.timestamp_ms
            )
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.05)
