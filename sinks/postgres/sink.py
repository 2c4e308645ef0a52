"""PostgreSQL sink: one table per target holding exactly the live rows of the newest events.

Delivery guarantee: the runtime delivers every event at least once; ``write`` may be called
again with the same batch, or with a batch older than one already written, and the tables
converge to the newest event per key anyway:

* every row carries ``_fanout_version``; an upsert replaces a row only if its version is >= the
  stored one (``ON CONFLICT … DO UPDATE … WHERE t._fanout_version <= EXCLUDED._fanout_version``);
* a delete removes the row if its version is >= the stored one and is remembered in
  ``<table>__fanout_tombstones`` (key + version); an upsert is applied only if it is newer than
  the key's tombstone. Tombstones older than ``tombstone_retention_hours`` are purged every
  ``tombstone_purge_interval_minutes``: a replay of events older than the retention could
  resurrect rows deleted that long ago;
* a truncate clears the rows whose version is <= its own and records that version in
  ``_fanout_truncations``; older events replayed later are not applied (the statements check
  the recorded version themselves, under the target's lock).

What this sink adds to the batch template (``sinks.base.batch``): ``prepare`` checks each
event's shape against the cached table description (``sinks.postgres.check``: new columns are
added, a type that does not fit is a per-event MappingError) and gives it a staging
:class:`Layout`; ``apply`` writes the collapsed batch in one transaction
(``sinks.postgres.write``). Tables: ``sinks.postgres.schema``; errors: ``sinks.postgres.errors``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import psycopg

from fanout.errors import ConfigError, MappingError, RetryableError
from fanout.events import ChangeEvent, Op
from fanout.settings import PostgresSettings
from sinks.base.batch import BatchSink, Failures, Prepared, TargetBatch
from sinks.base.errors import Verdict, mapped_errors
from sinks.base.names import NameRules
from sinks.postgres import sql as q
from sinks.postgres.check import (
    Layout,
    Resolution,
    Shape,
    Shapes,
    creation_columns,
    refuse_inexact,
    resolve,
)
from sinks.postgres.errors import RECONNECT, classify
from sinks.postgres.schema import Catalog, TableInfo, widenings
from sinks.postgres.types import (
    MAX_IDENTIFIER_BYTES,
    check_identifier,
    pg_type_sql,
    register_binary_dumpers,
)
from sinks.postgres.write import write_batch

log = logging.getLogger("fanout.sinks.postgres")

NAMES = NameRules(
    what="PostgreSQL table",
    max_bytes=MAX_IDENTIFIER_BYTES,
    reserved_prefixes=(q.RESERVED_PREFIX,),
    reserved_suffixes=(q.TOMBSTONE_SUFFIX,),
)


@dataclass(slots=True)
class Target:
    """A target's table as this batch sees it: None until the first change creates it."""

    info: TableInfo | None
    key: tuple[str, ...]  # the conflict key; () when no change can be applied


