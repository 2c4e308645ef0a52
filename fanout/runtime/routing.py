"""Routing: which source tables a sink takes, under which target name, with which columns.

Applied after decoding and before ``Sink.write``, so sinks see ``event.target`` and rows that
already have columns dropped and renamed. Routes are compiled once per source table. A table
that is not taken costs nothing further (no DLQ entry, whatever its rows).

Rows of a table without a primary key (no message key) follow the table's keyless policy:
``skip`` (one log line per table, counted in ``fanout_keyless_skipped_total``) or ``append``
(every upsert becomes a new row keyed by its source position, ``_fanout_position``; deletes,
which cannot name a row, are skipped and counted).

Two source tables on one target (``public.orders`` and ``archive.orders`` under the default
``{table}``) would merge their rows without a word, and keys of one overwrite the other's: a
ConfigError naming both. Tables the settings name (``routing.tables`` keys, ``include``
entries without wildcards) are checked when the router is made, so the worker does not start;
others when the second is seen (the worker stops, nothing of the batch is committed). Unless
the merge is configured: the target is in ``routing.allow_merge``, or each of the tables names
it in ``routing.tables.<t>.target``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from dataclasses import dataclass
from typing import Any

from fanout.errors import ConfigError, MappingError
from fanout.events import POSITION_COLUMN, ChangeEvent, Column, Op
from fanout.runtime.metrics import KEYLESS_SKIPPED
from fanout.settings import KeylessPolicy, RoutingSettings, TableRoute

log = logging.getLogger(__name__)
_POSITION = Column(POSITION_COLUMN, "int64", optional=False)


@dataclass(frozen=True, slots=True)
class _Route:
    target: str
    drop: frozenset[str]
    rename: dict[str, str]
    keyless: KeylessPolicy

    @property
    def reshapes(self) -> bool:
        return bool(self.drop or self.rename)


class Router:
    """Maps events onto one sink's targets; ``None`` from :meth:`route` means "not taken"."""

    def __init__(self, settings: RoutingSettings, sink: str = "") -> None:
        self._settings = settings
        self._sink = sink
        self._routes: dict[str, _Route | None] = {}
        self._keyless_logged: set[str] = set()
        self._sources: dict[str, str] = {}  # target -> the first source table routed to it
        for table in self._named_tables():  # collisions the settings show fail at start
            self._route_for(table)

    def route(self, event: ChangeEvent) -> ChangeEvent | None:
        route = self._route_for(event.table)
        if route is None:
            return None
        if not event.key and event.op is not Op.TRUNCATE:
            keyed = self._keyless(event, route)
            if keyed is None:
                return None
            event = keyed
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
        self._claim(target, table)
        keyless = explicit.keyless or self._settings.keyless or "skip"
        return _Route(target, frozenset(explicit.drop), dict(explicit.rename), keyless)

    def _claim(self, target: str, table: str) -> None:
        """Refuse a second source table on ``target`` unless merging is configured."""
        first = self._sources.setdefault(target, table)
        if first == table or self._merges(target, first, table):
            return
        raise ConfigError(
            f"routing{f' ({self._sink})' if self._sink else ''}: source tables {first} and "
            f"{table} both map to target {target!r}; their rows would be merged. Give one "
            "another target (routing.tables.<table>.target, or {schema} in "
            "routing.target_format), exclude one, or list the target in routing.allow_merge "
            "if merging is meant"
        )

    def _merges(self, target: str, *tables: str) -> bool:
        if target in self._settings.allow_merge:
            return True
        routes = self._settings.tables
        return all(table in routes and routes[table].target == target for table in tables)

    def _keyless(self, event: ChangeEvent, route: _Route) -> ChangeEvent | None:
        """The event keyed by its source position (policy append, upserts), or None."""
        if route.keyless == "append" and event.op is Op.UPSERT and event.row is not None:
            position = {POSITION_COLUMN: event.version}
            return ChangeEvent(
                event.op, event.table, position, {**event.row, **position}, event.version,
                event.source_ts_ms, event.origin, (*event.columns, _POSITION), event.target,
            )  # fmt: skip
        KEYLESS_SKIPPED.labels(self._sink, event.table).inc()
        if event.table not in self._keyless_logged:
            self._keyless_logged.add(event.table)
            log.warning(
                "rows of a table without a primary key are skipped (routing.keyless: %s;"
                " set it to append to keep them as rows keyed by source position)",
                route.keyless,
                extra={"sink": self._sink, "table": event.table},
            )
        return None

    def _named_tables(self) -> list[str]:
        exact = [t for t in self._settings.include if not any(c in t for c in "*?[")]
        return sorted({*self._settings.tables, *exact})

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
