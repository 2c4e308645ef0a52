"""Where consumer groups stand and where topics end, and ``fanout offsets reset``.

Every query goes through the AdminClient (ListOffsets, OffsetFetch, DescribeGroups,
AlterConsumerGroupOffsets), the requests Kafka's own ``kafka-consumer-groups`` makes, so the
numbers agree with that tool: an end offset is the high watermark read with ``read_uncommitted``
isolation unless ``committed_only`` asks for the last stable offset (what a ``read_committed``
consumer such as fanout's can actually reach).

Reset safety: a reset rewrites where a sink's consumer group continues; while the group has
members their next commit would overwrite it (and Kafka refuses anyway). :func:`apply_reset`
checks the group first and raises :class:`RefusedError` naming the members; a member that joins
between the check and the write makes the broker refuse, which maps onto the same error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

# Defined here, re-exported by confluent_kafka.admin without saying so (mypy strict wants it said).
from confluent_kafka.admin._group import ConsumerGroupDescription
from confluent_kafka.admin._listoffsets import OffsetSpec

from fanout.errors import ConfigError, FanoutError
from fanout.runtime.kafka import make_admin, make_consumer
from fanout.settings import KafkaSettings

TP = tuple[str, int]
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_GROUP_BUSY = {KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS}


class RefusedError(FanoutError):
    """An operation that is unsafe right now (e.g. a reset while the group has members)."""


def parse_time(text: str, now_s: float | None = None) -> int:
    """``2025-01-31T02:00:00Z`` / ``2025-01-31`` (no zone = UTC) or ``90s|15m|2h|7d`` ago -> ms."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        seconds = int(relative.group(1)) * _UNIT_S[relative.group(2)]
        return int(((time.time() if now_s is None else now_s) - seconds) * 1000)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a time: use ISO 8601 (2025-01-31T02:00:00Z) or 90s/15m/2h/7d ago"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso_ms(ms: int | None) -> str | None:
    """Epoch milliseconds as ``2025-01-31T02:00:00.123Z`` (None stays None)."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Member:
    client_id: str
    host: str
    member_id: str
    partitions: tuple[TP, ...]


@dataclass(frozen=True)
class GroupInfo:
    group: str
    state: str  # STABLE, EMPTY, DEAD (no such group), PREPARING_REBALANCING, ...
    members: tuple[Member, ...]

    @property
    def active(self) -> bool:
        return bool(self.members)

    def owner_of(self, tp: TP) -> Member | None:
        return next((m for m in self.members if tp in m.partitions), None)


@dataclass(frozen=True)
class Committed:
    offset: int
    metadata: str


class KafkaOffsets:
    """Offset queries of one cluster; every call blocks at most ``timeout_s``."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = 30.0) -> None:
        self.admin: AdminClient = make_admin(kafka)
        self.timeout_s = timeout_s

    def topics(self, subscription: Sequence[str]) -> list[str]:
        """Topic names a subscription means now (``^regex`` entries matched against metadata)."""
        existing = set(self.admin.list_topics(timeout=self.timeout_s).topics)
        chosen: set[str] = set()
        for entry in subscription:
            if entry.startswith("^"):
                pattern = re.compile(entry)
                chosen.update(t for t in existing if pattern.match(t) and not t.startswith("__"))
            elif entry in existing:
                chosen.add(entry)
        return sorted(chosen)

    def partitions(self, topics: Iterable[str]) -> list[TP]:
        metadata = self.admin.list_topics(timeout=self.timeout_s).topics
        return sorted(
            (topic, partition)
            for topic in topics
            if topic in metadata
            for partition in metadata[topic].partitions
        )

    def ends(self, partitions: Iterable[TP], committed_only: bool = False) -> dict[TP, int]:
        isolation = IsolationLevel.READ_COMMITTED if committed_only else None
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        return self._list_offsets(partitions, latest, isolation)

    def starts(self, partitions: Iterable[TP]) -> dict[TP, int]:
        earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        return self._list_offsets(partitions, earliest)

    def at_time(self, partitions: Iterable[TP], ts_ms: int) -> dict[TP, int]:
        """First offset whose timestamp is >= ``ts_ms``; the end where there is none."""
        wanted = list(partitions)
        found = self._list_offsets(wanted, OffsetSpec.for_timestamp(ts_ms))
        missing = [tp for tp, offset in found.items() if offset < 0]
        if missing:
            found.update(self.ends(missing))
        return found

    def committed(self, group: str) -> dict[TP, Committed]:
        request = [ConsumerGroupTopicPartitions(group)]
        try:
            result = self.admin.list_consumer_group_offsets(request)[group].result(self.timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
                return {}
            raise
        return {
            (tp.topic, tp.partition): Committed(tp.offset, tp.metadata or "")
            for tp in result.topic_partitions or []
            if tp.offset >= 0
        }

    def describe(self, group: str) -> GroupInfo:
        try:
            future = self.admin.describe_consumer_groups([group])[group]
            description: ConsumerGroupDescription = future.result(self.timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
                return GroupInfo(group, "DEAD", ())
            raise
        return _group_info(description)

    def groups(self) -> list[str]:
        result = self.admin.list_consumer_groups().result(self.timeout_s)
        return sorted(listing.group_id for listing in result.valid)

    def alter(
        self, group: str, offsets: dict[TP, int], metadata: dict[TP, str] | None = None
    ) -> None:
        notes = metadata or {}
        partitions = [
            TopicPartition(topic, partition, offset, metadata=notes.get((topic, partition), ""))
            for (topic, partition), offset in sorted(offsets.items())
        ]
        request = [ConsumerGroupTopicPartitions(group, partitions)]
        try:
            result = self.admin.alter_consumer_group_offsets(request)[group].result(self.timeout_s)
        except KafkaException as exc:
            raise _busy_or(exc, group) from exc
        failed = [tp for tp in result.topic_partitions or [] if tp.error is not None]
        if failed:
            raise _busy_or(KafkaException(failed[0].error), group)

    def delete_group(self, group: str) -> None:
        self.admin.delete_consumer_groups([group])[group].result(self.timeout_s)

    def _list_offsets(
        self, partitions: Iterable[TP], spec: OffsetSpec, isolation: IsolationLevel | None = None
    ) -> dict[TP, int]:
        request = {TopicPartition(topic, partition): spec for topic, partition in partitions}
        if not request:
            return {}
        options = {} if isolation is None else {"isolation_level": isolation}
        futures = self.admin.list_offsets(request, request_timeout=self.timeout_s, **options)
        return {
            (tp.topic, tp.partition): future.result(self.timeout_s).offset
            for tp, future in futures.items()
        }


@dataclass(frozen=True)
class Peeked:
    offset: int
    timestamp_ms: int | None


def peek(
    kafka: KafkaSettings,
    positions: dict[TP, int],
    timeout_s: float = 10.0,
    committed_only: bool = False,
) -> dict[TP, Peeked | None]:
    """The first record at or after each position; None where the partition has none (its end
    was reached), absent where the answer did not come within ``timeout_s``.

    Reads without joining a group and commits nothing. ``committed_only`` reads like fanout's
    consumers (``read_committed``); otherwise like Kafka's tools.
    """
    if not positions:
        return {}
    consumer = make_consumer(
        kafka,
        f"{kafka.group_prefix}-peek",
        **{
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
        },
    )
    try:
        consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in positions.items()])
        return _first_records(consumer, set(positions), time.monotonic() + timeout_s)
    finally:
        consumer.close()


