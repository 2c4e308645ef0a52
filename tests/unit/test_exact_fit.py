"""The per-value exact-fit checks of the PostgreSQL and ClickHouse sinks (issue 13: nothing is
rounded into an existing column): which declared types need no check, which values are
refused. The sinks' behaviour against the real stores: tests/integration/test_exact_fit.py.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from fanout.events import Column
from sinks.clickhouse.types import converter_for, table_column_from_catalog
from sinks.clickhouse.types import value_check as ch_value_check
from sinks.postgres.types import PgColumn, numeric_fits, widened_type
from sinks.postgres.types import value_check as pg_value_check


def col(logical: str, **parameters: str) -> Column:
    return Column("n", logical, parameters=tuple(parameters.items()))


def pg(type_sql: str, base: str) -> PgColumn:
    return PgColumn("n", type_sql, base)


@pytest.mark.parametrize(
    ("value", "precision", "scale", "fits"),
    [
        ("1.2300", 10, 2, True),
        ("1.234", 10, 2, False),
        ("99999999.99", 10, 2, True),
        ("100000000", 10, 2, False),
        ("0.00", 3, 1, True),
        ("0.00999", 3, 5, True),  # scale above precision (PostgreSQL 15)
        ("0.01", 3, 5, False),
        ("12000", 2, -3, True),  # negative scale
        ("12500", 2, -3, False),
        ("NaN", 5, 2, True),
        ("Infinity", 5, 2, False),
        ("1234567890.1234567890123456789", 38, 19, True),  # beyond Decimal's 28-digit context
        ("1234567890.1234567890123456789", 38, 18, False),
    ],
)
def test_numeric_fit_is_exact_digit_counting(
    value: str, precision: int, scale: int, fits: bool
) -> None:
    assert numeric_fits(Decimal(value), precision, scale) is fits


def test_postgres_checks_values_only_where_the_declared_type_does_not_guarantee_the_fit() -> None:
    numeric = pg("numeric(12,2)", "numeric")
    assert (
        pg_value_check(col("decimal", precision="10", scale="2"), numeric, inferred=False) is None
    )
    assert pg_value_check(col("int32"), numeric, inferred=False) is None
    assert pg_value_check(col("int64"), numeric, inferred=False) is not None
    assert pg_value_check(col("decimal"), numeric, inferred=False) is not None
    assert pg_value_check(col("decimal", precision="12", scale="4"), numeric, inferred=False)
    assert pg_value_check(col("decimal"), pg("numeric", "numeric"), inferred=False) is None
    plain = pg("timestamp without time zone", "timestamp")
    assert pg_value_check(col("timestamp"), plain, inferred=False) is None
    assert pg_value_check(col("float64"), pg("double precision", "float8"), inferred=True) is None


def test_postgres_refuses_what_its_column_would_round_with_the_reason() -> None:
    numeric = pg("numeric(10,2)", "numeric")
    check = pg_value_check(col("decimal"), numeric, inferred=False)
    assert check is not None
    assert check(Decimal("1.5")) is None and check(7) is None and check(0.25) is None
    problem = check(Decimal("1.005"))
    assert problem == (
        "column n: value 1.005 cannot be stored exactly in target column type numeric(10,2); "
        "fanout does not round"
    )
    assert check(0.1 + 0.2) is not None  # 0.30000000000000004
    stamp = pg("timestamp(3) with time zone", "timestamptz")
    check = pg_value_check(col("timestamptz"), stamp, inferred=False)
    assert check is not None
    assert check(dt.datetime(2024, 1, 1, 0, 0, 0, 5000, tzinfo=dt.UTC)) is None
    assert "fractional second" in str(check(dt.datetime(2024, 1, 1, 0, 0, 0, 5001)))
    assert check("2024-01-01T00:00:00.1230Z") is None  # schemaless text, parsed by the server
    assert check("2024-01-01T00:00:00.1234Z") is not None
    real = pg_value_check(col("float64"), pg("real", "float4"), inferred=True)
    assert real is not None and real(0.5) is None and real(float("nan")) is None
    assert real(0.1) is not None and real(1e39) is not None
    small = pg_value_check(col("int64"), pg("smallint", "int2"), inferred=True)
    assert small is not None and small(-32768) is None and small(32768) is not None


def ch(ch_type: str, logical: str) -> object:
    return ch_value_check(table_column_from_catalog("n", ch_type, ""), col(logical))


def test_clickhouse_checks_values_only_where_the_declared_type_does_not_guarantee_the_fit() -> None:
    for ch_type, logical in [
        ("Nullable(Int32)", "int32"),
        ("Int64", "int16"),
        ("Float32", "float32"),
        ("Float32", "int16"),
        ("Nullable(Float64)", "int32"),
        ("Float64", "float64"),
        ("DateTime64(6, 'UTC')", "timestamp"),
        ("DateTime64(7)", "timestamp"),  # Int64 ticks of 100 ns: years 1 .. 9999 all fit
        ("Nullable(Date32)", "date"),  # years 1 .. 9999 (ClickHouse 26.x)
    ]:
        assert ch(ch_type, logical) is None, (ch_type, logical)
    for ch_type, logical in [
        ("Nullable(Int32)", "int64"),
        ("UInt64", "int16"),
        ("Float32", "float64"),
        ("Float64", "int64"),
        ("Nullable(DateTime64(3, 'UTC'))", "timestamp"),
        ("DateTime", "timestamptz"),
        ("Date", "date"),
        ("DateTime64(9)", "timestamp"),
    ]:
        assert ch(ch_type, logical) is not None, (ch_type, logical)


@pytest.mark.parametrize(
    ("ch_type", "logical", "fits", "refused"),
    [
        ("Nullable(Int32)", "int64", [-(2**31), 2**31 - 1], [2**31, -(2**31) - 1]),
        ("UInt8", "int64", [0, 255], [-1, 256]),
        ("Float32", "float64", [0.5, -3.0, 16777216.0, float("inf")], [0.1, 16777217.0, 1e39]),
        ("Float64", "int64", [2**53, -(2**60)], [2**53 + 1, 10**400]),
        (
            "DateTime64(3, 'UTC')",
            "timestamp",
            [dt.datetime(2024, 1, 1, 0, 0, 0, 1000)],
            [dt.datetime(2024, 1, 1, 0, 0, 0, 1)],
        ),
        (
            "DateTime('UTC')",
            "timestamptz",
            [dt.datetime(2024, 1, 1, tzinfo=dt.UTC)],
            [dt.datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=dt.UTC)],
        ),
        # Ticks out of the column's integer (the driver failed the whole insert on them).
        (
            "Nullable(Date)",
            "date",
            [dt.date(1970, 1, 1), dt.date(2149, 6, 6)],
            [dt.date(1969, 12, 31), dt.date(2149, 6, 7), dt.date(9999, 12, 31)],
        ),
        (
            "DateTime('UTC')",
            "timestamp",
            [dt.datetime(1970, 1, 1), dt.datetime(2106, 2, 7, 6, 28, 15)],
            [dt.datetime(1969, 12, 31, 23, 59, 59), dt.datetime(2106, 2, 7, 6, 28, 16)],
        ),
        (
            "DateTime64(9, 'UTC')",
            "timestamptz",
            [
                dt.datetime(1677, 9, 21, 0, 12, 43, 145225, tzinfo=dt.UTC),
                dt.datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=dt.UTC),
            ],
            [
                dt.datetime(1677, 9, 21, 0, 12, 43, 145224, tzinfo=dt.UTC),
                dt.datetime(2262, 4, 11, 23, 47, 16, 854776, tzinfo=dt.UTC),
            ],
        ),
        ("DateTime64(8)", "timestamp", [dt.datetime(1, 1, 1)], [dt.datetime(9999, 1, 1)]),
    ],
)
def test_clickhouse_refuses_what_its_column_would_round_or_could_not_hold(
    ch_type: str, logical: str, fits: list[object], refused: list[object]
) -> None:
    check = ch_value_check(table_column_from_catalog("n", ch_type, ""), col(logical))
    assert check is not None
    assert [value for value in fits if check(value) is not None] == []
    for value in refused:
        problem = check(value)
        assert problem is not None and "column 'n'" in problem and "does not round" in problem


def test_postgres_checks_array_elements_as_it_checks_a_scalar() -> None:
    numerics = PgColumn("n", "numeric(10,2)[]", "numeric", is_array=True)
    check = pg_value_check(col("array", items="decimal"), numerics, inferred=False)
    assert check is not None
    assert check([Decimal("1.25"), None, 7]) is None
    assert check([[Decimal("1.5")], [Decimal("2.50")]]) is None  # two dimensions
    assert check([Decimal("1.5"), Decimal("1.005")]) == (
        "column n: value 1.005 cannot be stored exactly in target column type numeric(10,2); "
        "fanout does not round (an element of numeric(10,2)[])"
    )
    assert check([[Decimal("1")], [Decimal("123456789")]]) is not None
    stamps = PgColumn("n", "timestamp(0) without time zone[]", "timestamp", is_array=True)
    check = pg_value_check(col("array", items="timestamp"), stamps, inferred=False)
    assert check is not None and check([dt.datetime(2024, 1, 1, 0, 0, 0, 1)]) is not None
    reals = PgColumn("n", "real[]", "float4", is_array=True)
    check = pg_value_check(col("array", items="float64"), reals, inferred=True)
    assert check is not None and check([0.5]) is None and check([0.5, 0.1]) is not None
    for type_sql, base, items in [  # no cost where every element fits
        ("numeric[]", "numeric", "decimal"),
        ("numeric(12,2)[]", "numeric", "int32"),
        ("integer[]", "int4", "int32"),
        ("timestamp without time zone[]", "timestamp", "timestamp"),
        ("text[]", "text", "string"),
    ]:
        target = PgColumn("n", type_sql, base, is_array=True)
        assert pg_value_check(col("array", items=items), target, inferred=False) is None, type_sql


def test_postgres_widens_a_numeric_with_a_negative_scale() -> None:
    # numeric(2,-3) holds 99000 at most: decimal(5,0) keeps its five integer digits.
    target = pg("numeric(2,-3)", "numeric")
    widened = widened_type(col("decimal", precision="5", scale="0"), target)
    assert widened is not None and widened.as_string() == "numeric(5,0)"
    assert widened_type(col("decimal", precision="4", scale="0"), target) is None  # narrower


def test_clickhouse_checks_array_elements_as_it_checks_a_scalar() -> None:
    def array_check(ch_type: str, items: str) -> object:
        return ch_value_check(
            table_column_from_catalog("n", ch_type, ""), col("array", items=items)
        )

    assert array_check("Array(Nullable(Float32))", "float32") is None  # what fanout creates
    assert array_check("Array(Nullable(DateTime64(6, 'UTC')))", "timestamp") is None
    assert array_check("Array(Int64)", "int32") is None
    floats = array_check("Array(Float32)", "float64")
    assert callable(floats) and floats([0.5, None, -2.25]) is None
    problem = floats([0.5, 0.1])
    assert problem is not None and "value 0.1 " in problem and "Array(Float32)" in problem
    decimals = array_check("Array(Decimal(10, 2))", "decimal")
    assert callable(decimals) and decimals([Decimal("1.25")]) is None
    assert decimals([Decimal("1.255")]) is not None
    assert decimals([Decimal("123456789")]) is not None
    ints = array_check("Array(Nullable(Int32))", "int64")
    assert callable(ints) and ints([2**31 - 1]) is None and ints([1, 2**31]) is not None


def test_clickhouse_prepares_timestamps_in_an_array_as_it_does_a_scalar() -> None:
    column = table_column_from_catalog("n", "Array(Nullable(DateTime64(6, 'UTC')))", "")
    convert = converter_for(column)
    assert convert is not None
    naive, far = dt.datetime(2024, 5, 1, 12), dt.datetime(1200, 1, 1, 23, 59, 59, 999999)
    converted = convert([naive, None, far])
    assert converted == [naive.replace(tzinfo=dt.UTC), None, far.replace(tzinfo=dt.UTC)]
    assert type(converted[0]) is dt.datetime  # the common case is a plain datetime
    assert type(converted[2]) is not dt.datetime  # far out: the driver's exact path
