"""What ``verify`` needs from a sink's store, one reader per sink (``postgres``, ``clickhouse``,
``elasticsearch`` modules here): describe a target, count its live rows, fetch live rows by key,
and page through its keys. Rows come back as ``{target column: value}``; the comparison makes
both sides canonical (``canonical.py``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

TargetRow = dict[str, Any]
Names = Sequence[str]  # column names, in order


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

    def present(self, columns: Names) -> list[str]:
        """Those of ``columns`` the target holds now (a column not added yet is all NULL)."""
        return [name for name in columns if name in self.columns]


class TargetReader(ABC):
    sink: ClassVar[str]

    @abstractmethod
    def describe(self, target: str) -> TargetTable | None:
        """The target, or None if the store has no such table / index (yet)."""

    @abstractmethod
    def count(self, table: TargetTable) -> int: ...

    def fetch(
        self,
        table: TargetTable,
        key: Names,
        keys: Sequence[TargetRow],
        columns: Names,
    ) -> list[TargetRow]:
        """The live rows of ``keys`` (``{key column: source value}``), any order; ``columns``
        the data columns wanted (key columns included)."""
        if not keys:
            return []  # no round trip for an empty page
        return self._fetch(table, key, keys, columns)

    @abstractmethod
    def _fetch(
        self, table: TargetTable, key: Names, keys: Sequence[TargetRow], columns: Names
    ) -> list[TargetRow]:
        """``fetch`` for at least one key."""

    @abstractmethod
    def scan_keys(self, table: TargetTable, key: Names, size: int) -> Iterator[list[TargetRow]]:
        """Every live row's key columns, ``size`` at a time, in no particular order."""

    @abstractmethod
    def close(self) -> None: ...
