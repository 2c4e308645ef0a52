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
    """The record as the decoder and the DLQ see it (runs once per record: kept lean)."""
    kind, timestamp = message.timestamp()
    headers = message.headers()
    return Origin(
        message.topic(),  # type: ignore[arg-type]  # set on every data message
        message.partition(),  # type: ignore[arg-type]
        message.offset(),  # type: ignore[arg-type]
        timestamp if kind else None,
        message.key(),
        message.value(),
        _header_pairs(headers) if headers else (),
    )


def _header_pairs(
    headers: list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None],
) -> tuple[tuple[str, bytes], ...]:
    pairs = headers.items() if isinstance(headers, dict) else headers
    return tuple((str(key), _as_bytes(value)) for key, value in pairs)


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
