"""The SQL the PostgreSQL sink runs, built with ``psycopg.sql``: no identifier formatted by hand.

Package-private helper of ``sinks.postgres.sink``. Every builder takes a :class:`TableRef` (the
target, its tombstone table and the session's staging table) and returns a ``sql.Composed``;
statements with values take them as ``%s`` parameters, in the order the docstring gives.

Aliases: ``t`` is the target table, ``s`` the staging table, ``tb`` the tombstone table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from psycopg import sql

VERSION = "_fanout_version"
UPDATED_AT = "_fanout_updated_at"
DELETED_AT = "_fanout_deleted_at"
DELETE_FLAG = "_fanout_delete"  # staging only: the staged row is a delete
TRUNCATIONS = "_fanout_truncations"
TOMBSTONE_SUFFIX = "__fanout_tombstones"
RESERVED_PREFIX = "_fanout_"

_V = sql.Identifier(VERSION)


@dataclass(frozen=True, slots=True)
class TableRef:
    """Names of one target's tables and the columns the write path touches."""

    schema: str
    table: str
    tombstones: str
    staging: str
    key: tuple[str, ...]  # conflict target: the primary key (or a unique key) in key order
    writable: tuple[str, ...]  # columns an upsert replaces, keys first; no bookkeeping
    has_updated_at: bool = True

    @property
    def target(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def tomb(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.tombstones)

    @property
    def stage(self) -> sql.Identifier:
        return sql.Identifier("pg_temp", self.staging)

    @property
    def truncations(self) -> sql.Identifier:
        return sql.Identifier(self.schema, TRUNCATIONS)


# --- DDL -------------------------------------------------------------------------------------


def create_schema(schema: str) -> sql.Composed:
    return sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))


def create_truncations(schema: str) -> sql.Composed:
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (target text PRIMARY KEY, {} bigint NOT NULL,"
        " truncated_at timestamptz NOT NULL DEFAULT now())"
    ).format(sql.Identifier(schema, TRUNCATIONS), _V)


def create_table(
    schema: str, table: str, columns: Sequence[tuple[str, sql.Composable]], key: Sequence[str]
) -> sql.Composed:
    """``columns`` are (name, type); key columns are NOT NULL, the others nullable."""
    defs = [_column_def(name, type_, not_null=name in key) for name, type_ in columns]
    defs += [
        sql.SQL("{} bigint NOT NULL").format(_V),
        sql.SQL("{} timestamptz NOT NULL DEFAULT now()").format(sql.Identifier(UPDATED_AT)),
        sql.SQL("PRIMARY KEY ({})").format(_idents(key)),
    ]
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(defs)
    )


def add_bookkeeping(schema: str, table: str) -> sql.Composed:
    """Existing tables get the bookkeeping columns; existing rows count as version 0."""
    return sql.SQL(
        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} bigint NOT NULL DEFAULT 0,"
        " ADD COLUMN IF NOT EXISTS {} timestamptz NOT NULL DEFAULT now()"
    ).format(sql.Identifier(schema, table), _V, sql.Identifier(UPDATED_AT))


def add_columns(
    schema: str, table: str, columns: Sequence[tuple[str, sql.Composable]]
) -> sql.Composed:
    adds = [
        sql.SQL("ADD COLUMN IF NOT EXISTS {} {}").format(sql.Identifier(name), type_)
        for name, type_ in columns
    ]
    return sql.SQL("ALTER TABLE {} {}").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(adds)
    )


def alter_column_types(
    schema: str, table: str, columns: Sequence[tuple[str, sql.Composable]]
) -> sql.Composed:
    """``columns`` are (name, new type); ``USING`` is not needed for the widenings made here."""
    alters = [
        sql.SQL("ALTER COLUMN {} TYPE {}").format(sql.Identifier(name), type_)
        for name, type_ in columns
    ]
    return sql.SQL("ALTER TABLE {} {}").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(alters)
    )


# A table rewrite (int -> bigint) may outlast statement_timeout; cutting it only starts it over.
NO_STATEMENT_TIMEOUT = sql.SQL("SET LOCAL statement_timeout = 0")


def create_tombstones(
    schema: str, tombstones: str, key: Sequence[tuple[str, sql.Composable]]
) -> sql.Composed:
    defs = [_column_def(name, type_, not_null=True) for name, type_ in key]
    defs += [
        sql.SQL("{} bigint NOT NULL").format(_V),
        sql.SQL("{} timestamptz NOT NULL DEFAULT now()").format(sql.Identifier(DELETED_AT)),
        sql.SQL("PRIMARY KEY ({})").format(_idents([name for name, _ in key])),
    ]
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
        sql.Identifier(schema, tombstones), sql.SQL(", ").join(defs)
    )


