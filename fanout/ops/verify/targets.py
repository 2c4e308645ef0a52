"""What ``verify`` needs from a sink's store, one reader per sink (``postgres``, ``clickhouse``,
``elasticsearch`` modules here): describe a target, count its live rows, fetch live rows by key,
and page through its keys. Rows come back as ``{target column: value}``; the comparison makes
both sides canonical (``canonical.py``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

TargetRow = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TargetTable:
    name: str  # the sink's target name (routing), as the sink's reader addresses it
    columns: frozenset[str]  # data columns the target holds now
    # column -> what the target holds where the source has NULL (a column that cannot be NULL,
    # e.g. a ClickHouse Array or non-Nullable column, takes its type's zero or empty value)
    zeros: dict[str, Any] = field(default_factory=dict)
    parsed_json: bool = False  # JSON values come back parsed (Elasticsearch), not as text
    nonfinite_null: bool = False  # NaN / infinity are stored as null (JSON has none)
    handle: Any = None  # reader-specific (e.g. ClickHouse column formats)


class TargetReader(Protocol):
    sink: str

    def describe(self, target: str) -> TargetTable | None:
        """The target, or None if the store has no such table / index (yet)."""
        ...

    def count(self, table: TargetTable) -> int: ...

    def fetch(
        self,
        table: TargetTable,
        key: Sequence[str],
        keys: Sequence[TargetRow],
        columns: Sequence[str],
    ) -> list[TargetRow]:
        """The live rows of ``keys`` (``{key column: source value}``), any order; ``columns``
        the data columns wanted (key columns included)."""
        ...

    def scan_keys(
        self, table: TargetTable, key: Sequence[str], size: int
    ) -> Iterator[list[TargetRow]]:
        """Every live row's key columns, ``size`` at a time, in no particular order."""
        ...

    def close(self) -> None: ...
