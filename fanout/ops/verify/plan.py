"""Which source tables a sink's verify compares, and how each maps onto its target: the sink's
topics name the tables (``<prefix>.<schema>.<table>``), its routing says which it takes, under
which target name, with which columns dropped or renamed (as ``fanout.runtime.routing`` does)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fanout.errors import ConfigError
from fanout.ops.verify.source import SourceTable
from fanout.settings import RoutingSettings, TableRoute

_GLOB = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Route:
    target: str
    drop: frozenset[str]
    rename: dict[str, str]

    def column(self, name: str) -> str | None:
        """The target column of source column ``name``; None if routing drops it."""
        return None if name in self.drop else self.rename.get(name, name)


def route_for(routing: RoutingSettings, table: str) -> Route | None:
    """The route of source table ``table`` (``schema.table``), None if the sink does not take it."""
    if routing.include and not any(fnmatch.fnmatchcase(table, p) for p in routing.include):
        return None
    if any(fnmatch.fnmatchcase(table, p) for p in routing.exclude):
        return None
    explicit = routing.tables.get(table, TableRoute())
    schema, _, name = table.rpartition(".")
    target = explicit.target or routing.target_format.format(schema=schema, table=name)
    return Route(target, frozenset(explicit.drop), dict(explicit.rename))


def tables_of_topics(topics: Iterable[str]) -> list[str]:
    """``schema.table`` of each Debezium topic ``<prefix>.<schema>.<table>``."""
    found = {".".join(topic.split(".")[-2:]) for topic in topics if topic.count(".") >= 2}
    return sorted(found)


def choose_tables(
    captured: Sequence[str], requested: Sequence[str], routing: RoutingSettings
) -> list[str]:
    """The tables to compare: ``requested`` (names or globs on ``schema.table``) among the
    captured ones (a plain name is taken even if no topic names it yet), those routing takes."""
    if not requested:
        chosen = list(captured)
    else:
        chosen = sorted(
            {t for t in captured for r in requested if fnmatch.fnmatchcase(t, r)}
            | {_qualified(r) for r in requested if not _GLOB & set(r)}
        )
    taken = [t for t in chosen if route_for(routing, t) is not None]
    if not taken:
        raise ConfigError(
            "--tables: no table to compare (none of the sink's topics names one, or routing "
            "takes none of them); name them as schema.table"
        )
    return taken


def _qualified(name: str) -> str:
    return name if "." in name else f"public.{name}"


@dataclass(frozen=True, slots=True)
class TablePlan:
    """One table's comparison: source columns and the target columns they land in."""

    source: SourceTable
    route: Route
    # (index in the source row, source column, target column, kind, is_array), key columns first
    mapped: tuple[tuple[int, str, str, str, bool], ...]

    @classmethod
    def of(cls, source: SourceTable, route: Route) -> TablePlan:
        mapped = []
        for index, column in enumerate(source.columns):
            target = route.column(column.name)
            if target is None:
                if column.name in source.key:
                    raise ConfigError(f"{source.qualified}: routing drops key column {column.name}")
                continue
            mapped.append((index, column.name, target, column.kind, column.is_array))
        mapped.sort(
            key=lambda m: (
                m[1] not in source.key,
                source.key.index(m[1]) if m[1] in source.key else 0,
            )
        )
        return cls(source, route, tuple(mapped))

    @property
    def key_count(self) -> int:
        return len(self.source.key)

    @property
    def target_key(self) -> tuple[str, ...]:
        return tuple(m[2] for m in self.mapped[: self.key_count])

    @property
    def target_columns(self) -> tuple[str, ...]:
        return tuple(m[2] for m in self.mapped)
