"""ClickHouse sink: one ReplacingMergeTree table per target, current state read with FINAL.

Delivery guarantee: effectively once for the state a reader sees. ``write`` may be called again
with the same batch, with older batches, or alongside a backfill; every row carries the event's
version in ``_fanout_version`` and ``ReplacingMergeTree(_fanout_version, _fanout_deleted)`` keeps
the newest version per key, so ``SELECT … FROM t FINAL`` (or the ``t_current`` view) converges
to the newest event per key whatever the order. Deletes are rows with ``_fanout_deleted = 1``
and the delete's version, so an older upsert replayed later loses to them. Truncations are
version watermarks plus tombstones (see ``sinks.clickhouse.schema``). Without FINAL a reader
may see superseded versions until ClickHouse merges them; an identical retried insert is
dropped by ClickHouse through ``insert_deduplication_token``.

What this sink adds to the batch template (``sinks.base.batch``): per target, one check of
every event against the table with at most one CREATE/ALTER (``prepare``), and one columnar
insert of the collapsed rows (``apply``). Modes: ``server`` (clickhouse-connect over HTTP) or
``embedded`` (chDB, the default when no host is configured).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

from fanout.errors import MappingError, PermanentError, RetryableError
from fanout.events import ChangeEvent
from fanout.runtime.metrics import COLUMNS_UNKNOWN
from fanout.settings import ClickHouseSettings
from sinks.base.batch import BatchSink, Failures, Prepared, TargetBatch
from sinks.base.errors import Verdict
from sinks.clickhouse.backends import Backend, open_backend
from sinks.clickhouse.check import CheckedEvents, check_events
from sinks.clickhouse.errors import classify, clickhouse_code
from sinks.clickhouse.schema import Catalog, TableSchema, widenings
from sinks.clickhouse.types import NAMES, low_cardinality_columns
from sinks.clickhouse.write import (
    Carried,
    StoredRead,
    build_insert,
    deduplication_token,
    partial_rows,
    read_stored_many,
)

log = logging.getLogger(__name__)

# The table changed under us (dropped, or a column removed): re-read it and try again.
_SCHEMA_CHANGED_CODES = frozenset({16, 47, 60})
_VALID = True  # the payload of a change that passed the table check


@dataclass(slots=True)
class Table:
    """A target's table as the batch is written into it."""

    schema: TableSchema | None
    present: set[str] = field(default_factory=set)  # data columns some valid event carries


