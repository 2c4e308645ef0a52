"""One table compared between the source and a sink's target, page by page.

1. Counts: the source's rows and the target's live rows.
2. Pages of the source in key order (``source.pages``); for each, the target's live rows of the
   same keys (``TargetReader.fetch``). Both made canonical and hashed per row, the page's range
   hashes compared, a differing range narrowed to its keys (``ranges.narrow``).
3. Keys the target holds beyond the source (its count is above the rows it matched): its keys,
   page by page, looked up in the source.
Memory is one page of each side plus the keys found to differ (``max_keys`` listed, the rest
counted). :func:`recheck` compares the listed keys again (after the sink caught up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from fanout.ops.verify import source as src
from fanout.ops.verify.canonical import JSON_NULL, Canonical, canonical, row_digest
from fanout.ops.verify.plan import TablePlan
from fanout.ops.verify.ranges import Entry, Key, narrow
from fanout.ops.verify.targets import TargetReader, TargetRow, TargetTable

NONFINITE = frozenset({"nan", "inf", "-inf"})
_NUMERIC_KINDS = frozenset({"float4", "float8", "numeric"})
Progress = Callable[[int], None]
KINDS = ("missing", "extra", "different")


@dataclass(slots=True)
class Difference:
    kind: str  # missing | extra | different
    key: Key  # canonical key values, in source key order
    native: tuple[Any, ...]  # the key as a driver takes it, in source key order
    columns: tuple[str, ...] = ()  # source columns that differ (kind "different")


@dataclass(slots=True)
class TableResult:
    table: str
    target: str
    source_rows: int = 0
    target_rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    listed: list[Difference] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not any(self.counts.values())

    @property
    def unlisted(self) -> int:
        return sum(self.counts.values()) - len(self.listed)


@dataclass(slots=True)
class Side:
    """A page of one side: canonical rows by key, and the key-sorted entries to narrow."""

    rows: dict[Key, list[Canonical]] = field(default_factory=dict)
    natives: dict[Key, tuple[Any, ...]] = field(default_factory=dict)

    def add(self, values: list[Canonical], native: tuple[Any, ...], keys: int) -> None:
        key = _hashable(values[:keys])
        self.rows[key] = values
        self.natives[key] = native

    def entries(self) -> list[Entry]:
        return sorted((key, row_digest(key, values)) for key, values in self.rows.items())


class Left(Protocol):
    """The side compared against: the source (or, for ``--across``, a reference sink). Rows
    are tuples in the order of ``plan.source.columns``."""

    def count(self) -> int: ...

    def pages(self, size: int) -> Iterator[list[tuple[Any, ...]]]: ...

    def rows_by_key(self, natives: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]: ...


class SourceLeft:
    """The source PostgreSQL table: pages in key order (keyset pagination)."""

    def __init__(self, conn: psycopg.Connection[Any], table: src.SourceTable) -> None:
        self.conn, self.table = conn, table

    def count(self) -> int:
        return src.count(self.conn, self.table)

    def pages(self, size: int) -> Iterator[list[tuple[Any, ...]]]:
        return src.pages(self.conn, self.table, size)

    def rows_by_key(self, natives: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return src.rows_by_key(self.conn, self.table, natives)


class TableComparison:
    def __init__(
        self,
        left: Left,
        reader: TargetReader,
        plan: TablePlan,
        page_size: int,
        max_keys: int,
        left_zeros: dict[str, Any] | None = None,
    ) -> None:
        self.left, self.reader, self.plan = left, reader, plan
        self.page_size, self.max_keys = page_size, max_keys
        self.target: TargetTable | None = reader.describe(plan.route.target)
        # source column -> what the left side holds for NULL (a reference sink without NULL)
        self.left_zeros = left_zeros or {}

    def run(self, progress: Progress | None = None) -> TableResult:
        result = TableResult(self.plan.source.qualified, self.plan.route.target)
        result.source_rows = self.left.count()
        result.target_rows = self.reader.count(self.target) if self.target else 0
        matched, done = 0, 0
        for page in self.left.pages(self.page_size):
            source_side = self._source_side(page)
            target_side = self._target_side(list(source_side.natives.values()))
            matched += len(target_side.rows)
            self._record(result, source_side, target_side)
            done += len(page)
            if progress:
                progress(done)
        if self.target is not None and result.target_rows > matched:
            self._find_extras(result)
        return result

    def recheck(self, result: TableResult) -> TableResult:
        """``result`` with its listed keys compared again; counts beyond them kept."""
        again = TableResult(result.table, result.target, result.source_rows, result.target_rows)
        self.target = self.reader.describe(self.plan.route.target)
        natives = [d.native for d in result.listed]
        for start in range(0, len(natives), self.page_size):
            chunk = natives[start : start + self.page_size]
            rows = self.left.rows_by_key(chunk)
            self._record(again, self._source_side(rows), self._target_side(chunk))
        for kind in KINDS:
            beyond = result.counts[kind] - sum(1 for d in result.listed if d.kind == kind)
            again.counts[kind] += beyond
        return again

    # -- one page ---------------------------------------------------------------------------

    def _source_side(self, rows: Iterable[tuple[Any, ...]]) -> Side:
        side, keys = Side(), self.plan.key_count
        for row in rows:
            side.add(
                self._canonical_source(row), tuple(row[m[0]] for m in self.plan.mapped[:keys]), keys
            )
        return side

    def _target_side(self, natives: Sequence[tuple[Any, ...]]) -> Side:
        side, keys = Side(), self.plan.key_count
        if self.target is None or not natives:
            return side
        key = self.plan.target_key
        wanted = [dict(zip(key, native, strict=True)) for native in natives]
        for row in self.reader.fetch(self.target, key, wanted, self.plan.target_columns):
            side.add(self._canonical_target(row), tuple(row[name] for name in key), keys)
        return side

    def _record(self, result: TableResult, source: Side, target: Side) -> None:
        diff = narrow(source.entries(), target.entries())
        for kind, found in (
            ("missing", diff.missing),
            ("extra", diff.extra),
            ("different", diff.different),
        ):
            for key in found:
                result.counts[kind] += 1
                if len(result.listed) < self.max_keys:
                    native = (source.natives if kind != "extra" else target.natives)[key]
                    columns = (
                        self._columns(source.rows[key], target.rows[key])
                        if kind == "different"
                        else ()
                    )
                    result.listed.append(Difference(kind, key, native, columns))

    def _columns(self, left: list[Canonical], right: list[Canonical]) -> tuple[str, ...]:
        return tuple(m[1] for m, a, b in zip(self.plan.mapped, left, right, strict=True) if a != b)

    def _find_extras(self, result: TableResult) -> None:
        assert self.target is not None
        key = self.plan.target_key
        for page in self.reader.scan_keys(self.target, key, self.page_size):
            natives = [tuple(row[name] for name in key) for row in page]
            present = {
                _hashable(self._canonical_key(row)) for row in self.left.rows_by_key(natives)
            }
            for native in natives:
                ckey = _hashable(self._canonical_key_values(native))
                if ckey not in present:
                    result.counts["extra"] += 1
                    if len(result.listed) < self.max_keys:
                        result.listed.append(Difference("extra", ckey, native))

    # -- canonical forms -------------------------------------------------------------------

    def _canonical_source(self, row: tuple[Any, ...]) -> list[Canonical]:
        target = self.target
        values = []
        for index, _, name, kind, is_array in self.plan.mapped:
            value = row[index]
            if value is None and target is not None and name in target.zeros:
                value = target.zeros[name]
            form = canonical(kind, value, is_array)
            if (
                target is not None
                and target.nonfinite_null
                and kind in _NUMERIC_KINDS
                and form in NONFINITE
            ):
                form = None
            values.append(form)
        return values

    def _canonical_target(self, row: TargetRow) -> list[Canonical]:
        parsed = self.target is not None and self.target.parsed_json
        values = []
        for _, source_name, name, kind, is_array in self.plan.mapped:
            value = row.get(name)
            if value is None and source_name in self.left_zeros:
                value = self.left_zeros[source_name]
            if parsed and value is None and kind == "json" and name in row:
                values.append(JSON_NULL)  # present and null: a JSON null (SQL NULL is left out)
            else:
                values.append(canonical(kind, value, is_array, parsed))
        return values

    def _canonical_key(self, row: tuple[Any, ...]) -> list[Canonical]:
        return [canonical(m[3], row[m[0]], m[4]) for m in self.plan.mapped[: self.plan.key_count]]

    def _canonical_key_values(self, native: tuple[Any, ...]) -> list[Canonical]:
        mapped = self.plan.mapped[: self.plan.key_count]
        return [canonical(m[3], value, m[4]) for m, value in zip(mapped, native, strict=True)]


def _hashable(values: Sequence[Canonical]) -> Key:
    return tuple(repr(v) if isinstance(v, list | dict) else v for v in values)
