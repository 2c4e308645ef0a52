"""PostgreSQL sink: one table per target holding exactly the live rows of the newest events.

Delivery guarantee: the runtime delivers every event at least once; ``write`` may be called
again with the same batch, or with a batch older than one already written, and the tables
converge to the newest event per key anyway:

* every row carries ``_fanout_version``; an upsert replaces a row only if its version is >= the
  stored one (``ON CONFLICT … DO UPDATE … WHERE t._fanout_version <= EXCLUDED._fanout_version``);
* a delete removes the row if its version is >= the stored one and is remembered in
  ``<table>__fanout_tombstones`` (key + version); an upsert is applied only if it is newer than
  the key's tombstone. Tombstones older than ``tombstone_retention_hours`` are purged on
  ``open()`` and at most every ``tombstone_purge_interval_minutes``: a replay of events older
  than the retention could resurrect rows deleted that long ago;
* a truncate clears the rows whose version is <= its own and records that version in
  ``_fanout_truncations``; older events replayed later are not applied.

Write path, per batch: validate each event's shape against the cached table description (new
columns are added, a type that does not fit is a per-event MappingError failure), collapse to
the newest valid event per key, ``COPY`` the survivors into a session temp staging table per
target, then one set-based statement each for deletes, tombstones and upserts — all targets in
ONE transaction, committed once. Writers of one target are serialised by an advisory lock so a
concurrent backfill cannot slip an old upsert between a delete and its tombstone.

Errors: psycopg exceptions are mapped onto ``fanout.errors`` in :func:`map_driver_error` only.
Connection loss, shutdowns, cancels, serialisation failures and deadlocks are RetryableError
(the next ``write`` reconnects); anything else a batch runs into is PermanentError (the
runtime bisects the batch to find the record).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import psycopg
from psycopg import sql

from fanout.errors import ConfigError, FanoutError, MappingError, PermanentError, RetryableError
from fanout.events import ChangeEvent, Failure, Op
from fanout.runtime.metrics import EVENTS_WRITTEN, STALE_SKIPPED
from fanout.settings import PostgresSettings
from sinks.postgres import sql as q
from sinks.postgres.schema import Catalog, TableInfo
from sinks.postgres.staging import (
    Collapsed,
    Layout,
    Resolution,
    Shape,
    Shapes,
    Staged,
    collapse,
    creation_columns,
    resolve,
)
from sinks.postgres.types import check_identifier, pg_type_sql, register_binary_dumpers

log = logging.getLogger("fanout.sinks.postgres")

_RETRYABLE = (
    psycopg.OperationalError,  # connection loss, AdminShutdown, QueryCanceled, deadlock, …
    psycopg.InterfaceError,  # the connection is already closed
    psycopg.errors.ReadOnlySqlTransaction,  # a failover left us on a standby
)
# The table changed under the sink (dropped, altered by hand): re-read it and try again.
_SCHEMA_DRIFT = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)


def map_driver_error(exc: psycopg.Error) -> FanoutError:
    """The one place psycopg's exceptions become fanout's."""
    if isinstance(exc, _RETRYABLE):
        return RetryableError(f"postgres unavailable: {type(exc).__name__}: {exc}")
    if isinstance(exc, _SCHEMA_DRIFT):
        return RetryableError(f"postgres table changed under the sink: {exc}")
    return PermanentError(f"postgres rejected the batch: {type(exc).__name__}: {exc}")


@dataclass(slots=True)
class _TargetPlan:
    """One target's share of a batch, ready to apply."""

    target: str
    ref: q.TableRef | None  # None: no table (a truncate of a table never created)
    batch: Collapsed
    upserts_applied: int = 0
    deletes_applied: int = 0


@dataclass(slots=True)
class _Plans:
    plans: list[_TargetPlan] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def fail(self, event: ChangeEvent, error: MappingError) -> None:
        self.failures.append(Failure(origin=event.origin, stage="write", error=error, event=event))


