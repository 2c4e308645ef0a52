"""The tables fanout keeps in one ClickHouse database: create, extend, describe, truncate.

Every target is a ``ReplacingMergeTree(_fanout_version, _fanout_deleted)`` ordered by the source
primary key, with a ``<target>_current`` view holding the current rows. Truncations are
remembered as watermarks in ``_fanout_truncations``: rows older than a table's watermark are
not current, whatever order batches arrive in. What is known about a table is cached and
re-read after every DDL statement, so a column added by another writer is picked up too.

A column whose declared type at the source became wider (``sinks.base.widening``: Int32 ->
Int64, Float32 -> Float64, a wider Decimal) is changed with ``MODIFY COLUMN`` when the sink's
``widen_columns`` allows it; key (sorting key) columns cannot change type and are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Column
from sinks.base.widening import declared_width, widens
from sinks.clickhouse.backends import Backend
from sinks.clickhouse.types import (
    TableColumn,
    quote_identifier,
    quote_string,
    table_column_from_catalog,
    widened_type,
)

log = logging.getLogger(__name__)

VERSION = "_fanout_version"
DELETED = "_fanout_deleted"
SOURCE_TS = "_fanout_source_ts_ms"
INGESTED_AT = "_fanout_ingested_at"
META_COLUMNS = (
    f"{quote_identifier(VERSION)} UInt64",
    f"{quote_identifier(DELETED)} UInt8",
    f"{quote_identifier(SOURCE_TS)} Int64",
    f"{quote_identifier(INGESTED_AT)} DateTime64(3) DEFAULT now64(3)",
)
META_NAMES = frozenset({VERSION, DELETED, SOURCE_TS, INGESTED_AT})
TRUNCATIONS = "_fanout_truncations"
VIEW_SUFFIX = "_current"


@dataclass(slots=True)
class TableSchema:
    """A target table: its primary key and its data columns (the ``_fanout_*`` ones apart)."""

    key: tuple[str, ...]
    columns: dict[str, TableColumn] = field(default_factory=dict)


def describe_table(backend: Backend, target: str) -> TableSchema | None:
    """``target`` as ``system.columns`` describes it now (no cache), or None if it is absent."""
    rows = backend.query_rows(
        "SELECT name, type, comment, is_in_sorting_key FROM system.columns "
        "WHERE database = currentDatabase() AND table = {t:String} ORDER BY position",
        {"t": target},
    )
    if not rows:
        return None
    key = tuple(str(name) for name, _, _, in_key in rows if in_key)
    columns = {
        str(name): table_column_from_catalog(str(name), str(ch_type), str(comment))
        for name, ch_type, comment, _ in rows
        if name not in META_NAMES
    }
    return TableSchema(key=key, columns=columns)


class Catalog:
    def __init__(self, backend: Backend, deduplication_window: int) -> None:
        self._backend = backend
        self._dedup_window = deduplication_window
        self._tables: dict[str, TableSchema] = {}

    def create_truncations_table(self) -> None:
        self._backend.command(
            f"CREATE TABLE IF NOT EXISTS {quote_identifier(TRUNCATIONS)} "
            "(`target` String, `version` UInt64, `truncated_at` DateTime64(3) DEFAULT now64(3)) "
            "ENGINE = ReplacingMergeTree(`version`) ORDER BY `target`"
        )

    # ---- describe ------------------------------------------------------------------------

    def table(self, target: str) -> TableSchema | None:
        """The cached schema of ``target``, read from ``system.columns`` on first use.

        Raises MappingError if a table of that name exists but cannot take fanout's writes.
        """
        if target not in self._tables:
            schema = self._describe(target)
            if schema is None:
                return None
            problem = self._problem_with(target, schema)
            if problem:
                raise MappingError(problem)
            self._tables[target] = schema
        return self._tables[target]

    def forget(self, target: str) -> None:
        self._tables.pop(target, None)

    def _describe(self, target: str) -> TableSchema | None:
        return describe_table(self._backend, target)

    def _problem_with(self, target: str, schema: TableSchema) -> str | None:
        """Why an existing table cannot take fanout's writes, or None."""
        engine = self._backend.query_rows(
            "SELECT engine FROM system.tables "
            "WHERE database = currentDatabase() AND name = {t:String}",
            {"t": target},
        )
        if engine and not str(engine[0][0]).endswith("ReplacingMergeTree"):
            return f"table {target!r} exists with engine {engine[0][0]}, not ReplacingMergeTree"
        if not schema.key:
            return f"table {target!r} exists without a sorting key"
        if not all(name in schema.columns for name in schema.key):
            return f"table {target!r} is ordered by columns fanout does not write"
        return None

    # ---- DDL ---------------------------------------------------------------------------

    def create(self, target: str, key: Sequence[str], columns: Iterable[TableColumn]) -> None:
        definitions = [column.definition() for column in columns] + list(META_COLUMNS)
        order_by = ", ".join(quote_identifier(name) for name in key)
        engine = f"ReplacingMergeTree({quote_identifier(VERSION)}, {quote_identifier(DELETED)})"
        self._backend.command(
            f"CREATE TABLE IF NOT EXISTS {quote_identifier(target)} ({', '.join(definitions)}) "
            f"ENGINE = {engine} "
            f"ORDER BY ({order_by}) "
            f"SETTINGS non_replicated_deduplication_window = {int(self._dedup_window)}"
        )
        self._after_ddl(target)

    def add_columns(self, target: str, columns: Iterable[TableColumn]) -> None:
        clauses = [f"ADD COLUMN IF NOT EXISTS {column.definition()}" for column in columns]
        if clauses:
            self._backend.command(f"ALTER TABLE {quote_identifier(target)} {', '.join(clauses)}")
            self._after_ddl(target)

    def widen_columns(self, target: str, types: dict[str, str]) -> None:
        """Change each column to its wider type (existing values converted by ClickHouse)."""
        clauses = [
            f"MODIFY COLUMN {quote_identifier(name)} {type_}" for name, type_ in types.items()
        ]
        if clauses:
            log.warning("widening columns of %r: %s", target, types)
            self._backend.command(f"ALTER TABLE {quote_identifier(target)} {', '.join(clauses)}")
            self._after_ddl(target)

    def _after_ddl(self, target: str) -> None:
        # A view stores its column list when created: re-create it after every change.
        self.forget(target)
        self._backend.command(f"CREATE OR REPLACE VIEW {view_name(target)} AS {_current(target)}")

    # ---- truncation ----------------------------------------------------------------------

    def watermarks(self, targets: Sequence[str]) -> dict[str, int]:
        """The newest truncation version per target (targets never truncated are absent)."""
        if not targets:
            return {}
        rows = self._backend.query_rows(
            f"SELECT target, max(version) FROM {quote_identifier(TRUNCATIONS)} "
            "WHERE target IN {targets:Array(String)} GROUP BY target",
            {"targets": list(targets)},
        )
        return {str(target): int(version) for target, version in rows}

    def truncate(self, target: str, version: int, source_ts_ms: int) -> None:
        """Record the watermark, then tombstone every current row older than it.

        The tombstones make a plain ``FINAL`` read show the truncation; the watermark keeps
        rows older than the truncation out of the view (and out of later writes) even when
        they arrive after it, e.g. in a replay.
        """
        self._backend.command(
            f"INSERT INTO {quote_identifier(TRUNCATIONS)} (`target`, `version`) "
            "VALUES ({t:String}, {v:UInt64})",
            {"t": target, "v": version},
        )
        schema = self.table(target)
        if schema is None:
            return
        keys = ", ".join(quote_identifier(name) for name in schema.key)
        self._backend.command(
            f"INSERT INTO {quote_identifier(target)} "
            f"({keys}, {quote_identifier(VERSION)}, {quote_identifier(DELETED)}, "
            f"{quote_identifier(SOURCE_TS)}) "
            f"SELECT {keys}, {{v:UInt64}}, 1, {{ts:Int64}} FROM {quote_identifier(target)} FINAL "
            f"WHERE {quote_identifier(DELETED)} = 0 AND {quote_identifier(VERSION)} < {{v:UInt64}}",
            {"v": version, "ts": source_ts_ms},
        )