def _first_records(
    consumer: Consumer, pending: set[TP], deadline: float
) -> dict[TP, Peeked | None]:
    found: dict[TP, Peeked | None] = {}
    while pending and time.monotonic() < deadline:
        for message in consumer.consume(500, timeout=min(1.0, deadline - time.monotonic())):
            tp = (message.topic() or "", message.partition() or 0)
            if tp not in pending:
                continue
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                continue
            pending.discard(tp)
            found[tp] = None if error is not None else _peeked(message)
            consumer.pause([TopicPartition(*tp)])
    return found


def _peeked(message: Message) -> Peeked:
    kind, ts = message.timestamp()
    return Peeked(message.offset() or 0, ts if kind != 0 and ts >= 0 else None)


def _group_info(description: ConsumerGroupDescription) -> GroupInfo:
    state = getattr(description.state, "name", str(description.state))
    members = tuple(
        Member(
            client_id=member.client_id,
            host=member.host,
            member_id=member.member_id,
            partitions=tuple(
                (tp.topic, tp.partition) for tp in member.assignment.topic_partitions or []
            ),
        )
        for member in description.members
    )
    return GroupInfo(description.group_id, state, members)


def _busy_or(exc: KafkaException, group: str) -> Exception:
    error = exc.args[0]
    if isinstance(error, KafkaError) and error.code() in _GROUP_BUSY:
        return RefusedError(f"group {group} has active members; Kafka refused the change")
    return exc


# -- reset -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResetRow:
    topic: str
    partition: int
    current: int | None  # None: nothing committed yet
    target: int


@dataclass(frozen=True)
class ResetPlan:
    group: str
    to: str
    rows: tuple[ResetRow, ...]

    def as_json(self) -> dict[str, object]:
        return {
            "group": self.group,
            "to": self.to,
            "partitions": [
                {"topic": r.topic, "partition": r.partition, "current": r.current, "new": r.target}
                for r in self.rows
            ],
        }


def target_offsets(offsets: KafkaOffsets, partitions: list[TP], to: str) -> dict[TP, int]:
    """``earliest`` / ``latest`` / a time (see :func:`parse_time`) -> offset per partition."""
    if to == "earliest":
        return offsets.starts(partitions)
    if to == "latest":
        return offsets.ends(partitions)
    return offsets.at_time(partitions, parse_time(to))


def plan_reset(offsets: KafkaOffsets, group: str, topics: Sequence[str], to: str) -> ResetPlan:
    partitions = offsets.partitions(topics)
    if not partitions:
        raise ConfigError(f"kafka.topics: none of {list(topics)} exists")
    targets = target_offsets(offsets, partitions, to)
    current = offsets.committed(group)
    rows = tuple(
        ResetRow(topic, partition, _offset_of(current.get((topic, partition))), targets[tp])
        for tp in partitions
        for topic, partition in [tp]
    )
    return ResetPlan(group, to, rows)


def refuse_if_active(offsets: KafkaOffsets, group: str) -> None:
    info = offsets.describe(group)
    if info.active:
        who = ", ".join(f"{m.client_id}@{m.host}" for m in info.members)
        raise RefusedError(
            f"group {group} has {len(info.members)} active member(s) ({who}); stop the "
            "sink's consumers first (e.g. scale its Deployment to 0), then run the reset again"
        )


def apply_reset(offsets: KafkaOffsets, plan: ResetPlan) -> None:
    refuse_if_active(offsets, plan.group)
    offsets.alter(plan.group, {(r.topic, r.partition): r.target for r in plan.rows})


def _offset_of(committed: Committed | None) -> int | None:
    return None if committed is None else committed.offset
