"""Partial rows (an upsert without some columns): which rows lack what, and how the ClickHouse
insert and the Elasticsearch bulk entry are completed from stored values."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from prometheus_client import REGISTRY

from fanout.events import ChangeEvent, Column, Op, Origin
from sinks.clickhouse.schema import TableSchema
from sinks.clickhouse.types import table_column_from_catalog
from sinks.clickhouse.write import Carried, build_insert, partial_rows
from sinks.elasticsearch.carry import (
    Carried as DocumentsCarried,
)
from sinks.elasticsearch.carry import (
    SourceSerializer,
    document_id,
    exact_numbers,
    missing_fields,
    with_fields,
)
from sinks.elasticsearch.types import bulk_lines
from sinks.elasticsearch.write import Entry

COLUMNS = (
    Column("id", "int64", optional=False),
    Column("n", "int64"),
    Column("body", "string"),
    Column("at", "timestamptz"),
)


def event(key: int, row: dict[str, Any] | None, op: Op = Op.UPSERT) -> ChangeEvent:
    return ChangeEvent(op, "src.t", {"id": key}, row, 1, 1, Origin("t", 0, key), COLUMNS, "t")


def schema(**columns: str) -> TableSchema:
    types = {"id": "Int64", **columns}
    return TableSchema(
        key=("id",),
        columns={name: table_column_from_catalog(name, t, "") for name, t in types.items()},
    )


TABLE = schema(n="Nullable(Int64)", body="String", at="Nullable(DateTime64(6, 'UTC'))")


# ---- ClickHouse: which rows lack columns ---------------------------------------------------


def test_whole_rows_and_deletes_are_not_partial() -> None:
    rows = [
        event(1, {"id": 1, "n": 1, "body": "a", "at": None}),
        event(2, None, Op.DELETE),
        event(3, {"n": 1, "body": "a", "at": None}),  # the key column comes from the key
    ]
    assert partial_rows(rows, TABLE, {"id", "n", "body", "at"}) is None


def test_partial_rows_name_the_data_columns_each_lacks_in_table_order() -> None:
    rows = [
        event(1, {"id": 1, "n": 1, "body": "a", "at": None}),
        event(2, {"id": 2, "n": 2}),
        event(3, {"id": 3, "at": None, "body": "c"}),
    ]
    partial = partial_rows(rows, TABLE, {"id", "n", "body", "at"})
    assert partial is not None
    assert partial.missing == {1: ("body", "at"), 2: ("n",)}
    assert partial.columns == ("n", "body", "at")


def test_a_row_with_a_name_the_table_lacks_is_still_checked_column_by_column() -> None:
    # Same length as the table, but "ghost" (a NULL of a never-typed column) is not a column.
    rows = [event(1, {"id": 1, "n": 1, "body": "a", "ghost": None})]
    partial = partial_rows(rows, TABLE, {"id", "n", "body", "ghost"})
    assert partial is not None and partial.missing == {0: ("at",)}


# ---- ClickHouse: the insert ----------------------------------------------------------------


def column(insert: Any, name: str) -> list[Any]:
    return list(insert.columns[insert.column_names.index(name)])


def test_without_partial_rows_only_the_carried_columns_are_inserted() -> None:
    rows = [event(1, {"id": 1, "n": 1})]
    insert = build_insert(rows, TABLE, {"id", "n"})
    assert insert.column_names[:2] == ["id", "n"] and "body" not in insert.column_names


def test_partial_rows_take_stored_values_and_the_rest_null_or_default() -> None:
    stored_at = dt.datetime(2024, 1, 2, 3, 4, 5, 6)  # read back naive UTC
    rows = [
        event(1, {"id": 1, "n": 10, "body": "own", "at": None}),  # whole: its own values
        event(2, {"id": 2, "n": 20}),  # lacks body, at; stored row found
        event(3, {"id": 3, "n": None}),  # lacks body, at; no stored row
        event(4, None, Op.DELETE),
    ]
    carried = Carried(
        values={1: {"body": "ü stored".encode(), "at": stored_at}},
        columns=frozenset({"body", "at"}),
    )
    insert = build_insert(rows, TABLE, {"id", "n"}, carried)
    assert insert.column_names[:4] == ["id", "n", "body", "at"]
    assert column(insert, "n") == [10, 20, None, None]
    # a String column is written as bytes throughout: stored values are read as bytes
    assert column(insert, "body") == [b"own", "ü stored".encode(), b"", b""]
    assert column(insert, "at") == [None, stored_at.replace(tzinfo=dt.UTC), None, None]


def test_a_stored_array_of_timestamps_is_written_back_as_utc() -> None:
    table = schema(stamps="Array(Nullable(DateTime64(6, 'UTC')))")
    naive = dt.datetime(2024, 1, 1, 12, 0)
    carried = Carried(values={0: {"stamps": [naive, None]}}, columns=frozenset({"stamps"}))
    insert = build_insert([event(1, {"id": 1})], table, {"id"}, carried)
    assert column(insert, "stamps") == [[naive.replace(tzinfo=dt.UTC), None]]


# ---- Elasticsearch -------------------------------------------------------------------------


def entry(row: dict[str, Any] | None, op: Op = Op.UPSERT) -> Entry:
    change = event(7, row, op)
    return Entry("t", change, bulk_lines("idx", "7", change, "2024-01-01T00:00:00+00:00"))


def test_missing_fields_are_the_declared_columns_the_row_lacks() -> None:
    assert missing_fields(entry({"id": 7, "n": 1, "body": "b", "at": None})) == []
    assert missing_fields(entry({"id": 7, "n": 1})) == ["body", "at"]
    assert missing_fields(entry({"n": 1})) == ["body", "at"]  # the key is the key's
    assert missing_fields(entry(None, Op.DELETE)) == []


def test_stored_fields_are_appended_to_the_source_line() -> None:
    partial = entry({"id": 7, "n": 1})
    lines = with_fields(partial.lines, {"body": 'ü\n"', "at": None, "big": 2**70})
    header, source, end = lines.split(b"\n")
    assert end == b"" and header == partial.lines.split(b"\n")[0]
    document = json.loads(source)  # orjson refuses the integer beyond 64 bits
    assert document == {
        "id": 7,
        "n": 1,
        "_fanout_version": 1,
        "_fanout_source_ts_ms": 1,
        "body": 'ü\n"',
        "at": None,
        "big": 2**70,
    }


def test_the_id_is_read_from_the_action_line() -> None:
    change = event(7, {"id": 7})
    lines = bulk_lines("idx", '[7,"a"]', change, "2024-01-01T00:00:00+00:00")
    assert document_id(Entry("t", change, lines)) == '[7,"a"]'


def unknown_total(table: str) -> float:
    value = REGISTRY.get_sample_value(
        "fanout_columns_unknown_total", {"sink": "elasticsearch", "table": table}
    )
    return value or 0.0


@pytest.mark.parametrize("applied", [True, False])
def test_unknown_fields_are_counted_for_applied_entries_only(applied: bool) -> None:
    table = f"t_counted_{applied}"
    partial = entry({"id": 7, "n": 1})
    partial.target = table
    carried = DocumentsCarried({id(partial): (table, 2)})
    before = unknown_total(table)
    carried.count([partial] if applied else [])
    assert unknown_total(table) - before == (2 if applied else 0)


NUMBERS = b'{"a":1234567890.1234567890123456789,"b":123456789012345678901234567890,"c":1e-30}'


def test_stored_numbers_are_read_as_their_text_only_while_carrying() -> None:
    serializer = SourceSerializer()
    assert serializer.loads(NUMBERS) == json.loads(NUMBERS)  # the client's usual parse
    with exact_numbers():
        exact = serializer.loads(NUMBERS)
    lines = with_fields(entry({"id": 7}).lines, exact)
    assert lines.split(b"\n")[1].endswith(NUMBERS[1:])  # every digit sent again
    assert serializer.loads(NUMBERS) == json.loads(NUMBERS)
