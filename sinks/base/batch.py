"""The batch template every sink shares: a sink fills in its targets, types and writes only.

``BatchSink.write`` runs the same steps for every sink::

    group      events by target; a target name the store cannot hold fails its events, two
               targets on one name the store derives stop the sink (ConfigError)
    validate   per event: a key without NULL or object values, a row for an upsert, a
               version in 0..2^63-1 (every store keeps it as a signed 64-bit number)
    watermark  the truncate version each target has stored            (sink: truncate_watermarks)
    merge      an upsert lacking declared columns takes them from the older upserts of its
               key in the batch (``sinks.base.collapse.fill_missing_columns``)
    prepare    describe or create the target, check and map each event (sink: prepare)
    collapse   the newest valid event per key; older ones are superseded
    drop       events older than the target's truncate watermark
    apply      write the collapsed batch, truncates first                (sink: apply)
    fall back  a key whose newest event the store refused in apply: its next-newest valid
               event, in another apply round (``sinks.base.fallback``)
    count      fanout_events_written_total and fanout_stale_events_total, here and only here

Driver exceptions raised by the sink's steps are mapped once, by the sink's error table
(``classify``), onto the three classes of ``sinks.base.errors``.

Delivery guarantee: the runtime delivers every event at least once. ``write`` may be called
again with the same batch (after a crash, a rebalance, a retry or a backfill) and with batches
older than ones already written; a sink must converge to the newest version per key anyway,
which is why every write the sinks make is guarded by version.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from fanout.errors import FanoutError, MappingError
from fanout.events import ChangeEvent, Failure, Op
from fanout.runtime.metrics import EVENTS_WRITTEN, STALE_SKIPPED
from sinks.base.collapse import collapse, fill_missing_columns
from sinks.base.errors import Verdict, mapped_errors
from sinks.base.fallback import Candidates
from sinks.base.names import NameClaims

P = TypeVar("P")  # what the sink's prepare step attaches to each valid event
C = TypeVar("C")  # what the sink's prepare step knows about one target (its table, its key…)

MAX_VERSION = 2**63 - 1
log = logging.getLogger(__name__)


class Failures:
    """The per-record failures of one ``write``: they go to the DLQ with their reason."""

    def __init__(self) -> None:
        self.items: list[Failure] = []

    def reject(self, event: ChangeEvent, error: MappingError) -> None:
        self.items.append(Failure(event.origin, "write", error, event))


@dataclass(slots=True)
class Prepared(Generic[P, C]):
    """A sink's verdict on one target's changes (truncates apart).

    ``payloads[i]`` belongs to ``changes[i]``; None means the sink rejected it (and said why
    through ``Failures.reject``). ``key`` is the target's key in the order identities are
    built; empty means "the key of the first change".
    """

    context: C
    payloads: list[P | None]
    key: tuple[str, ...] = ()


@dataclass(slots=True)
class TargetBatch(Generic[P, C]):
    """One target's share of a batch, collapsed, ready for the sink to apply."""

    target: str
    context: C
    events: list[ChangeEvent]  # every event of the target in this batch, in stream order
    newest: list[tuple[ChangeEvent, P]] = field(default_factory=list)  # what to write
    truncate: ChangeEvent | None = None  # the newest truncate of the target in this batch
    truncates: int = 0
    stale: int = 0  # superseded in the batch, older than a truncate, or older than the store's
    applied: Counter[Op] = field(default_factory=Counter)
    candidates: Candidates[P] | None = field(default=None, repr=False)  # the template's

    @property
    def truncate_version(self) -> int | None:
        return None if self.truncate is None else self.truncate.version

    def applied_all(self) -> None:
        """Record every newest event as applied (for stores that do not report per key)."""
        self.applied.update(event.op for event, _ in self.newest)

    def report(self, applied: Counter[Op]) -> None:
        """Record what the store applied; the rest of ``newest`` was stale there."""
        self.applied.update(applied)
        self.stale += len(self.newest) - sum(applied.values())


