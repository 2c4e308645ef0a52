"""Which source type changes the PostgreSQL and ClickHouse sinks follow by widening a column
(``sinks.base.widening``), and the wider type each picks (no database needed; the real
connector's int -> bigint is in ``tests/integration/test_fidelity_schema_change.py``)."""

from __future__ import annotations

import pytest

from fanout.events import Column
from sinks.base.widening import Width, declared_width, widens
from sinks.clickhouse.types import table_column_from_catalog
from sinks.clickhouse.types import widened_type as ch_widened
from sinks.postgres.types import PgColumn
from sinks.postgres.types import widened_type as pg_widened


def col(logical: str, **params: str) -> Column:
    return Column("n", logical, parameters=tuple(params.items()))


def decimal(precision: int | None, scale: int | None) -> Column:
    params = {"scale": str(scale)} if scale is not None else {}
    if precision is not None:
        params["precision"] = str(precision)
    return col("decimal", **params)


WIDENING = [
    (Width("int", 16), Width("int", 32)),
    (Width("int", 32), Width("int", 64)),
    (Width("int", 16), Width("int", 64)),
    (Width("float", 32), Width("float", 64)),
    (Width("decimal", 10, 2), Width("decimal", 12, 2)),
    (Width("decimal", 10, 2), Width("decimal", 12, 4)),
    (Width("decimal", 10, 2), Width("decimal", None)),
    (Width("int", 32), Width("decimal", 10, 0)),
    (Width("int", 64), Width("decimal", None)),
    (Width("string", 10), Width("string", 100)),
    (Width("string", 10), Width("string", None)),
]
NOT_WIDENING = [
    (Width("int", 32), Width("int", 32)),  # no change
    (Width("int", 64), Width("int", 32)),  # narrowing
    (Width("float", 64), Width("float", 32)),
    (Width("int", 32), Width("float", 64)),  # another family
    (Width("float", 32), Width("decimal", None)),
    (Width("decimal", 10, 2), Width("decimal", 12, 1)),  # fewer fractional digits
    (Width("decimal", 10, 2), Width("decimal", 11, 4)),  # fewer integer digits
    (Width("decimal", None), Width("decimal", 38, 10)),  # from unconstrained
    (Width("int", 64), Width("decimal", 18, 0)),  # 19 digits do not fit in 18
    (Width("string", 100), Width("string", 10)),
    (Width("string", None), Width("string", 10)),
]


@pytest.mark.parametrize(("old", "new"), WIDENING)
def test_lossless_changes_widen(old: Width, new: Width) -> None:
    assert widens(old, new)


@pytest.mark.parametrize(("old", "new"), NOT_WIDENING)
def test_narrowing_and_changes_of_family_do_not_widen(old: Width, new: Width) -> None:
    assert not widens(old, new)


def test_a_declared_width_needs_what_the_schema_says() -> None:
    assert declared_width(col("int64")) == Width("int", 64)
    assert declared_width(decimal(12, 2)) == Width("decimal", 12, 2)
    assert declared_width(decimal(None, None)) == Width("decimal", None)  # variable scale
    assert declared_width(decimal(None, 2)) is None  # precision unknown: no claim
    assert declared_width(col("string")) is None  # length not propagated: no claim
    assert declared_width(col("string", source_length="40")) == Width("string", 40)
    assert declared_width(col("timestamp")) is None


def pg(type_sql: str, base: str) -> PgColumn:
    return PgColumn(name="n", type_sql=type_sql, base=base)


@pytest.mark.parametrize(
    ("existing", "incoming", "expected"),
    [
        (pg("integer", "int4"), col("int64"), "bigint"),
        (pg("smallint", "int2"), col("int32"), "integer"),
        (pg("real", "float4"), col("float64"), "double precision"),
        (pg("numeric(10,2)", "numeric"), decimal(12, 2), "numeric(12,2)"),
        (pg("numeric(10,2)", "numeric"), decimal(None, None), "numeric"),
        (pg("integer", "int4"), decimal(12, 2), "numeric(12,2)"),
        (pg("character varying(10)", "varchar"), col("string", source_length="50"), "varchar(50)"),
        (pg("character varying(10)", "varchar"), col("string", source_length="2147483647"), "text"),
    ],
)
def test_postgres_widens_to_the_declared_type(
    existing: PgColumn, incoming: Column, expected: str
) -> None:
    widened = pg_widened(incoming, existing)
    assert widened is not None
    assert widened.as_string() == expected


@pytest.mark.parametrize(
    ("existing", "incoming"),
    [
        (pg("bigint", "int8"), col("int32")),  # an older, narrower event
        (pg("integer", "int4"), col("int32")),
        (pg("integer", "int4"), col("float64")),
        (pg("numeric", "numeric"), decimal(12, 2)),
        (pg("numeric(10,2)", "numeric"), decimal(12, 1)),
        (pg("text", "text"), col("string", source_length="10")),
        (pg("character varying(10)", "varchar"), col("string")),  # length unknown
        (pg("character(10)", "bpchar"), col("string", source_length="20")),  # padded: left alone
        (PgColumn("n", "integer[]", "int4", is_array=True), col("int64")),
    ],
)
def test_postgres_leaves_other_changes_to_the_type_check(
    existing: PgColumn, incoming: Column
) -> None:
    assert pg_widened(incoming, existing) is None


@pytest.mark.parametrize(
    ("existing", "incoming", "expected"),
    [
        ("Int32", col("int64"), "Int64"),
        ("Nullable(Int32)", col("int64"), "Nullable(Int64)"),
        ("Nullable(Float32)", col("float64"), "Nullable(Float64)"),
        ("Nullable(Decimal(10, 2))", decimal(12, 3), "Nullable(Decimal(12, 3))"),
        ("Nullable(Int32)", decimal(12, 2), "Nullable(Decimal(12, 2))"),
    ],
)
def test_clickhouse_widens_to_the_declared_type_keeping_nullable(
    existing: str, incoming: Column, expected: str
) -> None:
    assert ch_widened(table_column_from_catalog("n", existing, ""), incoming) == expected


@pytest.mark.parametrize(
    ("existing", "incoming"),
    [
        ("Nullable(Int64)", col("int32")),
        ("Nullable(Float64)", col("float32")),
        ("Nullable(Decimal(10, 2))", decimal(None, None)),  # Decimal -> String text: not done
        ("Nullable(Decimal(10, 2))", decimal(12, 1)),
        ("Nullable(Decimal(10, 2))", decimal(80, 2)),  # beyond ClickHouse's 76 digits
        ("Nullable(UInt32)", col("int64")),
        ("Nullable(String)", col("string", source_length="20")),
    ],
)
def test_clickhouse_leaves_other_changes_to_the_type_check(existing: str, incoming: Column) -> None:
    assert ch_widened(table_column_from_catalog("n", existing, ""), incoming) is None
