"""Kafka messages as the worker needs them: positions, origins, offsets to commit."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Message, TopicPartition

from fanout.events import Origin


def position(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a data message (only error events lack them)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def origin_of(message: Message) -> Origin:
    topic, partition, offset = position(message)
    kind, timestamp = message.timestamp()
    raw = message.headers() or []
    headers = raw.items() if isinstance(raw, dict) else raw
    return Origin(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp if kind != 0 else None,
        key=message.key(),
        value=message.value(),
        headers=tuple((str(key), _as_bytes(value)) for key, value in headers),
    )


def _as_bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value


def next_offsets(messages: list[Message], exclude: set[tuple[str, int]]) -> list[TopicPartition]:
    highest: dict[tuple[str, int], int] = {}
    for message in messages:
        topic, partition, offset = position(message)
        if (topic, partition) not in exclude:
            highest[(topic, partition)] = max(highest.get((topic, partition), -1), offset)
    return [TopicPartition(topic, part, offset + 1) for (topic, part), offset in highest.items()]


def with_metadata(
    offsets: list[TopicPartition], metadata: Callable[[str, int], str | None]
) -> list[TopicPartition]:
    return [
        TopicPartition(
            tp.topic, tp.partition, tp.offset, metadata=metadata(tp.topic, tp.partition) or ""
        )
        for tp in offsets
    ]


def describe(partitions: list[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions]
