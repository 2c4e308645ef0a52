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
from fanout.ops.verify.canonical import JSON_NULL, Canonical, converter, row_digest
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
        self._prepare()

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
        self._prepare()
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

    def _prepare(self) -> None:
        """Each column's canonical-form function, chosen once (rows pay one call per value)."""
        target, mapped = self.target, self.plan.mapped
        parsed = target is not None and target.parsed_json
        self._source_forms = [(m[0], _source_form(m[3], m[4], target, m[2])) for m in mapped]
        self._target_forms = [
            (m[2], _target_form(m[3], m[4], parsed, self.left_zeros.get(m[1], _UNSET)))
            for m in mapped
        ]
        self._key_forms = [converter(m[3], m[4]) for m in mapped[: self.plan.key_count]]

    def _canonical_source(self, row: tuple[Any, ...]) -> list[Canonical]:
        return [form(row[index]) for index, form in self._source_forms]

    def _canonical_target(self, row: TargetRow) -> list[Canonical]:
        return [form(row, name) for name, form in self._target_forms]

    def _canonical_key(self, row: tuple[Any, ...]) -> list[Canonical]:
        return self._canonical_key_values(tuple(row[m[0]] for m in self.plan.mapped))

    def _canonical_key_values(self, native: tuple[Any, ...]) -> list[Canonical]:
        return [form(value) for form, value in zip(self._key_forms, native, strict=False)]


_UNSET: Any = object()


def _source_form(
    kind: str, is_array: bool, target: TargetTable | None, name: str
) -> Callable[[Any], Canonical]:
    """A source value's form, as the target would hold it: its zero where it has no NULL, no
    NaN / infinity where it stores them as null."""
    form = converter(kind, is_array)
    if target is not None and name in target.zeros:
        zero, plain = form(target.zeros[name]), form

        def form(value: Any) -> Canonical:
            return zero if value is None else plain(value)

    if target is not None and target.nonfinite_null and kind in _NUMERIC_KINDS:
        finite = form

        def form(value: Any) -> Canonical:
            result = finite(value)
            return None if isinstance(result, str) and result in NONFINITE else result

    return form


def _target_form(
    kind: str, is_array: bool, parsed: bool, left_zero: Any
) -> Callable[[TargetRow, str], Canonical]:
    """A target value's form: a JSON null where a parsed document holds the field as null (SQL
    NULL is left out of it), the reference side's zero where it has no NULL (--across)."""
    form = converter(kind, is_array, parsed)
    zero = None if left_zero is _UNSET else form(left_zero)
    json_null = parsed and kind == "json" and not is_array

    def target_form(row: TargetRow, name: str) -> Canonical:
        value = row.get(name)
        if value is not None:
            return form(value)
        if json_null and name in row:
            return JSON_NULL
        return zero

    return target_form


def _hashable(values: Sequence[Canonical]) -> Key:
    return tuple(repr(v) if isinstance(v, list | dict) else v for v in values)