class PostgresSink:
    """Keeps ``<schema>.<target>`` tables equal to the newest event per key (see module doc)."""

    name: ClassVar[str] = "postgres"

    def __init__(self, settings: PostgresSettings) -> None:
        self._settings = settings
        try:
            schema = check_identifier(settings.db_schema, "schema")
        except MappingError as exc:
            raise ConfigError(f"sinks.postgres.schema: {exc}") from None
        self._catalog = Catalog(schema)
        self._conn: psycopg.Connection | None = None
        self._target_errors: dict[str, MappingError | None] = {}
        self._shapes = Shapes()
        self._resolutions: dict[
            str, tuple[TableInfo, tuple[str, ...], dict[Shape, Resolution]]
        ] = {}
        self._next_purge = 0.0

    def open(self) -> None:
        with self._driver_errors():
            self._purge_tombstones(self._connection())

    def write(self, batch: Sequence[ChangeEvent]) -> Sequence[Failure]:
        if not batch:
            return []
        plans = _Plans()
        by_target = self._group_by_target(batch, plans)
        if not by_target:
            return plans.failures
        with self._driver_errors():
            conn = self._connection()
            if time.monotonic() >= self._next_purge:
                self._purge_tombstones(conn)
            for target in sorted(by_target):  # one lock order for every writer
                self._plan_target(conn, target, by_target[target], plans)
            self._apply(conn, plans.plans)
        self._count(plans.plans)
        return plans.failures

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    # --- connection and errors -------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._catalog.reset()
            self._conn = psycopg.connect(**self._settings.conninfo(), autocommit=True)
            register_binary_dumpers(self._conn)
            self._catalog.setup(self._conn)
        return self._conn

    @contextmanager
    def _driver_errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            error = map_driver_error(exc)
            if isinstance(error, RetryableError):
                self._catalog.reset()
                if isinstance(exc, _RETRYABLE) or (self._conn is not None and self._conn.broken):
                    self.close()  # reconnect on the next write
            raise error from exc

    def _purge_tombstones(self, conn: psycopg.Connection) -> None:
        hours = self._settings.tombstone_retention_hours
        purged = 0
        for table in self._catalog.tombstone_tables(conn):
            with conn.transaction():
                purged += conn.execute(
                    q.purge_tombstones(self._catalog.schema, table), (hours,)
                ).rowcount
        if purged:
            log.info("purged %d tombstones older than %d hours", purged, hours)
        self._next_purge = time.monotonic() + 60 * self._settings.tombstone_purge_interval_minutes

    # --- planning: validation, DDL, collapse -----------------------------------------------

    def _group_by_target(
        self, batch: Sequence[ChangeEvent], plans: _Plans
    ) -> dict[str, list[ChangeEvent]]:
        by_target: dict[str, list[ChangeEvent]] = {}
        for event in batch:
            by_target.setdefault(event.target, []).append(event)
        for target in list(by_target):
            error = self._target_error(target)
            if error is not None:
                for event in by_target.pop(target):
                    plans.fail(event, error)
        return by_target

    def _target_error(self, target: str) -> MappingError | None:
        if target not in self._target_errors:
            self._target_errors[target] = _check_target_name(target)
        return self._target_errors[target]

    def _plan_target(
        self, conn: psycopg.Connection, target: str, events: list[ChangeEvent], plans: _Plans
    ) -> None:
        data = [event for event in events if event.op is not Op.TRUNCATE]
        info, key = self._table_and_key(conn, target, data, plans)
        if info is None or not key:  # truncates only (the table may not even exist)
            layouts: list[Layout | None] = [None] * len(events)
        else:
            layouts = self._layouts(conn, info, key, events, plans)
        batch = collapse(events, layouts, key)
        for event, error in batch.failed:
            plans.fail(event, error)
        if not batch.rows and batch.truncate_version is None:
            return
        ref = None
        if info is not None:
            info = self._catalog.table(conn, target) or info
            ref = self._catalog.staging(conn, info, key)
            if key:
                self._catalog.ensure_tombstones(conn, info, key)
        plans.plans.append(_TargetPlan(target=target, ref=ref, batch=batch))

    def _table_and_key(
        self, conn: psycopg.Connection, target: str, data: list[ChangeEvent], plans: _Plans
    ) -> tuple[TableInfo | None, tuple[str, ...]]:
        """The target table (created if needed) and its conflict key; () if none is usable,
        and then every event of ``data`` has failed."""
        info = None
        try:
            info = self._table_for(conn, target, data)
            return info, _conflict_key(info, data)
        except MappingError as exc:  # the whole target is unusable: every event is poison
            for event in data:
                plans.fail(event, exc)
            return info, ()

    def _table_for(
        self, conn: psycopg.Connection, target: str, data: list[ChangeEvent]
    ) -> TableInfo | None:
        """The target table, created from the first upsert (or delete) of ``data`` if missing."""
        info = self._catalog.table(conn, target)
        if info is not None or not data:
            return info
        first = next((event for event in data if event.op is Op.UPSERT), data[0])
        columns = {column.name: column for column in creation_columns(first)}
        for name in first.key:
            if name not in columns:
                raise MappingError(f"key column {name}: no value or type to create table {target}")
        types = [(name, pg_type_sql(column)) for name, column in columns.items()]
        return self._catalog.create_table(conn, target, types, tuple(first.key))

    def _layouts(
        self,
        conn: psycopg.Connection,
        info: TableInfo,
        key: tuple[str, ...],
        events: list[ChangeEvent],
        plans: _Plans,
    ) -> list[Layout | None]:
        """Each event's layout (None if it failed); unseen shapes are resolved, with DDL."""
        known = self._resolutions_for(info, key)
        layouts: list[Layout | None] = []
        unseen: dict[Shape, list[int]] = {}
        shape_of = self._shapes.of
        for i, event in enumerate(events):
            if event.op is Op.TRUNCATE:
                layouts.append(None)
                continue
            shape = shape_of(event)
            resolution = known.get(shape)
            if resolution is None:
                unseen.setdefault(shape, []).append(i)
            elif resolution.error is not None:
                plans.fail(event, resolution.error)
            layouts.append(None if resolution is None else resolution.layout)
        if unseen:
            examples = {shape: events[indexes[0]] for shape, indexes in unseen.items()}
            resolved = self._resolve(conn, info, key, examples)
            for shape, indexes in unseen.items():
                resolution = resolved[shape]
                for i in indexes:
                    if resolution.error is not None:
                        plans.fail(events[i], resolution.error)
                    layouts[i] = resolution.layout
        return layouts

    def _resolve(
        self,
        conn: psycopg.Connection,
        info: TableInfo,
        key: tuple[str, ...],
        examples: dict[Shape, ChangeEvent],
    ) -> dict[Shape, Resolution]:
        """Resolve new shapes against the table, adding the columns they bring first."""
        resolved = {shape: resolve(info, key, event) for shape, event in examples.items()}
        new_columns = {name: type_ for r in resolved.values() for name, type_ in r.new_columns}
        if new_columns:
            info = self._catalog.add_columns(conn, info.name, list(new_columns.items())) or info
            resolved = {shape: resolve(info, key, event) for shape, event in examples.items()}
        for shape, resolution in resolved.items():
            if resolution.new_columns:  # not there even after ADD COLUMN: give up on the event
                names = ", ".join(name for name, _ in resolution.new_columns)
                resolved[shape] = Resolution(error=MappingError(f"columns not addable: {names}"))
        self._resolutions_for(info, key).update(resolved)
        return resolved

    def _resolutions_for(self, info: TableInfo, key: tuple[str, ...]) -> dict[Shape, Resolution]:
        """Resolutions stay valid while the table description (and key) does."""
        cached = self._resolutions.get(info.name)
        if cached is None or cached[0] is not info or cached[1] != key or len(cached[2]) > 1024:
            cached = self._resolutions[info.name] = (info, key, {})
        return cached[2]

    # --- applying: one transaction for the whole batch -------------------------------------

    def _apply(self, conn: psycopg.Connection, plans: list[_TargetPlan]) -> None:
        with conn.transaction(), conn.cursor() as cur:
            for plan in plans:
                self._apply_target(cur, plan)

    def _apply_target(self, cur: psycopg.Cursor, plan: _TargetPlan) -> None:
        schema = self._catalog.schema
        cur.execute(q.LOCK_TARGET, (f"fanout:{schema}.{plan.target}",))
        batch, ref = plan.batch, plan.ref
        if batch.truncate_version is not None:
            self._truncate(cur, plan.target, ref, batch.truncate_version)
        if ref is None:
            return
        for layout, staged in batch.rows.items():
            _copy(
                cur,
                q.copy_into_staging(ref, layout.columns, binary=staged.types is not None),
                staged,
            )
        if batch.deletes:
            cur.execute(q.apply_deletes(ref))
            plan.deletes_applied = cur.execute(q.remember_deletes(ref), (plan.target,)).rowcount
        if batch.upserts:
            plan.upserts_applied = cur.execute(q.apply_upserts(ref), (plan.target,)).rowcount
            cur.execute(q.forget_tombstones(ref))

    def _truncate(
        self, cur: psycopg.Cursor, target: str, ref: q.TableRef | None, version: int
    ) -> None:
        cur.execute(q.record_truncation(self._catalog.schema), (target, version))
        if ref is None:
            return
        newer = cur.execute(q.has_rows_newer_than(ref), (version,)).fetchone()
        if newer is not None and newer[0]:
            cur.execute(q.delete_rows_up_to(ref), (version,))
        else:
            cur.execute(q.truncate_table(ref))
        if ref.key:  # without a key there is no tombstone table
            cur.execute(q.delete_rows_up_to(ref, tombstones=True), (version,))

    def _count(self, plans: list[_TargetPlan]) -> None:
        for plan in plans:
            batch = plan.batch
            written = EVENTS_WRITTEN.labels(self.name, plan.target, "upsert")
            written.inc(plan.upserts_applied)
            EVENTS_WRITTEN.labels(self.name, plan.target, "delete").inc(plan.deletes_applied)
            EVENTS_WRITTEN.labels(self.name, plan.target, "truncate").inc(batch.truncates)
            stale = batch.superseded + batch.upserts - plan.upserts_applied
            stale += batch.deletes - plan.deletes_applied
            STALE_SKIPPED.labels(self.name, plan.target).inc(stale)


