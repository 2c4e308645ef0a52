"""ClickHouse sink: one ReplacingMergeTree table per target, current state read with FINAL.

Delivery guarantee: effectively once for the state a reader sees. ``write`` may be called again
with the same batch, with older batches, or alongside a backfill; every row carries the event's
version in ``_fanout_version`` and ``ReplacingMergeTree(_fanout_version, _fanout_deleted)`` keeps
the newest version per key, so ``SELECT … FROM t FINAL`` (or the ``t_current`` view) converges
to the newest event per key whatever the order. Deletes are rows with ``_fanout_deleted = 1``
and the delete's version, so an older upsert replayed later loses to them. Truncations are
version watermarks plus tombstones (see ``_clickhouse_catalog``). Without FINAL a reader may
see superseded versions until ClickHouse merges them; an identical retried insert is dropped
by ClickHouse through ``insert_deduplication_token``.

Per batch and target: one check of every event against the table (rejects go back as
failures for the DLQ), at most one CREATE/ALTER, one columnar insert of the newest event per
key. Modes: ``server`` (clickhouse-connect over HTTP) or ``embedded`` (chDB, the default when
no host is configured).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

from fanout.errors import MappingError, PermanentError, RetryableError
from fanout.events import ChangeEvent, Failure, Op
from fanout.runtime.metrics import EVENTS_WRITTEN, STALE_SKIPPED
from fanout.settings import ClickHouseSettings
from sinks.clickhouse.backends import Backend, clickhouse_code, open_backend
from sinks.clickhouse.check import CheckedEvents, check_events
from sinks.clickhouse.schema import Catalog, TableSchema
from sinks.clickhouse.types import check_target, low_cardinality_columns
from sinks.clickhouse.write import build_insert, collapse, deduplication_token

log = logging.getLogger(__name__)

# The table changed under us (dropped, or a column removed): re-read it and try once more.
_SCHEMA_CHANGED_CODES = frozenset({16, 47, 60})


class ClickHouseSink:
    name: ClassVar[str] = "clickhouse"

    def __init__(self, settings: ClickHouseSettings) -> None:
        self.settings = settings
        self._backend: Backend | None = None
        self._catalog: Catalog | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Connect (server or embedded), create the database and the truncation table.

        Target tables are created on first write, from the first events' columns.
        """
        if self._backend is not None:
            return
        backend = open_backend(self.settings)
        try:
            catalog = Catalog(backend, self.settings.deduplication_window)
            catalog.create_truncations_table()
        except BaseException:
            backend.close()
            raise
        self._backend, self._catalog = backend, catalog
        log.info("clickhouse sink open: %s mode, database %r", backend.mode, self.settings.database)

    def close(self) -> None:
        backend, self._backend, self._catalog = self._backend, None, None
        if backend is not None:
            backend.close()

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise RetryableError("the ClickHouse sink is not open")
        return self._backend

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            raise RetryableError("the ClickHouse sink is not open")
        return self._catalog

    # ---- write ---------------------------------------------------------------------------

    def write(self, batch: Sequence[ChangeEvent]) -> Sequence[Failure]:
        failures, by_target = _group_by_target(batch)
        watermarks = self.catalog.watermarks(list(by_target))
        for target, events in by_target.items():
            try:
                failures.extend(self._write_target(target, events, watermarks.get(target, 0)))
            except MappingError as exc:  # the target's table cannot take fanout's writes
                failures.extend(_failure(event, str(exc)) for event in events)
        return failures

    def _write_target(
        self, target: str, events: list[ChangeEvent], watermark: int
    ) -> list[Failure]:
        truncates = [event for event in events if event.op is Op.TRUNCATE]
        if truncates:
            watermark = max(watermark, self._truncate(target, truncates))
        changes = [e for e in events if e.op is not Op.TRUNCATE and e.version >= watermark]
        stale = len(events) - len(truncates) - len(changes)
        if stale:
            STALE_SKIPPED.labels(self.name, target).inc(stale)
        if not changes:
            return []
        try:
            return self._apply(target, changes, events)
        except PermanentError as exc:
            if clickhouse_code(exc) not in _SCHEMA_CHANGED_CODES:
                raise
            log.warning("table %r changed underneath the sink; re-reading it: %s", target, exc)
            self.catalog.forget(target)
            return self._apply(target, changes, events)

    def _truncate(self, target: str, truncates: list[ChangeEvent]) -> int:
        newest = max(truncates, key=lambda event: event.version)
        self.catalog.truncate(target, newest.version, newest.source_ts_ms or 0)
        EVENTS_WRITTEN.labels(self.name, target, Op.TRUNCATE.value).inc(len(truncates))
        return newest.version

    def _apply(
        self, target: str, changes: list[ChangeEvent], batch_events: list[ChangeEvent]
    ) -> list[Failure]:
        schema, checked = self._prepare_table(target, changes)
        rows = collapse(checked.valid, checked.key)
        if rows and schema is not None:
            insert = build_insert(rows, schema, checked.present)
            token = deduplication_token(target, batch_events, insert)
            self.backend.insert_columns(
                target,
                insert.column_names,
                insert.columns,
                insert.column_types,
                {"insert_deduplication_token": token},
            )
        self._count_written(target, checked.valid)
        return [_failure(event, reason) for event, reason in checked.rejected]

    def _prepare_table(
        self, target: str, changes: list[ChangeEvent]
    ) -> tuple[TableSchema | None, CheckedEvents]:
        """Check the events against the table; create it or add columns when needed."""
        low_cardinality = low_cardinality_columns(self.settings.low_cardinality, target)
        schema = self.catalog.table(target)
        checked = check_events(changes, schema, low_cardinality)
        if not checked.valid or (schema is not None and not checked.new_columns):
            return schema, checked
        if schema is None:
            self._create_table(target, checked)
        else:
            log.info("adding columns %s to %r", sorted(checked.new_columns), target)
            self.catalog.add_columns(target, checked.new_columns.values())
        schema = self.catalog.table(target)
        if schema is None:
            raise RetryableError(f"table {target!r} is missing right after it was created")
        # Check again against the table as it is now: another writer may have won the race.
        return schema, check_events(changes, schema, low_cardinality)

    def _create_table(self, target: str, checked: CheckedEvents) -> None:
        columns = dict(checked.new_columns)
        key_columns = [columns.pop(name) for name in checked.key]
        log.info("creating table %r ordered by %s", target, list(checked.key))
        self.catalog.create(target, checked.key, [*key_columns, *columns.values()])

    def _count_written(self, target: str, events: list[ChangeEvent]) -> None:
        for op, count in Counter(event.op.value for event in events).items():
            EVENTS_WRITTEN.labels(self.name, target, op).inc(count)


def _group_by_target(
    batch: Sequence[ChangeEvent],
) -> tuple[list[Failure], dict[str, list[ChangeEvent]]]:
    failures: list[Failure] = []
    by_target: dict[str, list[ChangeEvent]] = {}
    for event in batch:
        try:
            target = check_target(event.target)
        except MappingError as exc:
            failures.append(_failure(event, str(exc)))
            continue
        by_target.setdefault(target, []).append(event)
    return failures, by_target


def _failure(event: ChangeEvent, reason: str) -> Failure:
    return Failure(
        origin=event.origin,
        stage="write",
        error=MappingError(f"clickhouse {event.target!r}: {reason}"),
        event=event,
    )
