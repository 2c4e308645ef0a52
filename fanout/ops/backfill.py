"""``fanout backfill``: deliver a sink's topics again, from the start or from a point in time,
up to the end offsets they had when the backfill first started; then exit 0.

Delivery guarantee: the same path as the live consumer (:class:`~fanout.runtime.worker.SinkWorker`:
decode, route, write with retries, DLQ, commit after delivery), in its own consumer group
``<group_prefix>-<sink>-backfill-<id>``. Writes are version-guarded and idempotent, so a
backfill running beside the live consumer of the same sink converges to the newest event per
key; records past the bound that a batch happens to carry are harmless for the same reason.

Bounds and resuming: on first start the start offset (log start, or the first record at or
after ``--from``) and the end offset (last stable offset) of every partition are committed to
the group, with a mark in the commit metadata, ``{"fanout.backfill":1,"start":S,"end":E,
"args":F}``; every later commit carries the same mark (``WorkerOptions.commit_metadata``). A run
that is killed leaves the group behind; running it again with the same id reads the marks back
and continues from the commits to the same ends. A partition is finished when its committed
offset reached its end, or when no record is left below its end (transaction markers,
compaction). A finished backfill deletes its group, so the same id later starts afresh.

The id is ``--id`` or, by default, a fingerprint of (sink, ``--from``, ``--tables``): running
the same command again resumes it. Resuming an id with other arguments is refused.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from confluent_kafka import KafkaError, KafkaException

from fanout.errors import ConfigError
from fanout.events import ChangeEvent
from fanout.ops.offsets import TP, KafkaOffsets, parse_time, peek
from fanout.ops.progress import ProgressReporter
from fanout.runtime.kafka import group_id
from fanout.runtime.routing import Router
from fanout.settings import KafkaSettings, RoutingSettings, Settings

if TYPE_CHECKING:
    from fanout.runtime.worker import SinkWorker

log = logging.getLogger(__name__)

MARK_KEY = "fanout.backfill"
GROUP_INFIX = "-backfill-"
WATCH_INTERVAL_S = 1.0
PROBE_IDLE_S = 3.0  # a partition whose commit stands still this long is checked for a tail gap
_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


# -- naming ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackfillRequest:
    sink: str
    start: str = "earliest"  # "earliest" or a time (see fanout.offsets.parse_time)
    tables: tuple[str, ...] = ()  # include globs on schema.table, narrowing the sink's routing
    backfill_id: str | None = None
    batch_size: int | None = None  # overrides sinks.<sink>.batch.max_events for this run

    def __post_init__(self) -> None:
        if self.backfill_id is not None and not _ID.match(self.backfill_id):
            raise ConfigError(f"--id: {self.backfill_id!r} must be 1-100 of [A-Za-z0-9._-]")
        if self.start != "earliest":
            parse_time(self.start)

    @property
    def fingerprint(self) -> str:
        args = {"sink": self.sink, "from": self.start, "tables": sorted(self.tables)}
        return hashlib.sha256(json.dumps(args).encode()).hexdigest()[:10]

    @property
    def id(self) -> str:
        return self.backfill_id or self.fingerprint


def backfill_group(kafka: KafkaSettings, sink: str, backfill_id: str) -> str:
    return f"{group_id(kafka, sink)}{GROUP_INFIX}{backfill_id}"


def is_backfill_group(group: str) -> bool:
    return GROUP_INFIX in group


def backfill_groups(kafka: KafkaSettings, sink: str, groups: Sequence[str]) -> list[str]:
    prefix = f"{group_id(kafka, sink)}{GROUP_INFIX}"
    return sorted(group for group in groups if group.startswith(prefix))


# -- marks and plans ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """One partition's bounds, kept in the commit metadata of the backfill group."""

    start: int
    end: int
    args: str

    def encode(self) -> str:
        body = {MARK_KEY: 1, "start": self.start, "end": self.end, "args": self.args}
        return json.dumps(body, separators=(",", ":"))


