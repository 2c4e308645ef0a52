"""Column types of events without a schema: what holds for every row, and existing arrays."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from fanout.events import Column
from sinks.base.columns import NO_ITEMS, infer_column, inferred_list_column, list_items
from sinks.clickhouse.types import mismatch, table_column_from_catalog


@pytest.mark.parametrize(
    ("value", "logical"),
    [
        (True, "boolean"),
        (7, "int64"),
        (1.5, "float64"),
        (Decimal("1.5"), "decimal"),
        ("x", "string"),
        (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "timestamptz"),
        ([], "json"),  # lists of any kind are JSON: one type for every row to come
        (["a", "b"], "json"),
        ([None, 3], "json"),
        ([1, "a"], "json"),
        ([[1], [2, 3]], "json"),
        ({"a": {"b": [1]}}, "json"),
        (None, "json"),
    ],
)
def test_a_value_infers_one_type_that_holds_for_any_row(value: object, logical: str) -> None:
    assert infer_column("c", value).type == logical


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ([], NO_ITEMS),
        ([None, None], NO_ITEMS),
        (["a", None], "string"),
        ([1, None, 3], "int64"),
        ([1, 2.5], "float64"),
        ([True, False], "boolean"),
        ([1, "a"], None),
        ([{"a": 1}], None),
        ([[1]], None),
    ],
)
def test_the_items_of_a_list_for_an_existing_array_column(
    value: list[object], items: str | None
) -> None:
    assert list_items(value) == items


def test_a_list_for_an_existing_array_column_is_an_array_of_its_items() -> None:
    column = inferred_list_column("tags", ["a", None])
    assert column == Column("tags", "array", True, (("items", "string"),))
    assert inferred_list_column("tags", [1, "a"]) is None
    assert inferred_list_column("tags", []) == Column("tags", "array", True, ())


def test_clickhouse_takes_any_list_of_fitting_items_into_an_existing_array() -> None:
    ints = table_column_from_catalog("scores", "Array(Nullable(Int32))", "")
    for value in ([], [None, 3], [2**31 - 1]):
        column = inferred_list_column("scores", value)
        assert column is not None and mismatch(ints, column, value) is None
    text = inferred_list_column("scores", ["a"])
    assert text is not None and "array of string" in (mismatch(ints, text, ["a"]) or "")
