"""What the PostgreSQL sink knows about its tables, and the DDL that creates and evolves them.

Package-private helper of ``sinks.postgres.sink``. Table descriptions are cached per target and
refreshed after every DDL statement the sink runs, or when :meth:`Catalog.reset` is called
(reconnect, or the store reported a missing table or column). DDL always runs in its own short
transaction, before the batch's data transaction, so a failed batch never rolls back a column
the cache already believes in. ``CREATE … IF NOT EXISTS`` races between two workers are retried.

A column whose declared type at the source became wider (``sinks.base.widening``: int ->
bigint, real -> double precision, a larger numeric or varchar) is widened the same way
(``ALTER COLUMN … TYPE``) when the sink's ``widen_columns`` setting allows it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from fanout.events import ChangeEvent, Column
from sinks.base.widening import declared_width, widens
from sinks.postgres import sql as q
from sinks.postgres.types import MAX_IDENTIFIER_BYTES, PgColumn, widened_type

log = logging.getLogger("fanout.sinks.postgres")

_DDL_RACES = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.DuplicateTable,
    psycopg.errors.DuplicateObject,
    psycopg.errors.DuplicateColumn,
)
_BOOKKEEPING = frozenset({q.VERSION, q.UPDATED_AT})


@dataclass(frozen=True, slots=True)
class TableInfo:
    """One existing target table: its columns in table order and its usable unique keys."""

    schema: str
    name: str
    columns: dict[str, PgColumn]
    unique_keys: tuple[tuple[str, ...], ...]  # primary key first
    tombstones: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tombstones", tombstone_table_name(self.name))

    def key_for(self, names: Iterable[str]) -> tuple[str, ...] | None:
        """The unique key made of exactly ``names`` (in the index's order), if there is one."""
        wanted = frozenset(names)
        return next((key for key in self.unique_keys if frozenset(key) == wanted), None)

    @property
    def writable(self) -> tuple[str, ...]:
        return tuple(
            name
            for name, column in self.columns.items()
            if not column.generated and name not in _BOOKKEEPING
        )

    def column_types(self, names: Iterable[str]) -> list[tuple[str, sql.Composable]]:
        return [(name, sql.SQL(self.columns[name].type_sql)) for name in names]


def tombstone_table_name(table: str) -> str:
    """``<table>__fanout_tombstones``, shortened with a hash when that exceeds 63 bytes."""
    name = table + q.TOMBSTONE_SUFFIX
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha1(table.encode()).hexdigest()[:8]
    room = MAX_IDENTIFIER_BYTES - len(q.TOMBSTONE_SUFFIX) - len(digest) - 1
    prefix = table.encode()[:room].decode(errors="ignore")
    return f"{prefix}_{digest}{q.TOMBSTONE_SUFFIX}"


class Catalog:
    """Cached table descriptions and the session's staging tables for one schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._tables: dict[str, TableInfo] = {}
        self._tombstones_ready: set[str] = set()
        self._staging: dict[str, tuple[tuple[tuple[str, str], ...], q.TableRef]] = {}
        self._staging_seq = 0

    def reset(self) -> None:
        """Forget everything; staging tables are gone anyway when the session is."""
        self._tables.clear()
        self._tombstones_ready.clear()
        self._staging.clear()

    def setup(self, conn: psycopg.Connection) -> None:
        # CREATE SCHEMA checks the database privilege even when the schema exists: a role
        # given only a pre-made schema must not need it.
        if conn.execute(q.FIND_SCHEMA, (self.schema,)).fetchone() is None:
            run_ddl(conn, q.create_schema(self.schema))
        run_ddl(conn, q.create_truncations(self.schema))

    def table(self, conn: psycopg.Connection, name: str) -> TableInfo | None:
        """The target table as it is now (from the cache when known); None if it is missing."""
        if name not in self._tables:
            info = self._introspect(conn, name)
            if info is None:
                return None
            if not info.columns.keys() >= _BOOKKEEPING:
                log.info("adding bookkeeping columns to existing table %s.%s", self.schema, name)
                run_ddl(conn, q.add_bookkeeping(self.schema, name))
                info = self._introspect(conn, name)
            if info is not None:
                self._tables[name] = info
        return self._tables.get(name)

    def create_table(
        self,
        conn: psycopg.Connection,
        name: str,
        columns: Sequence[tuple[str, sql.Composable]],
        key: Sequence[str],
    ) -> TableInfo | None:
        log.info("creating table %s.%s", self.schema, name)
        run_ddl(conn, q.create_table(self.schema, name, columns, key))
        return self.refresh(conn, name)

    def add_columns(
        self, conn: psycopg.Connection, name: str, columns: Sequence[tuple[str, sql.Composable]]
    ) -> TableInfo | None:
        log.info("adding columns %s to %s.%s", [c for c, _ in columns], self.schema, name)
        run_ddl(conn, q.add_columns(self.schema, name, columns))
        return self.refresh(conn, name)

    def widen_columns(
        self, conn: psycopg.Connection, name: str, columns: Sequence[tuple[str, sql.Composable]]
    ) -> TableInfo | None:
        """Change the columns to their wider types, in one short transaction of its own.

        The lock wait is bounded by the session's lock_timeout (a busy table: TRANSIENT, the
        batch is retried); the rewrite itself (int -> bigint rewrites the table under an
        ACCESS EXCLUSIVE lock) is not cut by statement_timeout, which would only restart it.
        """
        described = [(c, t.as_string(conn)) for c, t in columns]
        log.warning("widening columns of %s.%s: %s", self.schema, name, described)
        for attempt in (1, 2, 3):
            try:
                with conn.transaction():
                    conn.execute(q.NO_STATEMENT_TIMEOUT)
                    conn.execute(q.alter_column_types(self.schema, name, columns))
                break
            except psycopg.errors.DeadlockDetected:  # another worker widening the same table
                if attempt == 3:
                    raise
        return self.refresh(conn, name)

    def refresh(self, conn: psycopg.Connection, name: str) -> TableInfo | None:
        self._tables.pop(name, None)
        return self.table(conn, name)

    def ensure_tombstones(
        self, conn: psycopg.Connection, info: TableInfo, key: tuple[str, ...]
    ) -> None:
        if info.name in self._tombstones_ready:
            return
        run_ddl(conn, q.create_tombstones(self.schema, info.tombstones, info.column_types(key)))
        self._tombstones_ready.add(info.name)

    def staging(
        self, conn: psycopg.Connection, info: TableInfo, key: tuple[str, ...]
    ) -> q.TableRef:
        """The session's staging table for ``info``, recreated when the table's columns changed."""
        writable = info.writable
        signature = tuple((name, info.columns[name].type_sql) for name in writable)
        cached = self._staging.get(info.name)
        if cached is not None and cached[0] == signature and cached[1].key == key:
            return cached[1]
        if cached is not None:
            run_ddl(conn, q.drop_staging(cached[1].staging))
        self._staging_seq += 1
        ref = q.TableRef(
            schema=self.schema,
            table=info.name,
            tombstones=info.tombstones,
            staging=f"_fanout_stage_{self._staging_seq}",
            key=key,
            writable=writable,
            has_updated_at=q.UPDATED_AT in info.columns,
        )
        run_ddl(conn, q.create_staging(ref.staging, info.column_types(writable)))
        self._staging[info.name] = (signature, ref)
        return ref

    def tombstone_tables(self, conn: psycopg.Connection) -> list[str]:
        with conn.cursor() as cur:
            cur.execute(q.LIST_TOMBSTONE_TABLES, (self.schema,))
            return [row[0] for row in cur.fetchall()]

    def _introspect(self, conn: psycopg.Connection, name: str) -> TableInfo | None:
        with conn.cursor() as cur:
            found = cur.execute(q.FIND_TABLE, (self.schema, name)).fetchone()
            if found is None:
                return None
            oid = found[0]
            columns = {
                row[0]: PgColumn(
                    name=row[0], type_sql=row[1], base=row[2], is_array=row[3], generated=row[4]
                )
                for row in cur.execute(q.LIST_COLUMNS, (oid,)).fetchall()
            }
            keys = tuple(tuple(row[0]) for row in cur.execute(q.LIST_UNIQUE_KEYS, (oid,)))
        return TableInfo(schema=self.schema, name=name, columns=columns, unique_keys=keys)


def widenings(info: TableInfo, events: Iterable[ChangeEvent]) -> list[tuple[str, sql.Composable]]:
    """The columns of ``info`` that the events' declared types safely widen, each with the
    widest type some event declares (events without a schema never widen anything)."""
    chosen: dict[str, Column] = {}
    for event in events:
        for column in event.columns:
            target = info.columns.get(column.name)
            if target is None or widened_type(column, target) is None:
                continue
            before = chosen.get(column.name)
            if before is None or _wider(before, column):
                chosen[column.name] = column
    found = []
    for name, column in chosen.items():
        type_ = widened_type(column, info.columns[name])
        if type_ is not None:
            found.append((name, type_))
    return found


def _wider(before: Column, column: Column) -> bool:
    old, new = declared_width(before), declared_width(column)
    return old is not None and new is not None and widens(old, new)


def run_ddl(conn: psycopg.Connection, statement: sql.Composed, attempts: int = 3) -> None:
    """Run one DDL statement in its own transaction; a concurrent creator's win is no error."""
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                conn.execute(statement)
            return
        except _DDL_RACES:
            if attempt == attempts:
                raise
