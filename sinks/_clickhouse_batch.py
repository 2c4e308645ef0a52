"""One target's share of a batch: check each event against the table, collapse, go columnar.

``check_events`` isolates the events that cannot be stored (bad key, incompatible type change,
NULL into a NOT NULL column) and collects the columns the table still lacks. ``collapse``
keeps the newest event per key (ties: the later one in the batch). ``build_insert`` lays the
survivors out column by column, with the ``_fanout_*`` columns and a deduplication token that
is the same every time the same batch is written again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.datatypes.base import ClickHouseType

from fanout.events import ChangeEvent, Column, Op
from fanout.schema import columns_of, infer_column
from sinks._clickhouse_catalog import DELETED, SOURCE_TS, VERSION, TableSchema
from sinks._clickhouse_types import (
    TableColumn,
    converter_for,
    driver_type,
    mismatch,
    name_problem,
    table_column_for,
    zero_for,
)

_META_TYPES = ((VERSION, "UInt64"), (DELETED, "UInt8"), (SOURCE_TS, "Int64"))


@dataclass(slots=True)
class CheckedEvents:
    """The outcome of checking one target's events against its table."""

    valid: list[ChangeEvent] = field(default_factory=list)
    rejected: list[tuple[ChangeEvent, str]] = field(default_factory=list)
    new_columns: dict[str, TableColumn] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)  # data columns some valid event carries
    key: tuple[str, ...] = ()  # the table's key, or the first event's for a new table


@dataclass(frozen=True, slots=True)
class Insert:
    column_names: list[str]
    columns: list[list[Any]]
    column_types: list[ClickHouseType]
    rows: int


def check_events(
    events: Iterable[ChangeEvent],
    schema: TableSchema | None,
    low_cardinality: Collection[str],
) -> CheckedEvents:
    """Sort the events into valid and rejected; ``schema`` None means the table is new."""
    checked = CheckedEvents()
    known = schema.columns if schema else {}
    for event in events:
        checked.key = checked.key or (schema.key if schema else tuple(event.key))
        problem, additions, names = _check_event(
            event, checked.key, known, checked, low_cardinality
        )
        if problem:
            checked.rejected.append((event, problem))
            continue
        checked.valid.append(event)
        checked.new_columns.update(additions)
        checked.present.update(names)
    return checked


def _check_event(
    event: ChangeEvent,
    key: tuple[str, ...],
    known: dict[str, TableColumn],
    checked: CheckedEvents,
    low_cardinality: Collection[str],
) -> tuple[str | None, dict[str, TableColumn], list[str]]:
    problem = _key_problem(event, key)
    if problem:
        return problem, {}, []
    additions: dict[str, TableColumn] = {}
    names: list[str] = []
    for column, value in _columns_with_values(event):
        name = column.name
        existing = known.get(name) or checked.new_columns.get(name) or additions.get(name)
        problem = _column_problem(event, column, value, existing)
        if problem:
            return problem, {}, []
        if existing is None and (value is not None or _declared(event, name)):
            additions[name] = _new_column(column, name in key, name in low_cardinality)
        names.append(name)
    return None, additions, names


def _columns_with_values(event: ChangeEvent) -> list[tuple[Column, Any]]:
    """Each column of the event with its value; key columns a row leaves out come from the key."""
    values = event.row if event.row is not None else event.key
    pairs = [(column, values.get(column.name)) for column in columns_of(event)]
    for name, value in event.key.items():
        if name not in values:
            declared = next((c for c in event.columns if c.name == name), None)
            pairs.append((declared or infer_column(name, value), value))
    return pairs


def _key_problem(event: ChangeEvent, key: tuple[str, ...]) -> str | None:
    if not event.key:
        return "event has no primary key; ClickHouse tables are ordered by the source key"
    if set(event.key) != set(key):
        return f"primary key {sorted(event.key)} does not match the table's key {sorted(key)}"
    if any(value is None for value in event.key.values()):
        return "primary key column is NULL"
    if event.op is Op.UPSERT and event.row is None:
        return "upsert event without a row"
    return None


def _column_problem(
    event: ChangeEvent, column: Column, value: Any, existing: TableColumn | None
) -> str | None:
    problem = name_problem(column.name)
    if problem:
        return f"invalid column name {column.name!r}: {problem}"
    if existing is None:
        return None
    return mismatch(existing, column, value)


def _declared(event: ChangeEvent, name: str) -> bool:
    """A NULL in a column the event's schema describes: its type is known, create it."""
    return any(column.name == name for column in event.columns)


def _new_column(column: Column, key: bool, low_cardinality: bool) -> TableColumn:
    return table_column_for(column, key=key, low_cardinality=low_cardinality)


def collapse(events: Iterable[ChangeEvent], key: Sequence[str]) -> list[ChangeEvent]:
    """The newest event per key; of equal versions the later one in the batch wins."""
    newest: dict[tuple[Any, ...], ChangeEvent] = {}
    for event in events:
        identity = tuple(_hashable(event.key[name]) for name in key)
        kept = newest.get(identity)
        if kept is None or event.version >= kept.version:
            newest[identity] = event
    return list(newest.values())


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def build_insert(
    events: Sequence[ChangeEvent], schema: TableSchema, present: Collection[str]
) -> Insert:
    """Columnar data for one insert: key columns, carried columns, then ``_fanout_*``."""
    others = [n for n in schema.columns if n in present and n not in schema.key]
    names = list(schema.key) + others
    columns = [_key_values(events, schema.columns[name]) for name in schema.key]
    columns.extend(_column_values(events, schema.columns[name]) for name in others)
    types = [driver_type(schema.columns[name].ch_type) for name in names]
    columns.append([event.version for event in events])
    columns.append([1 if event.op is Op.DELETE else 0 for event in events])
    columns.append([event.source_ts_ms or 0 for event in events])
    names.extend(name for name, _ in _META_TYPES)
    types.extend(driver_type(ch_type) for _, ch_type in _META_TYPES)
    return Insert(names, columns, types, len(events))


def _key_values(events: Sequence[ChangeEvent], column: TableColumn) -> list[Any]:
    name, convert = column.name, converter_for(column)
    if convert is None:
        return [event.key[name] for event in events]
    return [convert(event.key[name]) for event in events]


def _column_values(events: Sequence[ChangeEvent], column: TableColumn) -> list[Any]:
    name, zero, convert = column.name, zero_for(column), converter_for(column)
    raw = [(event.key if event.row is None else event.row).get(name) for event in events]
    if convert is None:
        return [zero if value is None else value for value in raw]
    return [zero if value is None else convert(value) for value in raw]


def deduplication_token(target: str, events: Iterable[ChangeEvent], insert: Insert) -> str:
    """Same batch, same target, same columns -> same token; ClickHouse drops the repeat."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for event in events:
        where = (event.origin.topic, event.origin.partition)
        low, high = ranges.get(where, (event.origin.offset, event.origin.offset))
        ranges[where] = (min(low, event.origin.offset), max(high, event.origin.offset))
    parts = [f"{topic}:{partition}:{lo}-{hi}" for (topic, partition), (lo, hi) in ranges.items()]
    text = "\n".join([target, ",".join(insert.column_names), str(insert.rows), *sorted(parts)])
    return hashlib.sha256(text.encode()).hexdigest()