class BatchSink(ABC, Generic[P, C]):
    """The template; subclasses implement the hooks below the ``write`` line."""

    name: ClassVar[str]
    # Sinks that remember deletes as tombstones purge them this often (None: never).
    purge_interval_s: float | None = None

    def __init__(self) -> None:
        self._target_verdicts: dict[str, str | MappingError] = {}
        self._claims = NameClaims(getattr(self, "name", type(self).__name__))
        self._next_purge = 0.0

    def open(self) -> None:
        """Connect and create or verify targets. Raises RetryableError if the store is down."""

    def close(self) -> None:
        """Release connections. Safe to call twice."""

    def write(self, batch: Sequence[ChangeEvent]) -> list[Failure]:
        """Apply the batch idempotently, guarded by version (see the module docstring).

        Returns the per-record failures it could isolate. Raises RetryableError when the whole
        batch failed for a passing reason, PermanentError for a lasting one (the runtime then
        bisects the batch), ConfigError when the sink cannot work as configured.
        """
        failures = Failures()
        groups = self._group(batch, failures)
        if not groups:
            return failures.items
        with self.driver_errors():
            plans = self._plan(groups, failures)
            work = [plan for plan in plans if plan.newest or plan.truncates]
            if work:
                refused_before = len(failures.items)
                self.apply(work, failures)
                if len(failures.items) > refused_before:
                    self._fall_back(work, failures, refused_before)
        self._count(plans)
        self._maybe_purge()
        return failures.items

    # --- what a sink implements ------------------------------------------------------------

    @abstractmethod
    def check_target(self, target: str) -> str:
        """The target's name as the store will hold it; MappingError if it cannot."""

    def truncate_watermarks(self, targets: list[str]) -> dict[str, int]:
        """The truncate version each target has stored (targets never truncated are absent).

        A sink whose writes check the watermark in the store itself may return nothing."""
        return {}

    @abstractmethod
    def prepare(
        self, target: str, changes: list[ChangeEvent], failures: Failures
    ) -> Prepared[P, C]:
        """Describe or create the target, check each change against it and map its values.

        Called for every target of the batch, with ``changes`` empty when the target only has
        truncates. Rejects go to ``failures``; their payload is None.
        """

    @abstractmethod
    def apply(self, batches: list[TargetBatch[P, C]], failures: Failures) -> None:
        """Write the collapsed batches: each target's truncate first, then ``newest``.

        Report what the store applied with ``TargetBatch.report`` (or ``applied_all``)."""

    def purge_tombstones(self) -> bool:
        """Delete tombstones older than the retention, in one bounded step; True if more are
        left (the next write goes on). Runs every ``purge_interval_s``, after a write."""
        return False

    @abstractmethod
    def classify(self, exc: BaseException) -> Verdict | None:
        """The sink's error table: the class of a driver exception, None if not the driver's."""

    @contextmanager
    def driver_errors(self) -> Iterator[None]:
        """Map driver exceptions raised inside; a sink may add clean-up (drop a connection)."""
        with mapped_errors(self.classify):
            yield

    # --- the template ----------------------------------------------------------------------

    def _group(
        self, batch: Sequence[ChangeEvent], failures: Failures
    ) -> dict[str, list[ChangeEvent]]:
        groups: dict[str, list[ChangeEvent]] = {}
        verdicts = self._target_verdicts
        truncate, upsert = Op.TRUNCATE, Op.UPSERT
        for event in batch:  # runs once per record: the checks are inlined
            verdict = verdicts.get(event.target) or self._target_verdict(event)
            if type(verdict) is not str:
                failures.reject(event, verdict)  # type: ignore[arg-type]
                continue
            op = event.op
            if op is not truncate:
                keys = event.key
                if (
                    not keys
                    or None in keys.values()
                    or dict in map(type, keys.values())
                    or not 0 <= event.version <= MAX_VERSION
                    or (op is upsert and event.row is None)
                ):
                    failures.reject(event, MappingError(event_problem(event) or "invalid event"))
                    continue
            group = groups.get(verdict)
            if group is None:
                group = groups[verdict] = []
            group.append(event)
        return groups

    def _target_verdict(self, event: ChangeEvent) -> str | MappingError:
        # Without routing (a sink used directly) the target defaults as routing's "{table}".
        target = event.target or event.table.rpartition(".")[2]
        verdict = self._target_verdicts.get(target)
        if verdict is None:
            try:
                verdict = self.check_target(target)
            except MappingError as exc:
                verdict = exc
            else:  # a store's own name for the target must not be another target's too
                self._claims.claim(verdict, target, event.table)
            self._target_verdicts[target] = verdict
        return verdict

    def _plan(
        self, groups: dict[str, list[ChangeEvent]], failures: Failures
    ) -> list[TargetBatch[P, C]]:
        watermarks = self.truncate_watermarks(sorted(groups))
        return [  # one order for every writer: locks are taken in it
            self._plan_target(target, groups[target], watermarks.get(target), failures)
            for target in sorted(groups)
        ]

    def _plan_target(
        self,
        target: str,
        events: list[ChangeEvent],
        stored_watermark: int | None,
        failures: Failures,
    ) -> TargetBatch[P, C]:
        truncate = Op.TRUNCATE
        changes = [event for event in events if event.op is not truncate]
        truncates = len(events) - len(changes)
        for event in changes:  # inlined has_missing_columns: it runs once per record
            row = event.row
            if row is not None and len(row) < len(event.columns):
                changes = fill_missing_columns(changes)
                break
        prepared = self.prepare(target, changes, failures)
        plan: TargetBatch[P, C] = TargetBatch(target, prepared.context, events)
        if truncates:
            plan.truncates = truncates
            plan.truncate = max(
                (event for event in events if event.op is truncate), key=lambda e: e.version
            )
        key = prepared.key or (tuple(changes[0].key) if changes else ())
        collapsed = collapse(changes, prepared.payloads, key)
        for event, error in collapsed.rejected:
            failures.reject(event, error)
        watermark = max(stored_watermark or 0, plan.truncate_version or 0)
        if watermark:
            plan.newest = [
                kept for kept in collapsed.newest.values() if kept[0].version >= watermark
            ]
        else:
            plan.newest = list(collapsed.newest.values())
        plan.stale = collapsed.superseded + len(collapsed.newest) - len(plan.newest)
        plan.candidates = Candidates(changes, prepared.payloads, key, watermark)
        return plan

    def _fall_back(self, plans: list[TargetBatch[P, C]], failures: Failures, seen: int) -> None:
        """Apply rounds for the keys whose newest event the store refused in ``apply``
        (``failures`` past ``seen``): each offers their next-newest valid event, until the
        store takes one or none is left. An event offered is no longer counted superseded."""
        rounds = [(plan, plan) for plan in plans]  # (what apply was given, the plan it counts in)
        while len(failures.items) > seen:
            refused = {id(failure.event) for failure in failures.items[seen:]}
            seen = len(failures.items)
            retry: list[tuple[TargetBatch[P, C], TargetBatch[P, C]]] = []
            for given, plan in rounds:
                candidates = plan.candidates
                refused_here = [kept for kept in given.newest if id(kept[0]) in refused]
                if candidates is None or not refused_here:
                    continue
                following = candidates.next_newest(given.newest, refused_here)
                if following:
                    plan.stale -= len(following)
                    offer = TargetBatch(plan.target, plan.context, plan.events, following)
                    retry.append((offer, plan))
            if not retry:
                return
            self.apply([offer for offer, _ in retry], failures)
            for offer, plan in retry:
                plan.applied.update(offer.applied)
                plan.stale += offer.stale
            rounds = retry

    def purged(self) -> None:
        """A sink that purged by itself (on open) starts the interval again."""
        if self.purge_interval_s is not None:
            self._next_purge = time.monotonic() + self.purge_interval_s

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if self.purge_interval_s is None or now < self._next_purge:
            return
        self._next_purge = now + self.purge_interval_s
        try:
            with self.driver_errors():
                more = self.purge_tombstones()
        except FanoutError as exc:  # best effort: the next interval tries again
            log.warning("tombstone purge failed", extra={"sink": self.name, "error": str(exc)})
            return
        if more:
            self._next_purge = now

    def _count(self, plans: list[TargetBatch[P, C]]) -> None:
        for plan in plans:
            for op, count in plan.applied.items():
                if count:
                    EVENTS_WRITTEN.labels(self.name, plan.target, op.value).inc(count)
            if plan.truncates:
                EVENTS_WRITTEN.labels(self.name, plan.target, Op.TRUNCATE.value).inc(plan.truncates)
            if plan.stale:
                STALE_SKIPPED.labels(self.name, plan.target).inc(plan.stale)


def event_problem(event: ChangeEvent) -> str | None:
    """Why no sink can apply ``event`` whatever its target, or None."""
    op = event.op
    if op is Op.TRUNCATE:
        return None
    keys = event.key
    if not keys:
        return "the event has no key (a source table without a primary key?)"
    for name, value in keys.items():
        if value is None or type(value) is dict:
            return f"key column {name!r} is {'NULL' if value is None else 'a JSON object'}"
    if op is Op.UPSERT and event.row is None:
        return "an upsert event without a row"
    if not 0 <= event.version <= MAX_VERSION:
        return f"version {event.version} is outside 0..2^63-1"
    return None
