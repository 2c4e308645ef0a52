"""The source PostgreSQL as ``verify`` reads it: a table's columns and key, pages of rows in key
order (keyset pagination: never the whole table), rows by key, and the WAL position.

JSON columns are read as their text (psycopg would parse them into floats); every identifier is
quoted by ``psycopg.sql``, every value a parameter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from fanout.errors import ConfigError, FanoutError
from fanout.ops.verify.canonical import Kind
from fanout.settings import SourceSettings

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SourceColumn:
    name: str
    kind: str  # a canonical family (canonical.Kind)
    is_array: bool = False


@dataclass(frozen=True, slots=True)
class SourceTable:
    schema: str
    name: str
    columns: tuple[SourceColumn, ...]
    key: tuple[str, ...]  # primary-key column names, in key order

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def key_positions(self) -> tuple[int, ...]:
        names = [column.name for column in self.columns]
        return tuple(names.index(name) for name in self.key)

    def key_of(self, row: Row) -> Row:
        return tuple(row[i] for i in self.key_positions)


def connect(settings: SourceSettings) -> psycopg.Connection[Any]:
    return connect_to(settings.conninfo(), "the source PostgreSQL (source.*)")


def connect_to(conninfo: dict[str, Any], what: str = "PostgreSQL") -> psycopg.Connection[Any]:
    """An autocommit connection that reads JSON columns as their text."""
    try:
        conn = psycopg.connect(**conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        where = f"{conninfo.get('host')}:{conninfo.get('port')}"
        raise FanoutError(f"cannot reach {what} at {where}: {exc}") from None
    for name in ("json", "jsonb"):
        conn.adapters.register_loader(name, TextLoader)
    return conn


def current_lsn(conn: psycopg.Connection[Any]) -> int:
    """The source's WAL insert position now, as the integer Debezium's ``source.lsn`` is."""
    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    high, low = str(row[0]).split("/")
    return (int(high, 16) << 32) + int(low, 16)


def describe(conn: psycopg.Connection[Any], qualified: str) -> SourceTable:
    schema, _, name = qualified.rpartition(".")
    rows = conn.execute(
        """
        SELECT a.attname, COALESCE(e.typname, t.typname), t.typcategory = 'A',
               array_position(i.indkey::int2[], a.attnum)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
        LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
        WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (schema or "public", name),
    ).fetchall()
    if not rows:
        raise ConfigError(f"--tables: the source has no table {qualified}")
    columns = tuple(SourceColumn(str(r[0]), Kind.of(str(r[1])), bool(r[2])) for r in rows)
    # indkey is an int2vector: 0-based positions once cast to an array
    in_key = sorted((int(r[3]), str(r[0])) for r in rows if r[3] is not None)
    key = tuple(name for _, name in in_key)
    if not key:
        raise ConfigError(f"{qualified} has no primary key: verify compares rows by key")
    return SourceTable(schema or "public", name, columns, key)


def count(conn: psycopg.Connection[Any], table: SourceTable) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_name(table))).fetchone()
    return int(row[0]) if row else 0


def pages(conn: psycopg.Connection[Any], table: SourceTable, size: int) -> Iterator[list[Row]]:
    """Every row in key order, ``size`` at a time: each page starts after the last key of the
    one before (an index range scan per page, whatever the table's size)."""
    after: Row | None = None
    while True:
        page = _page(conn, table, after, size)
        if page:
            yield page
        if len(page) < size:
            return
        after = table.key_of(page[-1])


def _page(
    conn: psycopg.Connection[Any], table: SourceTable, after: Row | None, size: int
) -> list[Row]:
    key = sql.SQL(", ").join(map(sql.Identifier, table.key))
    where: sql.Composable = sql.SQL("")
    if after is not None:
        marks = sql.SQL(", ").join(sql.Placeholder() * len(after))
        where = sql.SQL("WHERE ({}) > ({})").format(key, marks)
    query = sql.SQL("SELECT {} FROM {} {} ORDER BY {} LIMIT {}").format(
        _columns(table), _name(table), where, key, sql.Literal(size)
    )
    return conn.execute(query, list(after or ())).fetchall()


def rows_by_key(
    conn: psycopg.Connection[Any], table: SourceTable, keys: Sequence[Row]
) -> list[Row]:
    """The rows of ``keys`` that exist (any order)."""
    if not keys:
        return []
    key = sql.SQL(", ").join(map(sql.Identifier, table.key))
    one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(table.key)))
    values = sql.SQL(", ").join([one] * len(keys))
    query = sql.SQL("SELECT {} FROM {} WHERE ({}) IN ({})").format(
        _columns(table), _name(table), key, values
    )
    return conn.execute(query, [value for k in keys for value in k]).fetchall()


def _columns(table: SourceTable) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(column.name) for column in table.columns)


def _name(table: SourceTable) -> sql.Composable:
    return sql.Identifier(table.schema, table.name)
