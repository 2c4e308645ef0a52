"""The PostgreSQL sink's targets as ``verify`` reads them: the table holds only live rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader

from fanout.errors import FanoutError
from fanout.ops.verify.targets import Names, TargetReader, TargetRow, TargetTable
from fanout.settings import PostgresSettings


class PostgresReader(TargetReader):
    sink = "postgres"

    def __init__(self, settings: PostgresSettings) -> None:
        self._schema = settings.db_schema
        try:
            self._conn = psycopg.connect(
                **settings.conninfo(), autocommit=True, row_factory=dict_row
            )
        except psycopg.OperationalError as exc:
            raise FanoutError(
                f"cannot reach the postgres sink at {settings.host}:{settings.port}: {exc}"
            ) from None
        for name in ("json", "jsonb"):
            self._conn.adapters.register_loader(name, TextLoader)

    def describe(self, target: str) -> TargetTable | None:
        rows = self._conn.execute(
            "SELECT a.attname AS name FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
            "AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped",
            (self._schema, target),
        ).fetchall()
        if not rows:
            return None
        return TargetTable(target, frozenset(str(row["name"]) for row in rows))

    def count(self, table: TargetTable) -> int:
        row = self._conn.execute(
            sql.SQL("SELECT count(*) AS n FROM {}").format(self._name(table))
        ).fetchone()
        return int(row["n"]) if row else 0

    def _fetch(
        self, table: TargetTable, key: Names, keys: Sequence[TargetRow], columns: Names
    ) -> list[TargetRow]:
        present = table.present(columns)
        one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(key)))
        query = sql.SQL("SELECT {} FROM {} WHERE ({}) IN ({})").format(
            _names(present), self._name(table), _names(key), sql.SQL(", ").join([one] * len(keys))
        )
        return self._conn.execute(query, [k[name] for k in keys for name in key]).fetchall()

    def scan_keys(self, table: TargetTable, key: Names, size: int) -> Iterator[list[TargetRow]]:
        after: list[Any] | None = None
        while True:
            where: sql.Composable = sql.SQL("")
            if after is not None:
                marks = sql.SQL(", ").join(sql.Placeholder() * len(key))
                where = sql.SQL("WHERE ({}) > ({})").format(_names(key), marks)
            query = sql.SQL("SELECT {} FROM {} {} ORDER BY {} LIMIT {}").format(
                _names(key), self._name(table), where, _names(key), sql.Literal(size)
            )
            page = self._conn.execute(query, after or []).fetchall()
            if page:
                yield page
            if len(page) < size:
                return
            after = [page[-1][name] for name in key]

    def close(self) -> None:
        self._conn.close()

    def _name(self, table: TargetTable) -> sql.Composable:
        return sql.Identifier(self._schema, table.name)


def _names(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))