def widenings(schema: TableSchema, changes: Iterable[ChangeEvent]) -> dict[str, str]:
    """Column -> wider ClickHouse type, for the non-key columns the changes' declared types
    safely widen (the widest one declared wins); only one event per declared schema is read."""
    chosen: dict[str, Column] = {}
    seen: set[int] = set()
    for event in changes:
        if not event.columns or id(event.columns) in seen:
            continue
        seen.add(id(event.columns))
        for column in event.columns:
            existing = schema.columns.get(column.name)
            if existing is None or column.name in schema.key:
                continue
            if widened_type(existing, column) is None:
                continue
            before = chosen.get(column.name)
            if before is None or _wider(before, column):
                chosen[column.name] = column
    found = {name: widened_type(schema.columns[name], column) for name, column in chosen.items()}
    return {name: type_ for name, type_ in found.items() if type_ is not None}


def _wider(before: Column, column: Column) -> bool:
    old, new = declared_width(before), declared_width(column)
    return old is not None and new is not None and widens(old, new)


def view_name(target: str) -> str:
    return quote_identifier(target + VIEW_SUFFIX)


def _current(target: str) -> str:
    watermark = (
        f"(SELECT max(version) FROM {quote_identifier(TRUNCATIONS)} "
        f"WHERE target = {quote_string(target)})"
    )
    return (
        f"SELECT * FROM {quote_identifier(target)} FINAL "
        f"WHERE {quote_identifier(DELETED)} = 0 AND {quote_identifier(VERSION)} >= {watermark}"
    )
