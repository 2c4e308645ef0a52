"""``fanout verify --across``: the enabled sinks compared with each other, for when no source
is reachable. The reference is the first enabled typed sink (postgres, else clickhouse): its
catalog gives each table's key and column types (the canonical forms), its live rows are paged
by key and the same keys fetched from every other sink; keys only another sink holds are found
by paging that sink's keys. Columns are matched through each sink's routing (renames, drops)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fanout.errors import ConfigError
from fanout.ops.verify import source as src
from fanout.ops.verify.compare import TableComparison, TableResult
from fanout.ops.verify.plan import Route, TablePlan, choose_tables, route_for
from fanout.ops.verify.report import VerifyReport
from fanout.ops.verify.settle import wait_caught_up
from fanout.ops.verify.targets import TargetReader, TargetTable
from fanout.settings import Settings
from sinks.clickhouse.types import table_column_from_catalog

TYPED = ("postgres", "clickhouse")
_CH_KINDS = {"int": "int", "decimal": "numeric", "bool": "bool", "string": "text", "bytes": "bytes"}
_CH_KINDS |= {
    "json": "json",
    "time": "time",
    "uuid": "uuid",
    "date": "date",
    "datetime": "timestamp",
}


class SinkLeft:
    """A reference sink's live rows as the left side of a comparison, page by page of its keys."""

    def __init__(
        self, reader: TargetReader, table: TargetTable, plan_table: src.SourceTable
    ) -> None:
        self.reader, self.table = reader, table
        self.columns = tuple(c.name for c in plan_table.columns)
        self.key = plan_table.key

    def count(self) -> int:
        return self.reader.count(self.table)

    def pages(self, size: int) -> Iterator[list[tuple[Any, ...]]]:
        for keys in self.reader.scan_keys(self.table, self.key, size):
            yield self._rows(keys)

    def rows_by_key(self, natives: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return self._rows([dict(zip(self.key, n, strict=True)) for n in natives])

    def _rows(self, keys: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        rows = self.reader.fetch(self.table, self.key, keys, self.columns)
        return [tuple(row.get(name) for name in self.columns) for row in rows]


def reference_table(settings: Settings, sink: str, target: str) -> src.SourceTable | None:
    """The reference sink's target described like a source table (key, column types)."""
    if sink == "postgres":
        pg = settings.sinks.postgres
        with src.connect_to(pg.conninfo()) as conn:
            try:
                table = src.describe(conn, f"{pg.db_schema}.{target}")
            except ConfigError:
                return None
        columns = tuple(c for c in table.columns if not c.name.startswith("_fanout"))
        return src.SourceTable(table.schema, table.name, columns, table.key)
    return _clickhouse_table(settings, target)


def _clickhouse_table(settings: Settings, target: str) -> src.SourceTable | None:
    from sinks.clickhouse.backends import open_backend
    from sinks.clickhouse.schema import META_NAMES

    backend = open_backend(settings.sinks.clickhouse)
    try:
        rows = backend.query_rows(
            "SELECT name, type, comment, is_in_sorting_key FROM system.columns "
            "WHERE database = currentDatabase() AND table = {t:String} ORDER BY position",
            {"t": target},
        )
    finally:
        backend.close()
    if not rows:
        return None
    columns = []
    for name, ch_type, comment, _ in rows:
        if name in META_NAMES:
            continue
        column = table_column_from_catalog(str(name), str(ch_type), str(comment))
        kind = column.item_kind if column.kind == "array" else column.kind
        canonical = "float4" if "Float32" in str(ch_type) else _CH_KINDS.get(kind or "", "other")
        if kind == "float" and "Float32" not in str(ch_type):
            canonical = "float8"
        columns.append(src.SourceColumn(str(name), canonical, column.kind == "array"))
    key = tuple(str(name) for name, _, _, in_key in rows if in_key)
    return src.SourceTable(settings.sinks.clickhouse.database, target, tuple(columns), key)


def verify_across(
    settings: Settings, tables: Sequence[str], page_size: int, max_keys: int, settle_s: float
) -> list[VerifyReport]:
    from fanout.ops.verify.run import captured_tables, open_reader

    enabled = settings.sinks.enabled()
    typed = [s for s in TYPED if s in enabled]
    if len(enabled) < 2 or not typed:
        raise ConfigError(
            "--across: enable at least two sinks, one of them postgres or clickhouse "
            "(their catalogs give the column types)"
        )
    reference = typed[0]
    ref_routing = settings.sinks.get(reference).routing
    names = choose_tables(captured_tables(settings), tables, ref_routing)
    reports = []
    ref_reader = open_reader(settings, reference)
    try:
        for other in (s for s in enabled if s != reference):
            reader = open_reader(settings, other)
            try:
                reports.append(
                    _pair(
                        settings,
                        reference,
                        ref_reader,
                        other,
                        reader,
                        names,
                        page_size,
                        max_keys,
                        settle_s,
                    )
                )
            finally:
                reader.close()
    finally:
        ref_reader.close()
    return reports


def _pair(
    settings: Settings,
    reference: str,
    ref_reader: TargetReader,
    other: str,
    reader: TargetReader,
    names: Sequence[str],
    page_size: int,
    max_keys: int,
    settle_s: float,
) -> VerifyReport:
    report = VerifyReport(f"{reference}~{other}", {})
    comparisons: list[tuple[TableComparison, TableResult]] = []
    for name in names:
        ref_route = route_for(settings.sinks.get(reference).routing, name)
        other_route = route_for(settings.sinks.get(other).routing, name)
        if ref_route is None or other_route is None:
            continue
        table = reference_table(settings, reference, ref_route.target)
        ref_target = ref_reader.describe(ref_route.target)
        if table is None or ref_target is None:
            continue  # the reference has nothing of it yet: nothing to compare against
        plan = TablePlan.of(table, _between(table, ref_route, other_route))
        left = SinkLeft(ref_reader, ref_target, table)
        comparison = TableComparison(left, reader, plan, page_size, max_keys, ref_target.zeros)
        report.key_names[table.qualified] = table.key
        comparisons.append((comparison, comparison.run()))
    if any(not r.equal for _, r in comparisons):
        settled = all(wait_caught_up(settings, s, settle_s) for s in (reference, other))
        report.settled = settled
        comparisons = [(c, c.recheck(r) if not r.equal else r) for c, r in comparisons]
    report.tables = [r for _, r in comparisons]
    return report


def _between(table: src.SourceTable, ref: Route, other: Route) -> Route:
    """The route from the reference's columns to the other sink's: through the source name."""
    source_of = {target: source for source, target in ref.rename.items()}
    drop, rename = set(), {}
    for column in table.columns:
        theirs = other.column(source_of.get(column.name, column.name))
        if theirs is None:
            drop.add(column.name)
        elif theirs != column.name:
            rename[column.name] = theirs
    return Route(other.target, frozenset(drop), rename)
