"""Kafka messages as the worker sees them: origins and the offsets it commits."""

from confluent_kafka import Message, TopicPartition

from fanout.events import Origin
from fanout.runtime.messages import next_offsets, origin_of


def test_an_origin_carries_position_timestamp_key_value_and_headers_as_bytes() -> None:
    message = Message(
        topic="t",
        partition=2,
        offset=7,
        key=b"k",
        value=b"v",
        timestamp=(1, 1700000000000),
        headers=[("fanout.attempts", b"2"), ("text", "é"), ("empty", None)],
    )
    assert origin_of(message) == Origin(
        "t",
        2,
        7,
        1700000000000,
        b"k",
        b"v",
        (("fanout.attempts", b"2"), ("text", "é".encode()), ("empty", b"")),
    )


def test_an_origin_without_headers_or_timestamp_has_none() -> None:
    origin = origin_of(Message(topic="t", partition=0, offset=0, key=None, value=None))
    assert (origin.timestamp_ms, origin.key, origin.value, origin.headers) == (None, None, None, ())


def test_offsets_to_commit_are_past_the_highest_of_each_partition_left_of_revoked_ones() -> None:
    messages = [
        Message(topic="t", partition=p, offset=o) for p, o in [(0, 4), (1, 9), (0, 5), (2, 1)]
    ]
    offsets = next_offsets(messages, exclude={("t", 2)})
    assert [(tp.topic, tp.partition, tp.offset) for tp in offsets] == [("t", 0, 6), ("t", 1, 10)]
    assert all(isinstance(tp, TopicPartition) for tp in offsets)