class PostgresSink(BatchSink[Layout, Target]):
    """Keeps ``<schema>.<target>`` tables equal to the newest event per key (see module doc)."""

    name: ClassVar[str] = "postgres"

    def __init__(self, settings: PostgresSettings) -> None:
        super().__init__()
        self._settings = settings
        try:
            schema = check_identifier(settings.db_schema, "schema")
        except MappingError as exc:
            raise ConfigError(f"sinks.postgres.schema: {exc}") from None
        self._catalog = Catalog(schema)
        self._conn: psycopg.Connection | None = None
        self._shapes = Shapes()
        self._resolutions: dict[
            str, tuple[TableInfo, tuple[str, ...], dict[Shape, Resolution]]
        ] = {}
        self.purge_interval_s = 60.0 * settings.tombstone_purge_interval_minutes

    def open(self) -> None:
        with self.driver_errors():
            self.purge_tombstones()
        self.purged()

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    # --- the template's hooks --------------------------------------------------------------

    def check_target(self, target: str) -> str:
        return NAMES.check(target)

    def classify(self, exc: BaseException) -> Verdict | None:
        return classify(exc)

    @contextmanager
    def driver_errors(self) -> Iterator[None]:
        try:
            with mapped_errors(self.classify):
                yield
        except RetryableError as exc:
            if isinstance(exc.__cause__, psycopg.Error):
                self._catalog.reset()
                if isinstance(exc.__cause__, RECONNECT) or (
                    self._conn is not None and self._conn.broken
                ):
                    self.close()  # reconnect on the next write
            raise

    def prepare(
        self, target: str, changes: list[ChangeEvent], failures: Failures
    ) -> Prepared[Layout, Target]:
        conn = self._connection()
        info, key = self._table_and_key(conn, target, changes, failures)
        if info is None or not key:  # truncates only (the table may not even exist)
            return Prepared(Target(info, key), [None] * len(changes))
        info, layouts = self._layouts(conn, info, key, changes, failures)
        return Prepared(Target(info, key), layouts, key)

    def apply(self, batches: list[TargetBatch[Layout, Target]], failures: Failures) -> None:
        conn = self._connection()
        refs = [self._staging_ref(conn, batch) for batch in batches]  # DDL: own transactions
        applied = write_batch(conn, self._catalog.schema, batches, refs)
        for batch, counts in zip(batches, applied, strict=True):
            batch.report(counts)

    def _staging_ref(
        self, conn: psycopg.Connection, batch: TargetBatch[Layout, Target]
    ) -> q.TableRef | None:
        """The staging table of the target (None: no table, e.g. a truncate of a table never
        created); the tombstone table is made sure of too."""
        target = batch.context
        if target.info is None:
            return None
        info = self._catalog.table(conn, batch.target) or target.info
        ref = self._catalog.staging(conn, info, target.key)
        if target.key:
            self._catalog.ensure_tombstones(conn, info, target.key)
        return ref

    def purge_tombstones(self) -> bool:
        conn = self._connection()
        hours = self._settings.tombstone_retention_hours
        purged = 0
        for table in self._catalog.tombstone_tables(conn):
            with conn.transaction():
                purged += conn.execute(
                    q.purge_tombstones(self._catalog.schema, table), (hours,)
                ).rowcount
        if purged:
            log.info("purged %d tombstones older than %d hours", purged, hours)
        return False

    # --- connection ------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._catalog.reset()
            self._conn = psycopg.connect(**self._settings.conninfo(), autocommit=True)
            register_binary_dumpers(self._conn)
            self._catalog.setup(self._conn)
        return self._conn

    # --- prepare: the table, its key, each change's layout ---------------------------------

    def _table_and_key(
        self, conn: psycopg.Connection, target: str, changes: list[ChangeEvent], failures: Failures
    ) -> tuple[TableInfo | None, tuple[str, ...]]:
        """The target table (created if needed) and its conflict key; () if none is usable,
        and then every change has failed."""
        info = None
        try:
            info = self._table_for(conn, target, changes)
            return info, _conflict_key(info, changes)
        except MappingError as exc:  # the whole target is unusable: every change is poison
            for event in changes:
                failures.reject(event, exc)
            return info, ()

    def _table_for(
        self, conn: psycopg.Connection, target: str, changes: list[ChangeEvent]
    ) -> TableInfo | None:
        """The target table, created from the first upsert (or delete) of ``changes`` if missing."""
        info = self._catalog.table(conn, target)
        if info is not None or not changes:
            return info
        first = next((event for event in changes if event.op is Op.UPSERT), changes[0])
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
        failures: Failures,
        *,
        may_widen: bool = True,
    ) -> tuple[TableInfo, list[Layout | None]]:
        """Each event's layout (None if it failed) and the table they were laid out on;
        unseen shapes are resolved, with DDL. A shape that widens a column's type changes
        the table first, and then every event is laid out again on the table as it is."""
        known = self._resolutions_for(info, key)
        layouts: list[Layout | None] = []
        unseen: dict[Shape, list[int]] = {}
        rejected: list[tuple[int, MappingError]] = []
        shape_of = self._shapes.of
        for i, event in enumerate(events):
            shape = shape_of(event)
            resolution = known.get(shape)
            if resolution is None:
                unseen.setdefault(shape, []).append(i)
            elif resolution.error is not None:
                rejected.append((i, resolution.error))
            layouts.append(None if resolution is None else resolution.layout)
        if unseen and may_widen and self._settings.widen_columns:
            widened = self._widen(conn, info, [events[indexes[0]] for indexes in unseen.values()])
            if widened is not None:
                return self._layouts(conn, widened, key, events, failures, may_widen=False)
        for i, error in rejected:
            failures.reject(events[i], error)
        if unseen:
            examples = {shape: events[indexes[0]] for shape, indexes in unseen.items()}
            resolved = self._resolve(conn, info, key, examples)
            for shape, indexes in unseen.items():
                resolution = resolved[shape]
                for i in indexes:
                    if resolution.error is not None:
                        failures.reject(events[i], resolution.error)
                    layouts[i] = resolution.layout
        for i, error in refuse_inexact(events, layouts):  # a value the column would round
            failures.reject(events[i], error)
            layouts[i] = None
        return info, layouts

    def _widen(
        self, conn: psycopg.Connection, info: TableInfo, examples: list[ChangeEvent]
    ) -> TableInfo | None:
        """The table after widening the columns ``examples`` declare wider; None if none."""
        columns = widenings(info, examples)
        if not columns:
            return None
        return self._catalog.widen_columns(conn, info.name, columns) or info

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


def _conflict_key(info: TableInfo | None, changes: list[ChangeEvent]) -> tuple[str, ...]:
    """The unique key the changes are matched on: the one their key columns form."""
    if info is None:
        return ()
    key = info.key_for(changes[0].key) if changes else None
    if key is not None:
        return key
    if info.unique_keys:
        return info.unique_keys[0]  # the events whose key differs fail one by one
    if not changes:
        return ()  # truncates only
    raise MappingError(f"table {info.name} has no primary key or unique index to upsert on")
