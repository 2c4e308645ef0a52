"""Check one target's events against its table before anything is written.

An event is rejected (it goes to the DLQ with the reason) for a changed primary key, an
invalid column name, an incompatible type change, NULL in a NOT NULL column, or a value its
column cannot hold exactly (a Decimal's digits, a Float32's precision, an Int/UInt range, a
DateTime64's sub-second digits: ``types.value_check``). Columns the table lacks are collected
for one ``ADD COLUMN`` per batch.

Events that carry a Debezium schema are checked per *shape*: the column/type verdicts are
worked out once per schema object in the batch, and per event only NULLs are looked at. Events
without a schema (types inferred from the values) are checked value by value.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Column
from sinks.base.columns import infer_column, inferred_list_column
from sinks.clickhouse.schema import TableSchema
from sinks.clickhouse.types import (
    TableColumn,
    ValueCheck,
    mismatch,
    name_problem,
    table_column_for,
    value_check,
)

_PRESENT = object()  # stands for "some non-NULL value" when a verdict is worked out per shape


@dataclass(slots=True)
class CheckedEvents:
    """The outcome of checking one target's events against its table."""

    valid: list[ChangeEvent] = field(default_factory=list)
    rejected: list[tuple[ChangeEvent, str]] = field(default_factory=list)
    problems: list[str | None] = field(default_factory=list)  # per event, in order
    new_columns: dict[str, TableColumn] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)  # data columns some valid event carries
    key: tuple[str, ...] = ()  # the table's key, or the first event's for a new table


@dataclass(slots=True)
class _Shape:
    """What one declared schema means for the table, worked out once per batch."""

    names: frozenset[str]
    problem: str | None = None  # every event of this shape is rejected
    additions: dict[str, TableColumn] = field(default_factory=dict)
    not_null: tuple[str, ...] = ()  # columns whose NULL is rejected
    type_problems: dict[str, str] = field(default_factory=dict)  # rejected unless NULL
    value_checks: dict[str, ValueCheck] = field(default_factory=dict)  # looked at per value


def check_events(
    events: Iterable[ChangeEvent], schema: TableSchema | None, low_cardinality: Collection[str]
) -> CheckedEvents:
    """Sort the events into valid and rejected; ``schema`` None means the table is new."""
    return _Checker(schema, low_cardinality).run(events)


