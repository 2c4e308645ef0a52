"""Waiting for a sink to catch up before differences are reported, so changes still in flight
(committed in the source, not yet applied by the sink) are not taken for differences.

The source position is read when verify starts. Debezium publishes a committed change within
its poll interval, so by the end of the first pass every change committed before the start is
in Kafka; the sink has applied them once its consumer group has committed the end offsets read
then (lag 0). Only then are the differing keys compared again, and only what still differs is
reported."""

from __future__ import annotations

import time

from fanout.ops.offsets import KafkaOffsets
from fanout.runtime.kafka import group_id
from fanout.settings import Settings

POLL_S = 0.5


def wait_caught_up(settings: Settings, sink: str, timeout_s: float) -> bool:
    """Whether the sink's group reached the end offsets of its topics (read now) within
    ``timeout_s``."""
    offsets = KafkaOffsets(settings.kafka)
    topics = offsets.topics(settings.kafka.subscription())
    ends = offsets.ends(offsets.partitions(topics))
    group = group_id(settings.kafka, sink)
    deadline = time.monotonic() + timeout_s
    while True:
        committed = offsets.committed(group)
        behind = [tp for tp, end in ends.items() if end > 0 and _offset(committed.get(tp)) < end]
        if not behind:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)  # polling interval of a deadline-bounded wait


def _offset(committed: object) -> int:
    return int(getattr(committed, "offset", -1))
