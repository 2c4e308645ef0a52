"""ClickHouse type mapping, compatibility checks, identifier quoting and value conversion."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from fanout.errors import MappingError
from fanout.events import Column
from sinks.clickhouse.types import (
    NAMES,
    converter_for,
    mismatch,
    name_problem,
    quote_identifier,
    quote_string,
    table_column_for,
    table_column_from_catalog,
    value_check,
    zero_for,
)


def col(logical: str, optional: bool = True, **params: str) -> Column:
    return Column("c", logical, optional, tuple(sorted(params.items())))


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (col("boolean"), "Nullable(Bool)"),
        (col("int16", optional=False), "Int16"),
        (col("int32"), "Nullable(Int32)"),
        (col("int64"), "Nullable(Int64)"),
        (col("float32"), "Nullable(Float32)"),
        (col("float64", optional=False), "Float64"),
        (col("decimal", precision="12", scale="2"), "Nullable(Decimal(12, 2))"),
        (col("decimal", scale="4"), "Nullable(Decimal(38, 4))"),
        (col("decimal"), "Nullable(String)"),  # no scale: the exact decimal text
        (col("string"), "Nullable(String)"),
        (col("bytes"), "Nullable(String)"),
        (col("uuid"), "Nullable(UUID)"),
        (col("date"), "Nullable(Date32)"),
        (col("time"), "Nullable(String)"),
        (col("timestamp"), "Nullable(DateTime64(6, 'UTC'))"),
        (col("timestamptz", optional=False), "DateTime64(6, 'UTC')"),
        (col("json"), "Nullable(String)"),
        (col("array", items="string"), "Array(Nullable(String))"),
        (col("array", items="int32"), "Array(Nullable(Int32))"),
        (col("array", items="json"), "Nullable(String)"),  # arrays of JSON are stored as JSON
    ],
)
def test_each_logical_type_maps_to_its_clickhouse_type(column: Column, expected: str) -> None:
    assert table_column_for(column, key=False, low_cardinality=False).ch_type == expected


def test_key_columns_are_never_nullable() -> None:
    column = table_column_for(col("int64", optional=True), key=True, low_cardinality=False)
    assert (column.ch_type, column.nullable) == ("Int64", False)


def test_low_cardinality_applies_to_strings_only() -> None:
    text = table_column_for(col("string"), key=False, low_cardinality=True)
    number = table_column_for(col("int32"), key=False, low_cardinality=True)
    assert text.ch_type == "LowCardinality(Nullable(String))"
    assert number.ch_type == "Nullable(Int32)"


def test_a_decimal_clickhouse_cannot_hold_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="does not fit"):
        table_column_for(
            col("decimal", precision="100", scale="2"), key=False, low_cardinality=False
        )


@pytest.mark.parametrize(
    "column",
    [col(t) for t in ("boolean", "int32", "decimal", "string", "uuid", "date", "timestamptz")]
    + [col("decimal", precision="20", scale="4")]
    + [col("json"), col("time"), col("bytes"), col("array", items="int64")],
)
def test_a_created_column_reads_back_from_the_catalog_as_the_same_kind(column: Column) -> None:
    created = table_column_for(column, key=False, low_cardinality=False)
    comment = f"fanout:{created.kind}" if "COMMENT" in created.definition() else ""
    assert table_column_from_catalog("c", created.ch_type, comment) == created


@pytest.mark.parametrize(
    ("existing", "incoming", "value"),
    [
        ("Int64", col("int32"), 7),
        ("Nullable(Float64)", col("int64"), 7),
        ("Decimal(12, 2)", col("decimal", precision="12", scale="2"), Decimal("1.50")),
        ("Nullable(UUID)", col("string"), "0b0e4b8e-5bd1-4f6c-9e60-d1a8b2d3f1c2"),
        ("Array(Nullable(String))", col("array", items="string"), ["a"]),
        ("Nullable(Int64)", col("int64"), None),
        ("Array(Nullable(String))", col("array", items="string"), None),
    ],
)
def test_compatible_values_pass(existing: str, incoming: Column, value: object) -> None:
    assert mismatch(table_column_from_catalog("c", existing, ""), incoming, value) is None


@pytest.mark.parametrize(
    ("existing", "incoming", "value", "reason"),
    [
        ("Nullable(Int64)", col("string"), "abc", "incompatible type change"),
        ("Bool", col("int64"), 1, "incompatible type change"),
        ("Nullable(Date32)", col("timestamp"), dt.datetime(2024, 1, 1), "incompatible"),
        ("Array(Nullable(Int64))", col("array", items="string"), ["a"], "array of string"),
        ("Int64", col("int64"), None, "is NULL"),
    ],
)
def test_incompatible_values_are_explained(
    existing: str, incoming: Column, value: object, reason: str
) -> None:
    problem = mismatch(table_column_from_catalog("c", existing, ""), incoming, value)
    assert problem is not None and reason in problem
    if "type change" in reason:
        assert existing in problem


def test_identifiers_are_backquoted_with_escapes() -> None:
    assert quote_identifier("plain") == "`plain`"
    assert quote_identifier("we`ird\\name") == "`we\\`ird\\\\name`"
    assert quote_string("it's") == "'it\\'s'"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("tab\there", "control"),
        ("_fanout_version", "reserved"),
        ("x" * 201, "longer"),
    ],
)
def test_bad_names_are_refused(name: str, problem: str) -> None:
    assert problem in (name_problem(name) or "")
    with pytest.raises(MappingError):
        NAMES.check(name)


def test_unusual_but_valid_names_are_accepted() -> None:
    assert name_problem("Orders 2024-ü `x`") is None


def test_values_are_converted_for_their_column() -> None:
    json_column = table_column_for(col("json"), key=False, low_cardinality=False)
    time_column = table_column_for(col("time"), key=False, low_cardinality=False)
    ts_column = table_column_for(col("timestamp"), key=False, low_cardinality=False)
    to_json, to_time, to_ts = (converter_for(c) for c in (json_column, time_column, ts_column))
    assert to_json is not None and to_time is not None and to_ts is not None
    assert to_json({"a": [1, "é"], "d": Decimal("1.5")}) == '{"a":[1,"é"],"d":"1.5"}'
    assert to_time(dt.time(1, 2, 3)) == "01:02:03.000000"
    assert to_ts(dt.datetime(2024, 1, 1, 12)) == dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    assert converter_for(table_column_for(col("int64"), key=False, low_cardinality=False)) is None


def test_missing_values_become_null_or_the_type_zero() -> None:
    def zero(ch_type: str) -> object:
        return zero_for(table_column_from_catalog("c", ch_type, ""))

    assert zero("Nullable(Int64)") is None
    assert zero("Int64") == 0
    assert zero("String") == ""
    assert zero("Array(Nullable(String))") == []
    assert zero("DateTime64(6, 'UTC')") == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def test_a_decimal_without_a_scale_is_stored_as_its_exact_text() -> None:
    column = table_column_for(col("decimal"), key=False, low_cardinality=False)
    to_text = converter_for(column)
    assert column.kind == "decimal_text" and to_text is not None
    assert "COMMENT 'fanout:decimal_text'" in column.definition()
    assert to_text(Decimal("1E-22")) == "0.0000000000000000000001"
    assert to_text(Decimal("-12345678901234567890.123456789012345678901")) == (
        "-12345678901234567890.123456789012345678901"
    )
    assert to_text(Decimal("1.500")) == "1.500"  # the scale as sent
    assert to_text(7) == "7"
    assert mismatch(column, col("decimal", scale="2"), Decimal("1.5")) is None
    assert mismatch(column, col("float64"), 1.5) is not None  # a float is not exact


@pytest.mark.parametrize(
    ("existing", "value"),
    [
        ("Nullable(Decimal(38, 18))", Decimal("1.000000000000000000000")),  # zeros beyond: exact
        ("Decimal(10, 2)", Decimal("99999999.99")),
        ("Decimal64(4)", 10**13),
        ("Decimal(38, 18)", Decimal("-0")),
    ],
)
def test_numbers_a_decimal_column_holds_exactly_pass(existing: str, value: object) -> None:
    check = value_check(table_column_from_catalog("c", existing, ""), col("decimal"))
    assert check is not None and check(value) is None


@pytest.mark.parametrize(
    ("existing", "value"),
    [
        ("Nullable(Decimal(38, 18))", Decimal("1E-22")),
        ("Nullable(Decimal(38, 18))", Decimal("0.1234567890123456789")),
        ("Decimal(10, 2)", Decimal("100000000")),
        ("Decimal(10, 2)", 10**9),
        ("Decimal(38, 18)", Decimal("NaN")),
    ],
)
def test_numbers_a_decimal_column_would_round_are_refused(existing: str, value: object) -> None:
    check = value_check(table_column_from_catalog("c", existing, ""), col("decimal"))
    assert check is not None
    assert "holds exactly" in (check(value) or "") or "cannot be stored" in (check(value) or "")


def test_declared_types_that_always_fit_are_not_checked_value_by_value() -> None:
    existing = table_column_from_catalog("c", "Nullable(Decimal(38, 18))", "")
    assert value_check(existing, col("decimal", precision="20", scale="18")) is None
    assert value_check(existing, col("int64")) is None
    assert value_check(existing, col("decimal", precision="40", scale="18")) is not None
    assert value_check(table_column_from_catalog("c", "Decimal(10, 2)", ""), col("int64"))
    assert value_check(table_column_from_catalog("c", "Nullable(Int64)", ""), col("int64")) is None