def _copy(cur: psycopg.Cursor, statement: sql.Composed, staged: Staged) -> None:
    try:
        with cur.copy(statement) as copy:
            if staged.types is not None:
                copy.set_types(staged.types)
            for row in staged.rows:
                copy.write_row(row)
    except (TypeError, ValueError, OverflowError) as exc:
        if staged.types is None:
            raise
        # A binary dumper refused a value (an int8 out of range): in text format PostgreSQL
        # would have rejected it, so the batch fails the same way.
        raise PermanentError(f"postgres rejected the batch: {type(exc).__name__}: {exc}") from exc


def _conflict_key(info: TableInfo | None, data: list[ChangeEvent]) -> tuple[str, ...]:
    """The unique key the batch's events are matched on: the one their key columns form."""
    if info is None:
        return ()
    key = info.key_for(data[0].key) if data else None
    if key is not None:
        return key
    if info.unique_keys:
        return info.unique_keys[0]  # the events whose key differs fail one by one
    if not data:
        return ()  # truncates only
    raise MappingError(f"table {info.name} has no primary key or unique index to upsert on")


def _check_target_name(target: str) -> MappingError | None:
    try:
        check_identifier(target, "target table")
    except MappingError as exc:
        return exc
    if target.startswith(q.RESERVED_PREFIX) or target.endswith(q.TOMBSTONE_SUFFIX):
        return MappingError(f"target table name {target!r} is reserved for fanout's bookkeeping")
    return None