def create_staging(staging: str, columns: Sequence[tuple[str, sql.Composable]]) -> sql.Composed:
    """Session-local, unlogged, emptied by every commit: rows live for one batch."""
    defs = [_column_def(name, type_, not_null=False) for name, type_ in columns]
    defs += [
        sql.SQL("{} bigint NOT NULL").format(_V),
        sql.SQL("{} boolean NOT NULL DEFAULT false").format(sql.Identifier(DELETE_FLAG)),
    ]
    return sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DELETE ROWS").format(
        sql.Identifier(staging), sql.SQL(", ").join(defs)
    )


def drop_staging(staging: str) -> sql.Composed:
    return sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("pg_temp", staging))


# --- catalog ---------------------------------------------------------------------------------

FIND_SCHEMA = sql.SQL("SELECT 1 FROM pg_namespace WHERE nspname = %s")

FIND_TABLE = sql.SQL(
    "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')"
)

LIST_COLUMNS = sql.SQL(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod),"
    " COALESCE(et.typname, t.typname), et.oid IS NOT NULL, a.attgenerated <> ''"
    " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
    " LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'"
    " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
)

# Unique keys usable as an ON CONFLICT target: the primary key first.
LIST_UNIQUE_KEYS = sql.SQL(
    "SELECT ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)"
    " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.ord)"
    " FROM pg_index i WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid"
    " AND i.indpred IS NULL AND i.indexprs IS NULL ORDER BY i.indisprimary DESC"
)

LIST_TOMBSTONE_TABLES = sql.SQL(
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relkind = 'r' AND right(c.relname, {}) = {}"
).format(sql.Literal(len(TOMBSTONE_SUFFIX)), sql.Literal(TOMBSTONE_SUFFIX))


def purge_tombstones(schema: str, tombstones: str) -> sql.Composed:
    """Params: retention hours."""
    return sql.SQL("DELETE FROM {} WHERE {} < now() - make_interval(hours => %s)").format(
        sql.Identifier(schema, tombstones), sql.Identifier(DELETED_AT)
    )


# --- the write path --------------------------------------------------------------------------

LOCK_TARGET = sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))")


@lru_cache(maxsize=1024)
def copy_into_staging(ref: TableRef, columns: Sequence[str], *, binary: bool) -> sql.Composed:
    options = sql.SQL(" (FORMAT BINARY)" if binary else "")
    return sql.SQL("COPY {} ({}) FROM STDIN{}").format(ref.stage, _idents(columns), options)


def record_truncation(schema: str) -> sql.Composed:
    """Params: target, version. Keeps the highest truncate version seen per target."""
    return sql.SQL(
        "INSERT INTO {tr} AS tr (target, {v}) VALUES (%s, %s) ON CONFLICT (target)"
        " DO UPDATE SET {v} = EXCLUDED.{v}, truncated_at = now() WHERE tr.{v} < EXCLUDED.{v}"
    ).format(tr=sql.Identifier(schema, TRUNCATIONS), v=_V)


@lru_cache(maxsize=1024)
def has_rows_newer_than(ref: TableRef) -> sql.Composed:
    """Params: version."""
    return sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {} > %s)").format(ref.target, _V)


@lru_cache(maxsize=1024)
def truncate_table(ref: TableRef) -> sql.Composed:
    return sql.SQL("TRUNCATE {}").format(ref.target)


@lru_cache(maxsize=1024)
def delete_rows_up_to(ref: TableRef, *, tombstones: bool = False) -> sql.Composed:
    """Params: version. Clears the target (or its tombstones) up to a truncate's version."""
    table = ref.tomb if tombstones else ref.target
    return sql.SQL("DELETE FROM {} WHERE {} <= %s").format(table, _V)


@lru_cache(maxsize=1024)
def apply_deletes(ref: TableRef) -> sql.Composed:
    return sql.SQL(
        "DELETE FROM {t} AS t USING {s} AS s WHERE s.{flag} AND {keys} AND t.{v} <= s.{v}"
    ).format(
        t=ref.target,
        s=ref.stage,
        flag=sql.Identifier(DELETE_FLAG),
        keys=_join_on("t", ref.key),
        v=_V,
    )


