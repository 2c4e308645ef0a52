"""Validation and collapse of one target's events in the PostgreSQL sink (no database needed)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Column, Op, Origin
from sinks.postgres.check import Layout, Shapes, resolve
from sinks.postgres.schema import TableInfo
from sinks.postgres.types import PgColumn

TABLE = TableInfo(
    schema="s",
    name="t",
    columns={
        "id": PgColumn("id", "bigint", "int8"),
        "name": PgColumn("name", "text", "text"),
        "doc": PgColumn("doc", "jsonb", "jsonb"),
        "total": PgColumn("total", "integer", "int4", generated=True),
        "_fanout_version": PgColumn("_fanout_version", "bigint", "int8"),
        "_fanout_updated_at": PgColumn("_fanout_updated_at", "timestamptz", "timestamptz"),
    },
    unique_keys=(("id",),),
)
KEY = ("id",)


def upsert(row: dict[str, Any], version: int = 1, columns: tuple[Column, ...] = ()) -> ChangeEvent:
    return ChangeEvent(
        Op.UPSERT, "src.t", {"id": row.get("id")}, row, version, None, Origin("x", 0, version),
        columns, "t",
    )  # fmt: skip


def delete(ident: Any, version: int) -> ChangeEvent:
    return ChangeEvent(Op.DELETE, "src.t", {"id": ident}, None, version, None, Origin("x", 0, 0))


def test_a_row_matching_the_table_stages_all_its_values_plus_the_version() -> None:
    event = upsert({"id": 1, "name": "a"}, version=7)
    layout = resolve(TABLE, KEY, event).layout
    assert layout is not None
    assert layout.columns == ("id", "name", "_fanout_version")
    assert layout.values(event) == [1, "a", 7]


def test_json_values_go_as_json_text_and_generated_columns_are_left_to_postgres() -> None:
    event = upsert({"id": 1, "doc": {"a": 1}, "total": 5}, columns=(Column("doc", "json"),))
    layout = resolve(TABLE, KEY, event).layout
    assert layout is not None and layout.columns == ("id", "doc", "_fanout_version")
    assert layout.values(event)[1] == '{"a":1}'


def test_a_new_column_is_reported_with_its_type() -> None:
    resolution = resolve(TABLE, KEY, upsert({"id": 1, "age": 3}))
    assert resolution.layout is None
    assert [name for name, _ in resolution.new_columns] == ["age"]


def test_a_null_in_an_unknown_column_adds_nothing() -> None:
    resolution = resolve(TABLE, KEY, upsert({"id": 1, "later": None}))
    assert resolution.new_columns == []
    assert resolution.layout is not None and resolution.layout.columns == ("id", "_fanout_version")


def test_a_type_that_does_not_fit_is_a_mapping_error_naming_both_types() -> None:
    resolution = resolve(
        TABLE, KEY, upsert({"id": 1, "name": 5}, columns=(Column("name", "int32"),))
    )
    assert isinstance(resolution.error, MappingError)
    assert (
        str(resolution.error)
        == "column name: source type int32 does not fit target column type text"
    )


def test_reserved_and_mismatched_key_names_are_mapping_errors() -> None:
    assert resolve(TABLE, KEY, upsert({"id": 1, "_fanout_version": 3})).error is not None
    other_key = ChangeEvent(
        Op.UPSERT, "src.t", {"code": 1}, {"code": 1}, 1, None, Origin("x", 0, 0)
    )
    error = resolve(TABLE, KEY, other_key).error
    assert error is not None and "do not match the key" in str(error)


def test_shapes_differ_by_row_names_and_value_types_not_by_values() -> None:
    shapes = Shapes()
    assert shapes.of(upsert({"id": 1, "name": "a"})) == shapes.of(upsert({"id": 2, "name": "b"}))
    assert shapes.of(upsert({"id": 1, "name": "a"})) != shapes.of(upsert({"id": 1, "name": None}))
    declared = (Column("id", "int64"),)
    equal_copy = (Column("id", "int64"),)
    assert shapes.of(upsert({"id": 1}, columns=declared)) == shapes.of(
        upsert({"id": 2}, columns=equal_copy)
    )
    assert shapes.of(upsert({"id": 1}, columns=declared)) != shapes.of(upsert({"id": 1}))


def test_rows_carrying_exactly_the_declared_columns_share_a_shape_whatever_their_values() -> None:
    shapes = Shapes()
    declared = (Column("id", "int64"), Column("name", "string"))
    a = shapes.of(upsert({"id": 1, "name": "a"}, columns=declared))
    assert a == shapes.of(upsert({"id": 2, "name": None}, columns=declared))
    assert a != shapes.of(upsert({"id": 2, "name": "b", "extra": 1}, columns=declared))
    resolution = resolve(TABLE, KEY, upsert({"id": 2, "name": None}, columns=declared))
    assert resolution.layout is not None and resolution.layout.columns[:2] == ("id", "name")


def layouts_of(events: list[ChangeEvent]) -> list[Layout | None]:
    return [None if e.op is Op.TRUNCATE else resolve(TABLE, KEY, e).layout for e in events]


# --- binary or text COPY ---------------------------------------------------------------------

WIDE = TableInfo(
    schema="s",
    name="w",
    columns={
        "id": PgColumn("id", "integer", "int4"),
        "day": PgColumn("day", "date", "date"),
        "ref": PgColumn("ref", "uuid", "uuid"),
        "doc": PgColumn("doc", "jsonb", "jsonb"),
        "ratio": PgColumn("ratio", "real", "float4"),
    },
    unique_keys=(("id",),),
)


def staged_types(*rows: dict[str, Any]) -> tuple[str, ...] | None:
    events = [upsert(row, version=i) for i, row in enumerate(rows, 1)]
    layout = resolve(WIDE, KEY, events[0]).layout
    assert layout is not None
    return layout.stage(events).types


def test_values_of_their_columns_exact_types_go_in_binary_with_json_as_bytes() -> None:
    event = upsert({"id": 1, "day": dt.date(2024, 2, 29), "ref": str(uuid.UUID(int=1))})
    layout = resolve(WIDE, KEY, event).layout
    assert layout is not None
    assert layout.stage([event]).types == ("int4", "date", "uuid", "int8")
    doc = upsert({"id": 1, "doc": {"a": [1, None]}})
    layout = resolve(WIDE, KEY, doc).layout
    assert layout is not None
    assert layout.stage([doc]) == ([[1, b'{"a":[1,null]}', 1]], ("int4", "jsonb", "int8"))


def test_values_the_binary_form_would_bend_or_not_parse_go_in_text() -> None:
    assert staged_types({"id": 1, "day": "2024-02-29"}) is None  # PostgreSQL parses the text
    assert staged_types({"id": 2**31}) is None  # int4 binary would wrap around silently
    assert staged_types({"id": 1, "ref": "{" + str(uuid.UUID(int=1)) + "}"}) is None
    assert staged_types({"id": 1, "ratio": 0.5}) is None  # float4 binary rounds out of range
    assert staged_types({"id": 1, "day": None}, {"id": 2, "day": dt.date(2024, 1, 1)}) == (
        "int4",
        "date",
        "int8",
    )


def test_a_delete_goes_in_binary_when_its_key_values_fit() -> None:
    layout = resolve(TABLE, KEY, delete(1, 2)).layout
    assert layout is not None
    assert layout.stage([delete(1, 2)]) == ([[1, 2, True]], ("int8", "int8", "bool"))
    assert layout.stage([delete("1", 2)]).types is None  # the server parses "1"
