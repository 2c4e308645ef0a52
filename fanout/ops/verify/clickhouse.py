"""The ClickHouse sink's targets as ``verify`` reads them: live rows through the
``<target>_current`` view (``FINAL``, no tombstones, nothing older than a truncation).

A column that is not Nullable (an Array, or a table made by hand) holds its type's zero where
the source has NULL; ``TargetTable.zeros`` says which, so a NULL compares equal to it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fanout.ops.verify.targets import Names, TargetReader, TargetRow, TargetTable
from fanout.settings import ClickHouseSettings
from sinks.clickhouse.backends import Backend, open_backend
from sinks.clickhouse.schema import VIEW_SUFFIX, describe_table
from sinks.clickhouse.types import quote_identifier, zero_for


class ClickHouseReader(TargetReader):
    sink = "clickhouse"

    def __init__(self, settings: ClickHouseSettings) -> None:
        self._backend: Backend = open_backend(settings)

    def describe(self, target: str) -> TargetTable | None:
        schema = describe_table(self._backend, target)  # the sink's own reading of the table
        if schema is None:
            return None
        zeros = {
            name: zero_for(column)
            for name, column in schema.columns.items()
            if name not in schema.key and (column.kind == "array" or not column.nullable)
        }
        formats = {
            name: "bytes" for name, column in schema.columns.items() if column.kind == "bytes"
        }
        return TargetTable(target, frozenset(schema.columns), zeros=zeros, handle=formats)

    def count(self, table: TargetTable) -> int:
        rows = self._backend.query_rows(f"SELECT count() FROM {self._view(table)}")
        return int(rows[0][0])

    def _fetch(
        self, table: TargetTable, key: Names, keys: Sequence[TargetRow], columns: Names
    ) -> list[TargetRow]:
        present = table.present(columns)
        wanted = tuple(_key_value(k, key) for k in keys)
        rows = self._backend.query_rows(
            f"SELECT {_names(present)} FROM {self._view(table)} WHERE {_key_expr(key)} IN %(keys)s",
            {"keys": wanted},
            column_formats=table.handle,
        )
        return [dict(zip(present, row, strict=True)) for row in rows]

    def scan_keys(self, table: TargetTable, key: Names, size: int) -> Iterator[list[TargetRow]]:
        after: Any = None
        while True:
            where = "" if after is None else f"WHERE {_key_expr(key)} > %(after)s"
            rows = self._backend.query_rows(
                f"SELECT {_names(key)} FROM {self._view(table)} {where} "
                f"ORDER BY {_names(key)} LIMIT {int(size)}",
                {"after": after} if after is not None else {},
            )
            page = [dict(zip(key, row, strict=True)) for row in rows]
            if page:
                yield page
            if len(page) < size:
                return
            after = _key_value(page[-1], key)

    def close(self) -> None:
        self._backend.close()

    def _view(self, table: TargetTable) -> str:
        return quote_identifier(table.name + VIEW_SUFFIX)


def _names(names: Sequence[str]) -> str:
    return ", ".join(quote_identifier(name) for name in names)


def _key_expr(key: Sequence[str]) -> str:
    return quote_identifier(key[0]) if len(key) == 1 else f"({_names(key)})"


def _key_value(row: TargetRow, key: Sequence[str]) -> Any:
    return row[key[0]] if len(key) == 1 else tuple(row[name] for name in key)
