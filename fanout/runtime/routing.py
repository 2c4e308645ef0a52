"""Routing: which source tables a sink takes, under which target name, with which columns.

Applied after decoding and before ``Sink.write``, so sinks see ``event.target`` and rows that
already have columns dropped and renamed. Routes are compiled once per source table.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Any

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Column
from fanout.settings import RoutingSettings, TableRoute


@dataclass(frozen=True, slots=True)
class _Route:
    target: str
    drop: frozenset[str]
    rename: dict[str, str]

    @property
    def reshapes(self) -> bool:
        return bool(self.drop or self.rename)


class Router:
    """Maps events onto one sink's targets; ``None`` from :meth:`route` means "not taken"."""

    def __init__(self, settings: RoutingSettings) -> None:
        self._settings = settings
        self._routes: dict[str, _Route | None] = {}

    def route(self, event: ChangeEvent) -> ChangeEvent | None:
        route = self._route_for(event.table)
        if route is None:
            return None
        if not route.reshapes:
            return event.with_target(route.target)
        return dataclasses.replace(
            event,
            target=route.target,
            key=_reshape_key(event.key, route),
            row=None if event.row is None else _reshape(event.row, route),
            columns=tuple(_reshape_columns(event.columns, route)),
        )

    def _route_for(self, table: str) -> _Route | None:
        try:
            return self._routes[table]
        except KeyError:
            route = self._routes[table] = self._compile(table)
            return route

    def _compile(self, table: str) -> _Route | None:
        if not self._is_taken(table):
            return None
        explicit = self._settings.tables.get(table, TableRoute())
        target = explicit.target or self._default_target(table)
        return _Route(target=target, drop=frozenset(explicit.drop), rename=dict(explicit.rename))

    def _is_taken(self, table: str) -> bool:
        include = self._settings.include
        if include and not any(fnmatch.fnmatchcase(table, pattern) for pattern in include):
            return False
        return not any(fnmatch.fnmatchcase(table, pattern) for pattern in self._settings.exclude)

    def _default_target(self, table: str) -> str:
        schema, _, name = table.rpartition(".")
        return self._settings.target_format.format(schema=schema, table=name)


def _reshape(values: dict[str, Any], route: _Route) -> dict[str, Any]:
    return {
        route.rename.get(name, name): value
        for name, value in values.items()
        if name not in route.drop
    }


def _reshape_key(key: dict[str, Any], route: _Route) -> dict[str, Any]:
    dropped = route.drop.intersection(key)
    if dropped:
        raise MappingError(
            f"routing drops primary-key column(s) {sorted(dropped)}; "
            "a target without its key cannot be kept in step"
        )
    return _reshape(key, route)


def _reshape_columns(columns: tuple[Column, ...], route: _Route) -> list[Column]:
    return [
        dataclasses.replace(column, name=route.rename.get(column.name, column.name))
        for column in columns
        if column.name not in route.drop
    ]
