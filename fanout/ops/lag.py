"""``fanout lag``: how far each sink's consumer group is behind, per partition.

The numbers are those of ``kafka-consumer-groups --describe``: committed offset, log-end offset
(high watermark) and their difference. Two additions: where nothing is committed yet the lag
counts from the log start (fanout's consumers start at the earliest offset), and the time of
the oldest unprocessed event, read from the record at the committed offset. Read-only: it
joins no group and commits nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from fanout.errors import ConfigError
from fanout.ops.backfill import backfill_groups, is_backfill_group, parse_mark
from fanout.ops.offsets import TP, Committed, GroupInfo, KafkaOffsets, iso_ms, peek
from fanout.runtime.kafka import group_id
from fanout.settings import SINK_NAMES, Settings


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing here yet
    end: int
    lag: int
    oldest_unprocessed_ms: int | None  # timestamp of the record at the committed offset
    consumer: str | None  # client-id@host of the member that owns the partition
    bound: int | None = None  # backfill groups: the end offset the backfill stops at

    def as_json(self) -> dict[str, object]:
        row: dict[str, object] = {
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "end": self.end,
            "lag": self.lag,
            "oldest_unprocessed": iso_ms(self.oldest_unprocessed_ms),
            "oldest_unprocessed_ms": self.oldest_unprocessed_ms,
            "consumer": self.consumer,
        }
        if self.bound is not None:
            row["bound"] = self.bound
        return row


@dataclass(frozen=True)
class GroupLag:
    sink: str
    group: str
    kind: str  # "live" | "backfill"
    state: str
    members: int
    partitions: list[PartitionLag] = field(default_factory=list)

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def oldest_unprocessed_ms(self) -> int | None:
        stamps = [p.oldest_unprocessed_ms for p in self.partitions if p.oldest_unprocessed_ms]
        return min(stamps) if stamps else None

    def as_json(self) -> dict[str, object]:
        return {
            "sink": self.sink,
            "group": self.group,
            "kind": self.kind,
            "state": self.state,
            "members": self.members,
            "total_lag": self.total_lag,
            "oldest_unprocessed": iso_ms(self.oldest_unprocessed_ms),
            "oldest_unprocessed_ms": self.oldest_unprocessed_ms,
            "partitions": [p.as_json() for p in self.partitions],
        }


def sinks_to_report(settings: Settings, sink: str | None, offsets: KafkaOffsets) -> list[str]:
    """``--sink``, else the enabled sinks, else every sink whose live group exists."""
    if sink is not None:
        return [sink]
    enabled = settings.sinks.enabled()
    if enabled:
        return enabled
    existing = set(offsets.groups())
    found = [name for name in SINK_NAMES if group_id(settings.kafka, name) in existing]
    if not found:
        raise ConfigError("sinks: no sink is enabled and no sink group exists; pass --sink")
    return found


def measure(
    settings: Settings,
    offsets: KafkaOffsets,
    sinks: Sequence[str],
    with_backfills: bool = False,
) -> list[GroupLag]:
    topics = offsets.topics(settings.kafka.subscription())
    report: list[GroupLag] = []
    for sink in sinks:
        report.append(
            measure_group(settings, offsets, sink, group_id(settings.kafka, sink), topics)
        )
        if with_backfills:
            for group in backfill_groups(settings.kafka, sink, offsets.groups()):
                report.append(measure_group(settings, offsets, sink, group, []))
    return report


def measure_group(
    settings: Settings, offsets: KafkaOffsets, sink: str, group: str, topics: Sequence[str]
) -> GroupLag:
    info = offsets.describe(group)
    committed = offsets.committed(group)
    partitions = sorted(set(offsets.partitions(topics)) | set(committed))
    ends = offsets.ends(partitions)
    starts = offsets.starts(tp for tp in partitions if tp not in committed)
    positions = {tp: committed[tp].offset if tp in committed else starts[tp] for tp in partitions}
    behind = {tp: pos for tp, pos in positions.items() if ends[tp] > pos}
    oldest = peek(settings.kafka, behind, timeout_s=offsets.timeout_s)
    rows = [
        _row(tp, committed.get(tp), positions[tp], ends[tp], oldest.get(tp), info)
        for tp in partitions
    ]
    kind = "backfill" if is_backfill_group(group) else "live"
    return GroupLag(sink, group, kind, info.state, len(info.members), rows)


def _row(
    tp: TP,
    committed: Committed | None,
    position: int,
    end: int,
    oldest: object,
    info: GroupInfo,
) -> PartitionLag:
    owner = info.owner_of(tp)
    mark = parse_mark(committed.metadata) if committed else None
    return PartitionLag(
        topic=tp[0],
        partition=tp[1],
        committed=None if committed is None else committed.offset,
        end=end,
        lag=max(0, end - position),
        oldest_unprocessed_ms=getattr(oldest, "timestamp_ms", None),
        consumer=None if owner is None else f"{owner.client_id}@{owner.host}",
        bound=None if mark is None else mark.end,
    )


# -- text output -------------------------------------------------------------------------------

_COLUMNS = ("TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "OLDEST UNPROCESSED", "CONSUMER")


def render_text(report: Sequence[GroupLag], now_s: float | None = None) -> str:
    blocks = [_render_group(group, time.time() if now_s is None else now_s) for group in report]
    return "\n\n".join(blocks)


def _render_group(group: GroupLag, now_s: float) -> str:
    oldest = group.oldest_unprocessed_ms
    age = "" if oldest is None else f" ({_age(now_s - oldest / 1000)} ago)"
    head = (
        f"{group.group}  sink={group.sink} kind={group.kind} state={group.state} "
        f"members={group.members} total_lag={group.total_lag} "
        f"oldest_unprocessed={iso_ms(oldest) or '-'}{age}"
    )
    rows = [_COLUMNS] + [_cells(p) for p in group.partitions]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join([head, *lines])


def _cells(p: PartitionLag) -> tuple[str, ...]:
    return (
        p.topic,
        str(p.partition),
        "-" if p.committed is None else str(p.committed),
        str(p.end),
        str(p.lag),
        iso_ms(p.oldest_unprocessed_ms) or "-",
        p.consumer or "-",
    )


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