class _Checker:
    def __init__(self, schema: TableSchema | None, low_cardinality: Collection[str]) -> None:
        self.known: Mapping[str, TableColumn] = schema.columns if schema else {}
        self.low_cardinality = low_cardinality
        self.out = CheckedEvents(key=schema.key if schema else ())
        self.key_names: frozenset[str] = frozenset(self.out.key)
        # By id() first (the decoder shares one tuple per schema, and the events keep it alive
        # for the whole batch), by value when routing rebuilt the tuple for each event.
        self.shapes: dict[int, _Shape] = {}
        self.shapes_by_value: dict[tuple[Column, ...], _Shape] = {}
        self.merged: set[int] = set()  # id() of the shapes whose additions are in self.out

    def run(self, events: Iterable[ChangeEvent]) -> CheckedEvents:
        for event in events:
            if not self.out.key and event.key:
                self.out.key, self.key_names = tuple(event.key), frozenset(event.key)
            problem = self._key_problem(event) or self._check(event)
            self.out.problems.append(problem)
            if problem:
                self.out.rejected.append((event, problem))
            else:
                self.out.valid.append(event)
        return self.out

    def _key_problem(self, event: ChangeEvent) -> str | None:
        # Missing keys, NULL key values and row-less upserts never get here (the template's
        # validation); a key of other columns is rejected by its collapse.
        if event.key.keys() != self.key_names:
            expected = sorted(self.key_names)
            return f"primary key {sorted(event.key)} does not match the table's key {expected}"
        return None

    def _existing(self, name: str) -> TableColumn | None:
        return self.known.get(name) or self.out.new_columns.get(name)

    # ---- events with a schema -----------------------------------------------------------

    def _check(self, event: ChangeEvent) -> str | None:
        values = event.row if event.row is not None else event.key
        shape = self._shape(event.columns) if event.columns else None
        if shape is None or not shape.names.issuperset(values.keys()):
            return self._check_values(event, values)
        if shape.problem:
            return shape.problem
        problem = _null_problem(shape, values) if event.row is not None else None
        if problem:
            return problem
        if id(shape) not in self.merged:  # what a shape adds is the same for all its events
            self.merged.add(id(shape))
            for name, column in shape.additions.items():
                self.out.new_columns.setdefault(name, column)
            self.out.present.update(shape.names)
        return None

    def _shape(self, columns: tuple[Column, ...]) -> _Shape:
        shape = self.shapes.get(id(columns))
        if shape is None:
            shape = self.shapes_by_value.get(columns)
            if shape is None:
                shape = self.shapes_by_value[columns] = self._work_out_shape(columns)
            self.shapes[id(columns)] = shape
        return shape

    def _work_out_shape(self, columns: tuple[Column, ...]) -> _Shape:
        shape = _Shape(names=frozenset(column.name for column in columns))
        not_null: list[str] = []
        for column in columns:
            existing = self._existing(column.name)
            try:
                problem, existing = self._column_problem(column, _PRESENT, existing)
            except MappingError as exc:
                problem = str(exc)
            if problem and existing is not None and not name_problem(column.name):
                shape.type_problems[column.name] = problem  # a NULL still fits
            elif problem:
                shape.problem = problem
                return shape
            elif existing is not None and column.name not in self.known:
                shape.additions[column.name] = existing
            if existing is not None and not problem:
                check = value_check(existing, column)
                if check is not None:
                    shape.value_checks[column.name] = check
            if existing is not None and not existing.nullable and existing.kind != "array":
                not_null.append(column.name)
        shape.not_null = tuple(not_null)
        return shape

    def _column_problem(
        self, column: Column, value: Any, existing: TableColumn | None
    ) -> tuple[str | None, TableColumn | None]:
        """Why ``value`` cannot go into the column, and the table column it goes into."""
        problem = name_problem(column.name)
        if problem:
            return f"invalid column name {column.name!r}: {problem}", existing
        if existing is None:
            lc = column.name in self.low_cardinality
            key = column.name in self.key_names
            return None, table_column_for(column, key=key, low_cardinality=lc)
        return mismatch(existing, column, value), existing

    # ---- events without a schema (or with columns it does not describe) -----------------

    def _check_values(self, event: ChangeEvent, values: Mapping[str, Any]) -> str | None:
        declared = {column.name: column for column in event.columns}
        additions: dict[str, TableColumn] = {}
        for name, value in _with_key(values, event.key):
            column = declared.get(name)
            if column is None and value is None and self._existing(name) is None:
                continue  # type unknown and nothing to store: wait for a value
            existing = self._existing(name) or additions.get(name)
            column = column or _inferred(name, value, existing)
            try:
                problem, target = self._column_problem(column, value, existing)
            except MappingError as exc:
                return str(exc)
            if not problem and target is not None and value is not None:
                check = value_check(target, column)
                problem = check(value) if check is not None else None
            if problem:
                return problem
            if existing is None and target is not None:
                additions[name] = target
        for name, addition in additions.items():
            self.out.new_columns.setdefault(name, addition)
        self.out.present.update(name for name, _ in _with_key(values, event.key))
        return None


def _inferred(name: str, value: Any, existing: TableColumn | None) -> Column:
    """Without a schema a list is JSON, unless the table has the column as an array."""
    if isinstance(value, list) and existing is not None and existing.kind == "array":
        return inferred_list_column(name, value) or infer_column(name, value)
    return infer_column(name, value)


def _with_key(values: Mapping[str, Any], key: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """The event's values; key columns a row leaves out come from the key."""
    yield from values.items()
    if values is not key:
        yield from ((name, value) for name, value in key.items() if name not in values)


def _null_problem(shape: _Shape, values: Mapping[str, Any]) -> str | None:
    for name in shape.not_null:
        if name in values and values[name] is None:
            return f"column {name!r} is NULL but the table column is NOT NULL"
    for name, problem in shape.type_problems.items():
        if values.get(name) is not None:
            return problem
    for name, check in shape.value_checks.items():
        value = values.get(name)
        refused = None if value is None else check(value)
        if refused:
            return refused
    return None
