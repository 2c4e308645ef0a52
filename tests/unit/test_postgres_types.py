"""Type mapping, type fit and identifier rules of the PostgreSQL sink (no database needed)."""

from __future__ import annotations

import pytest
from psycopg import sql

from fanout.errors import MappingError
from fanout.events import Column
from sinks.postgres.schema import tombstone_table_name
from sinks.postgres.types import PgColumn, check_identifier, describe, fits, pg_type_sql


def rendered(column: Column) -> str:
    composed = pg_type_sql(column)
    assert isinstance(composed, sql.Composable)
    return "".join(part.as_string() for part in _parts(composed))


def _parts(composed: sql.Composable) -> list[sql.SQL]:
    if isinstance(composed, sql.Composed):
        return [p for part in composed for p in _parts(part)]
    assert isinstance(composed, sql.SQL)
    return [composed]


@pytest.mark.parametrize(
    ("logical", "expected"),
    [
        ("boolean", "boolean"),
        ("int16", "smallint"),
        ("int32", "integer"),
        ("int64", "bigint"),
        ("float32", "real"),
        ("float64", "double precision"),
        ("decimal", "numeric"),
        ("string", "text"),
        ("bytes", "bytea"),
        ("uuid", "uuid"),
        ("date", "date"),
        ("time", "time"),
        ("timestamp", "timestamp"),
        ("timestamptz", "timestamptz"),
        ("json", "jsonb"),
    ],
)
def test_each_logical_type_has_a_postgres_type(logical: str, expected: str) -> None:
    assert rendered(Column("c", logical)) == expected


def test_decimal_keeps_precision_and_scale_when_known() -> None:
    params = (("scale", "2"), ("precision", "10"))
    assert rendered(Column("c", "decimal", parameters=params)) == "numeric(10,2)"
    assert rendered(Column("c", "decimal", parameters=(("scale", "2"),))) == "numeric"
    bogus = (("scale", "x"), ("precision", "5000"))
    assert rendered(Column("c", "decimal", parameters=bogus)) == "numeric"


def test_arrays_map_to_arrays_of_their_items_and_nested_ones_to_jsonb() -> None:
    assert rendered(Column("c", "array", parameters=(("items", "int32"),))) == "integer[]"
    assert rendered(Column("c", "array", parameters=(("items", "array"),))) == "jsonb"
    assert rendered(Column("c", "array")) == "jsonb"


def test_an_unknown_logical_type_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="unknown logical type"):
        pg_type_sql(Column("c", "geometry"))


def pg(base: str, *, is_array: bool = False, type_sql: str = "") -> PgColumn:
    return PgColumn(name="c", type_sql=type_sql or base, base=base, is_array=is_array)


@pytest.mark.parametrize(
    ("logical", "base", "ok"),
    [
        ("int32", "int4", True),
        ("int16", "int8", True),  # lossless widening
        ("int32", "numeric", True),
        ("int64", "int4", False),  # narrowing
        ("string", "int4", False),
        ("int32", "text", False),
        ("float32", "float8", True),
        ("float64", "float4", False),
        ("uuid", "text", True),
        ("timestamp", "timestamptz", False),
        ("json", "json", True),
    ],
)
def test_declared_types_fit_their_column_or_a_lossless_widening(
    logical: str, base: str, ok: bool
) -> None:
    assert fits(Column("c", logical), pg(base), inferred=False) is ok


def test_inferred_types_fit_by_family() -> None:
    assert fits(Column("c", "int64"), pg("int4"), inferred=True)
    assert fits(Column("c", "string"), pg("date"), inferred=True)
    assert fits(Column("c", "string"), pg("jsonb"), inferred=True)
    assert not fits(Column("c", "string"), pg("int4"), inferred=True)


def test_array_fit_looks_at_the_items() -> None:
    ints = Column("c", "array", parameters=(("items", "int32"),))
    assert fits(ints, pg("int8", is_array=True), inferred=False)
    assert not fits(ints, pg("text", is_array=True), inferred=False)
    assert not fits(ints, pg("int8"), inferred=False)
    assert describe(ints) == "array<int32>"
    strings = Column("c", "array", parameters=(("items", "string"),))
    assert not fits(strings, pg("jsonb", is_array=True), inferred=True)  # jsonb[] is not written


@pytest.mark.parametrize("name", ["", "a" * 64, "é" * 32, "nul\x00"])
def test_names_postgres_would_change_are_rejected(name: str) -> None:
    with pytest.raises(MappingError):
        check_identifier(name, "column")


@pytest.mark.parametrize("name", ["a" * 63, 'We "quote"; DROP', "é" * 31, "Mixed Case"])
def test_names_postgres_keeps_are_accepted(name: str) -> None:
    assert check_identifier(name, "column") == name


def test_tombstone_table_names_stay_within_63_bytes_and_distinct() -> None:
    assert tombstone_table_name("orders") == "orders__fanout_tombstones"
    long_a, long_b = "x" * 60 + "a", "x" * 60 + "b"
    names = {tombstone_table_name(long_a), tombstone_table_name(long_b)}
    assert len(names) == 2
    assert all(len(n.encode()) <= 63 and n.endswith("__fanout_tombstones") for n in names)
    assert len(tombstone_table_name("é" * 31).encode()) <= 63