def parse_mark(metadata: str) -> Mark | None:
    try:
        body = json.loads(metadata)
        if body.get(MARK_KEY) != 1:
            return None
        return Mark(int(body["start"]), int(body["end"]), str(body["args"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


@dataclass
class Plan:
    group: str
    marks: dict[TP, Mark]
    resumed: bool

    @property
    def total(self) -> int:
        return sum(max(0, m.end - m.start) for m in self.marks.values())

    def position(self, tp: TP, committed: dict[TP, int]) -> int:
        mark = self.marks[tp]
        return min(max(committed.get(tp, mark.start), mark.start), mark.end)

    def done(self, committed: dict[TP, int]) -> int:
        return sum(self.position(tp, committed) - m.start for tp, m in self.marks.items())

    def unfinished(self, committed: dict[TP, int]) -> list[TP]:
        return [tp for tp, m in self.marks.items() if self.position(tp, committed) < m.end]

    def metadata(self, topic: str, partition: int) -> str | None:
        mark = self.marks.get((topic, partition))
        return None if mark is None else mark.encode()


def prepare(settings: Settings, offsets: KafkaOffsets, request: BackfillRequest) -> Plan:
    """The plan of a resumed backfill, or a new one whose bounds are committed before it runs."""
    group = backfill_group(settings.kafka, request.sink, request.id)
    existing = offsets.committed(group)
    if existing:
        return resumed_plan(group, {tp: c.metadata for tp, c in existing.items()}, request)
    return _started(settings, offsets, request, group)


def resumed_plan(group: str, metadata: dict[TP, str], request: BackfillRequest) -> Plan:
    """Partitions without a mark (added to the topic since the start) are not part of it."""
    marks = {tp: m for tp, text in metadata.items() if (m := parse_mark(text)) is not None}
    if not marks or any(m.args != request.fingerprint for m in marks.values()):
        raise ConfigError(
            f"--id: backfill {request.id} (group {group}) was started with other arguments "
            "(--from/--tables) or is not a fanout backfill; run it with the same arguments, "
            "or choose another --id"
        )
    return Plan(group, marks, resumed=True)


def _started(
    settings: Settings, offsets: KafkaOffsets, request: BackfillRequest, group: str
) -> Plan:
    partitions = offsets.partitions(offsets.topics(settings.kafka.subscription()))
    if not partitions:
        raise ConfigError("kafka.topics: none of the configured topics exists")
    ends = offsets.ends(partitions, committed_only=True)
    if request.start == "earliest":
        starts = offsets.starts(partitions)
    else:
        starts = offsets.at_time(partitions, parse_time(request.start))
    marks = {tp: Mark(min(starts[tp], ends[tp]), ends[tp], request.fingerprint) for tp in ends}
    offsets.alter(
        group, {tp: m.start for tp, m in marks.items()}, {tp: m.encode() for tp, m in marks.items()}
    )
    return Plan(group, marks, resumed=False)


# -- running -----------------------------------------------------------------------------------


class TablesRouter(Router):
    """The sink's routing, narrowed to source tables matching ``tables`` (globs)."""

    def __init__(self, settings: RoutingSettings, tables: Sequence[str]) -> None:
        super().__init__(settings)
        self._tables = tuple(tables)

    def route(self, event: ChangeEvent) -> ChangeEvent | None:
        if not any(fnmatch.fnmatchcase(event.table, glob) for glob in self._tables):
            return None
        return super().route(event)


@dataclass
class BackfillResult:
    backfill_id: str
    group: str
    complete: bool
    resumed: bool
    done: int
    total: int
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.backfill_id,
            "group": self.group,
            "status": "complete" if self.complete else "interrupted",
            "resumed": self.resumed,
            "done": self.done,
            "total": self.total,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Watch:
    committed: dict[TP, int] = field(default_factory=dict)
    drained: set[TP] = field(default_factory=set)  # no record left below the end
    still_since: dict[TP, tuple[int, float]] = field(default_factory=dict)


class Backfill:
    """One backfill run; :meth:`stop` (from a signal handler) interrupts it resumably."""

    def __init__(
        self,
        settings: Settings,
        request: BackfillRequest,
        stream: TextIO,
        interactive: bool | None = None,
    ) -> None:
        self._settings = _settings_for(settings, request)
        self._request = request
        self._offsets = KafkaOffsets(settings.kafka)
        self._stream = stream
        self._interactive = interactive
        self._stopping = threading.Event()
        self._worker: SinkWorker | None = None
        self._error: BaseException | None = None

    def stop(self) -> None:
        self._stopping.set()
        if self._worker is not None:
            self._worker.stop()

    def run(self) -> BackfillResult:
        started = time.monotonic()
        plan = prepare(self._settings, self._offsets, self._request)
        reporter = ProgressReporter(
            f"backfill {self._request.sink} {self._request.id}", self._stream, self._interactive
        )
        self._announce(plan)
        watch = _Watch(committed=self._committed(plan))
        if plan.unfinished(watch.committed) and not self._stopping.is_set():
            self._deliver(plan, watch, reporter)
        complete = not self._unfinished(plan, watch)
        done = plan.total if complete else plan.done(watch.committed)
        reporter.finish(done, plan.total, "complete" if complete else "interrupted")
        if complete:
            self._forget(plan.group)
        seconds = time.monotonic() - started
        return BackfillResult(
            self._request.id, plan.group, complete, plan.resumed, done, plan.total, seconds
        )

    def _announce(self, plan: Plan) -> None:
        verb = "resuming" if plan.resumed else "starting"
        self._stream.write(
            f"backfill {self._request.sink} {self._request.id}: {verb}, group {plan.group}, "
            f"{len(plan.marks)} partition(s), {plan.total:,} record(s) up to the captured ends\n"
        )
        self._stream.flush()

    def _deliver(self, plan: Plan, watch: _Watch, reporter: ProgressReporter) -> None:
        from fanout.runtime.app import build_worker
        from fanout.runtime.worker import WorkerOptions

        options = WorkerOptions(
            group=plan.group,
            topics=sorted({topic for topic, _ in plan.marks}),
            commit_metadata=plan.metadata,
            router=self._router(),
        )
        self._worker = build_worker(self._request.sink, self._settings, options)
        if self._stopping.is_set():
            return
        thread = threading.Thread(target=self._run_worker, name="backfill-worker", daemon=True)
        thread.start()
        while thread.is_alive():
            self._observe(plan, watch)
            reporter.update(_progress(plan, watch), plan.total)
            if not self._unfinished(plan, watch):
                self._worker.stop()
            thread.join(WATCH_INTERVAL_S)
        watch.committed = self._committed(plan)
        if self._error is not None:
            raise self._error

    def _run_worker(self) -> None:
        assert self._worker is not None
        try:
            self._worker.run()
        except BaseException as exc:
            log.exception("backfill worker crashed", extra={"sink": self._request.sink})
            self._error = exc

    def _router(self) -> Router | None:
        if not self._request.tables:
            return None
        routing = self._settings.sinks.get(self._request.sink).routing
        return TablesRouter(routing, self._request.tables)

    def _committed(self, plan: Plan) -> dict[TP, int]:
        return {tp: c.offset for tp, c in self._offsets.committed(plan.group).items()}

    def _unfinished(self, plan: Plan, watch: _Watch) -> list[TP]:
        return [tp for tp in plan.unfinished(watch.committed) if tp not in watch.drained]

    def _observe(self, plan: Plan, watch: _Watch) -> None:
        watch.committed = self._committed(plan)
        now = time.monotonic()
        idle: dict[TP, int] = {}
        for tp in self._unfinished(plan, watch):
            offset = plan.position(tp, watch.committed)
            seen, since = watch.still_since.get(tp, (-1, now))
            if seen != offset:
                watch.still_since[tp] = (offset, now)
            elif now - since >= PROBE_IDLE_S:
                idle[tp] = offset
                watch.still_since[tp] = (offset, now)
        if idle:
            watch.drained.update(self._drained(plan, idle))

    def _drained(self, plan: Plan, positions: dict[TP, int]) -> list[TP]:
        """Partitions with no record left between their commit and their end."""
        first = peek(self._settings.kafka, positions, timeout_s=5.0, committed_only=True)
        return [
            tp
            for tp, record in first.items()
            if record is None or record.offset >= plan.marks[tp].end
        ]

    def _forget(self, group: str) -> None:
        """Delete the finished backfill's group (the consumer may take a moment to leave)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                self._offsets.delete_group(group)
                return
            except KafkaException as exc:
                busy = exc.args[0].code() == KafkaError.NON_EMPTY_GROUP
                if not busy or time.monotonic() > deadline:
                    log.warning("could not delete backfill group %s: %s", group, exc)
                    return
            time.sleep(0.5)  # backoff between attempts while the consumer leaves the group


def _progress(plan: Plan, watch: _Watch) -> int:
    ends = {tp: plan.marks[tp].end for tp in watch.drained}
    return plan.done({**watch.committed, **ends})


def _settings_for(settings: Settings, request: BackfillRequest) -> Settings:
    if request.batch_size is None:
        return settings
    copy = settings.model_copy(deep=True)
    copy.sinks.get(request.sink).batch.max_events = request.batch_size
    return copy
