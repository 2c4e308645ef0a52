"""One target's collapsed rows laid out for one columnar insert.

``build_insert`` lays the rows out column by column, with the ``_fanout_*`` columns, and
``deduplication_token`` names the insert the same way every time the same batch comes again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.datatypes.base import ClickHouseType

from fanout.events import ChangeEvent, Op
from sinks.clickhouse.schema import DELETED, SOURCE_TS, VERSION, TableSchema
from sinks.clickhouse.types import TableColumn, converter_for, driver_type, zero_for

_META_TYPES = ((VERSION, "UInt64"), (DELETED, "UInt8"), (SOURCE_TS, "Int64"))


@dataclass(frozen=True, slots=True)
class Insert:
    column_names: list[str]
    columns: list[list[Any]]
    column_types: list[ClickHouseType]
    rows: int


def build_insert(
    events: Sequence[ChangeEvent], schema: TableSchema, present: Collection[str]
) -> Insert:
    """Columnar data for one insert: key columns, carried columns, then ``_fanout_*``."""
    others = [n for n in schema.columns if n in present and n not in schema.key]
    names = list(schema.key) + others
    columns = [_key_values(events, schema.columns[name]) for name in schema.key]
    sources = [event.key if event.row is None else event.row for event in events]
    columns.extend(_column_values(sources, schema.columns[name]) for name in others)
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


def _column_values(sources: list[dict[str, Any]], column: TableColumn) -> list[Any]:
    name, zero, convert = column.name, zero_for(column), converter_for(column)
    if convert is None:
        return [zero if (value := source.get(name)) is None else value for source in sources]
    return [zero if (value := source.get(name)) is None else convert(value) for source in sources]


def deduplication_token(target: str, events: Iterable[ChangeEvent], insert: Insert) -> str:
    """Same batch, same target, same columns -> same token; ClickHouse drops the repeat."""
    ranges: dict[tuple[str, int], list[int]] = {}  # (topic, partition) -> [lowest, highest]
    for event in events:
        origin = event.origin
        offset = origin.offset
        span = ranges.get((origin.topic, origin.partition))
        if span is None:
            ranges[(origin.topic, origin.partition)] = [offset, offset]
        elif offset < span[0]:
            span[0] = offset
        elif offset > span[1]:
            span[1] = offset
    parts = [f"{topic}:{partition}:{lo}-{hi}" for (topic, partition), (lo, hi) in ranges.items()]
    text = "\n".join([target, ",".join(insert.column_names), str(insert.rows), *sorted(parts)])
    return hashlib.sha256(text.encode()).hexdigest()