@lru_cache(maxsize=1024)
def remember_deletes(ref: TableRef) -> sql.Composed:
    """Params: target. Raises each key's tombstone to the delete's version unless a newer live
    row or a newer truncate already covers it; rowcount = deletes that are newest for their key."""
    return sql.SQL(
        "INSERT INTO {tb} AS tb ({cols}, {v}) SELECT {s_cols}, s.{v} FROM {s} AS s"
        " WHERE s.{flag} AND s.{v} > {watermark}"
        " AND NOT EXISTS (SELECT 1 FROM {t} AS t WHERE {keys} AND t.{v} > s.{v})"
        " ON CONFLICT ({cols}) DO UPDATE SET {v} = EXCLUDED.{v}, {deleted_at} = now()"
        " WHERE tb.{v} < EXCLUDED.{v}"
    ).format(
        tb=ref.tomb,
        cols=_idents(ref.key),
        s_cols=_qualified("s", ref.key),
        s=ref.stage,
        t=ref.target,
        flag=sql.Identifier(DELETE_FLAG),
        watermark=_truncation_watermark(ref),
        keys=_join_on("t", ref.key),
        deleted_at=sql.Identifier(DELETED_AT),
        v=_V,
    )


@lru_cache(maxsize=1024)
def apply_upserts(
    ref: TableRef, columns: tuple[str, ...], *, report_inserts: bool = False
) -> sql.Composed:
    """Params: target. Inserts or updates rows whose version is >= the stored one and newer
    than the key's tombstone and the target's last truncate; rowcount = upserts applied.

    ``columns`` are the staged columns the events carry (keys included): an update sets only
    those, so a column an event does not carry keeps its stored value. With
    ``report_inserts`` each applied row returns whether it was inserted (no stored row).
    """
    updates = [
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(name))
        for name in columns
        if name not in ref.key
    ]
    updates.append(sql.SQL("{v} = EXCLUDED.{v}").format(v=_V))
    if ref.has_updated_at:
        updates.append(sql.SQL("{} = now()").format(sql.Identifier(UPDATED_AT)))
    returning = sql.SQL(" RETURNING (t.xmax = 0)" if report_inserts else "")
    return sql.SQL(
        "INSERT INTO {t} AS t ({cols}, {v}) SELECT {s_cols}, s.{v} FROM {s} AS s"
        " WHERE NOT s.{flag} AND s.{v} > {watermark}"
        " AND NOT EXISTS (SELECT 1 FROM {tb} AS tb WHERE {tb_keys} AND tb.{v} >= s.{v})"
        " ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE t.{v} <= EXCLUDED.{v}{returning}"
    ).format(
        t=ref.target,
        cols=_idents(columns),
        s_cols=_qualified("s", columns),
        s=ref.stage,
        flag=sql.Identifier(DELETE_FLAG),
        watermark=_truncation_watermark(ref),
        tb=ref.tomb,
        tb_keys=_join_on("tb", ref.key),
        key=_idents(ref.key),
        updates=sql.SQL(", ").join(updates),
        returning=returning,
        v=_V,
    )


@lru_cache(maxsize=1024)
def clear_staging(ref: TableRef) -> sql.Composed:
    return sql.SQL("TRUNCATE {}").format(ref.stage)


@lru_cache(maxsize=1024)
def forget_tombstones(ref: TableRef) -> sql.Composed:
    """Drops tombstones older than a staged upsert of the same key: a re-insert supersedes them."""
    return sql.SQL(
        "DELETE FROM {tb} AS tb USING {s} AS s WHERE NOT s.{flag} AND {keys} AND tb.{v} < s.{v}"
    ).format(
        tb=ref.tomb,
        s=ref.stage,
        flag=sql.Identifier(DELETE_FLAG),
        keys=_join_on("tb", ref.key),
        v=_V,
    )


# --- fragments -------------------------------------------------------------------------------


def _truncation_watermark(ref: TableRef) -> sql.Composed:
    # An uncorrelated sub-select: evaluated once per statement, not once per staged row.
    return sql.SQL(
        "COALESCE((SELECT tr.{v} FROM {tr} AS tr WHERE tr.target = %s), -9223372036854775808)"
    ).format(tr=ref.truncations, v=_V)


def _column_def(name: str, type_: sql.Composable, *, not_null: bool) -> sql.Composed:
    suffix = sql.SQL(" NOT NULL") if not_null else sql.SQL("")
    return sql.Composed([sql.Identifier(name), sql.SQL(" "), type_, suffix])


def _idents(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(name) for name in names)


def _qualified(alias: str, names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(alias, name) for name in names)


def _join_on(alias: str, key: Sequence[str]) -> sql.Composed:
    """``alias.k = s.k AND …`` for every key column."""
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(alias, name), sql.Identifier("s", name))
        for name in key
    )