class ClickHouseSink(BatchSink[bool, Table]):
    name: ClassVar[str] = "clickhouse"

    def __init__(self, settings: ClickHouseSettings) -> None:
        super().__init__()
        self.settings = settings
        self._backend: Backend | None = None
        self._catalog: Catalog | None = None
        self._watermarks: dict[str, int] = {}  # the stored truncate versions, read this write

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

    # ---- the template's hooks ------------------------------------------------------------

    def check_target(self, target: str) -> str:
        return NAMES.check(target)

    def classify(self, exc: BaseException) -> Verdict | None:
        return classify(exc)

    def truncate_watermarks(self, targets: list[str]) -> dict[str, int]:
        self._watermarks = self.catalog.watermarks(targets)
        return self._watermarks

    def prepare(
        self, target: str, changes: list[ChangeEvent], failures: Failures
    ) -> Prepared[bool, Table]:
        try:
            if not changes:
                return Prepared(Table(self.catalog.table(target)), [])
            schema, checked = self._prepare_table(target, changes)
        except MappingError as exc:  # the target's table cannot take fanout's writes
            for event in changes:
                failures.reject(event, _mapping_error(event, str(exc)))
            return Prepared(Table(None), [None] * len(changes))
        payloads: list[bool | None] = []
        for event, problem in zip(changes, checked.problems, strict=True):
            if problem is None:
                payloads.append(_VALID)
            else:
                failures.reject(event, _mapping_error(event, problem))
                payloads.append(None)
        return Prepared(Table(schema, checked.present), payloads, checked.key)

    def apply(self, batches: list[TargetBatch[bool, Table]], failures: Failures) -> None:
        stored = self._read_stored(batches)
        for batch, carried in zip(batches, stored, strict=True):
            if batch.truncate is not None:
                self._truncate(batch)
            if batch.newest:
                self._insert(batch, failures, carried)

    # ---- steps ---------------------------------------------------------------------------

    def _prepare_table(
        self, target: str, changes: list[ChangeEvent]
    ) -> tuple[TableSchema | None, CheckedEvents]:
        """Check the events against the table; create it or add columns when needed."""
        low_cardinality = low_cardinality_columns(self.settings.low_cardinality, target)
        schema = self.catalog.table(target)
        if schema is not None and self.settings.widen_columns:
            wider = widenings(schema, changes)
            if wider:  # a source column's type grew: follow it before checking the events
                self.catalog.widen_columns(target, wider)
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

    def _truncate(self, batch: TargetBatch[bool, Table]) -> None:
        truncate = batch.truncate
        assert truncate is not None
        self.catalog.truncate(batch.target, truncate.version, truncate.source_ts_ms or 0)

    def _insert(
        self, batch: TargetBatch[bool, Table], failures: Failures, carried: Carried | _Unread | None
    ) -> None:
        rows = [event for event, _ in batch.newest]
        table = batch.context
        try:
            if isinstance(carried, _Unread):
                carried = self._carry_forward(batch, rows, table)
            unknown = self._insert_rows(batch, rows, table, carried)
        except PermanentError as exc:
            if clickhouse_code(exc) not in _SCHEMA_CHANGED_CODES:
                raise
            # The table changed under the sink (dropped, a column removed): re-read or
            # re-create it, check the rows against it again and try once more.
            log.warning(
                "table %r changed underneath the sink; re-reading it: %s", batch.target, exc
            )
            self.catalog.forget(batch.target)
            schema, checked = self._prepare_table(batch.target, rows)
            for event, problem in checked.rejected:
                failures.reject(event, _mapping_error(event, problem))
            rows = checked.valid
            table = Table(schema, checked.present)
            carried = self._carry_forward(batch, rows, table)
            unknown = self._insert_rows(batch, rows, table, carried)
        batch.applied.update(event.op for event in rows)
        if unknown:
            COLUMNS_UNKNOWN.labels(self.name, batch.target).inc(unknown)

    def _insert_rows(
        self,
        batch: TargetBatch[bool, Table],
        rows: list[ChangeEvent],
        table: Table,
        carried: Carried | None,
    ) -> int:
        """Insert ``rows`` (``carried``: what partial rows lack); returns how many columns of
        them no stored row could complete."""
        if not rows or table.schema is None:
            return 0
        insert = build_insert(rows, table.schema, table.present, carried)
        token = deduplication_token(batch.target, batch.events, insert)
        self.backend.insert_columns(
            batch.target,
            insert.column_names,
            insert.columns,
            insert.column_types,
            {"insert_deduplication_token": token},
        )
        return 0 if carried is None else carried.unknown

    def _read_stored(
        self, batches: list[TargetBatch[bool, Table]]
    ) -> list[Carried | _Unread | None]:
        """For each batch, the stored values of the columns its partial rows lack (None when
        every row is whole), every target's in one query in server mode: one round trip.

        A table that changed underneath the sink fails the query: then each insert reads its
        own, where that change is recovered from."""
        reads = [self._stored_read(b, [e for e, _ in b.newest], b.context) for b in batches]
        wanted = [read for read in reads if read is not None]
        try:
            found = iter(read_stored_many(self.backend, wanted))
        except PermanentError as exc:
            if clickhouse_code(exc) not in _SCHEMA_CHANGED_CODES:
                raise
            return [_UNREAD] * len(batches)
        return [None if read is None else next(found) for read in reads]

    def _carry_forward(
        self, batch: TargetBatch[bool, Table], rows: list[ChangeEvent], table: Table
    ) -> Carried | None:
        """The stored values of the columns partial rows lack (None when every row is whole:
        then nothing is read)."""
        read = self._stored_read(batch, rows, table)
        return None if read is None else read_stored_many(self.backend, [read])[0]

    def _stored_read(
        self, batch: TargetBatch[bool, Table], rows: list[ChangeEvent], table: Table
    ) -> StoredRead | None:
        """What ``rows``' partial rows need read (None when every row is whole)."""
        schema = table.schema
        if not rows or schema is None:
            return None
        partial = partial_rows(rows, schema, table.present)
        if partial is None:
            return None
        watermark = max(self._watermarks.get(batch.target, 0), batch.truncate_version or 0)
        return StoredRead(batch.target, schema, rows, partial, watermark)


class _Unread:
    """The stored values were not read up front: the insert reads its own."""


_UNREAD = _Unread()


def _mapping_error(event: ChangeEvent, reason: str) -> MappingError:
    return MappingError(f"clickhouse {event.target!r}: {reason}")
