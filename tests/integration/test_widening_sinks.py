"""A source column's type widened mid-stream: the PostgreSQL and ClickHouse sinks widen their
column (``widen_columns``, default on) and keep every value, or, with it off, leave the column
as it is. ``write()`` is called directly against the devstack's PostgreSQL and ClickHouse
(both modes); the real connector's int -> bigint is in ``test_fidelity_schema_change.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Column, Op, Origin
from fanout.settings import ClickHouseSettings, PostgresSettings
from sinks.clickhouse.sink import ClickHouseSink
from sinks.clickhouse.types import quote_identifier
from sinks.postgres.sink import PostgresSink
from tests.integration.conftest import Endpoints

_offsets = iter(range(10**9))
ID = Column("id", "int32", optional=False)
INT32, INT64 = Column("n", "int32"), Column("n", "int64")


def upsert(key: int, n: Any, version: int, *columns: Column) -> ChangeEvent:
    return ChangeEvent(
        Op.UPSERT, "src.t", {"id": key}, {"id": key, "n": n}, version, 1_700_000_000_000,
        Origin("cdc", 0, next(_offsets)), columns=(ID, *columns), target="t",
    )  # fmt: skip


def decimal(precision: int, scale: int) -> Column:
    return Column("n", "decimal", parameters=(("scale", str(scale)), ("precision", str(precision))))


# ---- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def pg_schema(pg_conninfo: dict[str, Any]) -> Iterator[tuple[str, psycopg.Connection]]:
    name = f"widen_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(**pg_conninfo, autocommit=True) as admin:
        yield name, admin
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def pg_sink(pg_conninfo: dict[str, Any], schema: str, **overrides: Any) -> PostgresSink:
    sink = PostgresSink(PostgresSettings(**{**pg_conninfo, "schema": schema, **overrides}))
    sink.open()
    return sink


def pg_state(admin: psycopg.Connection, schema: str) -> tuple[str, dict[int, Any]]:
    type_sql = admin.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attname = 'n'",
        (sql.Identifier(schema, "t").as_string(admin),),
    ).fetchone()
    rows = admin.execute(sql.SQL("SELECT id, n FROM {}").format(sql.Identifier(schema, "t")))
    return (type_sql[0] if type_sql else ""), dict(rows.fetchall())


def test_postgres_follows_int_to_bigint_in_a_batch_of_both_types(
    pg_conninfo: dict[str, Any], pg_schema: tuple[str, psycopg.Connection]
) -> None:
    schema, admin = pg_schema
    sink = pg_sink(pg_conninfo, schema)
    try:
        assert sink.write([upsert(1, 1, 1, INT32)]) == []
        # Events from before and after the source's ALTER, in one batch, old ones last.
        failures = sink.write([upsert(2, 2**40, 2, INT64), upsert(3, 3, 3, INT32)])
        assert failures == []
        assert sink.write([upsert(1, -(2**62), 4, INT64)]) == []
    finally:
        sink.close()
    assert pg_state(admin, schema) == ("bigint", {1: -(2**62), 2: 2**40, 3: 3})


def test_postgres_follows_a_wider_numeric_and_varchar(
    pg_conninfo: dict[str, Any], pg_schema: tuple[str, psycopg.Connection]
) -> None:
    schema, admin = pg_schema
    sink = pg_sink(pg_conninfo, schema)
    try:
        assert sink.write([upsert(1, Decimal("12345678.12"), 1, decimal(10, 2))]) == []
        assert sink.write([upsert(2, Decimal("123456789012.1234"), 2, decimal(16, 4))]) == []
        assert pg_state(admin, schema) == (
            "numeric(16,4)",
            {1: Decimal("12345678.1200"), 2: Decimal("123456789012.1234")},
        )
        admin.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, "t")))
        admin.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, n varchar(5))").format(
                sql.Identifier(schema, "t")
            )
        )
        sink.close()  # a fresh session reads the pre-made table
        sink.open()
        longer = Column("n", "string", parameters=(("source_length", "40"),))
        assert sink.write([upsert(1, "x" * 40, 3, longer)]) == []
    finally:
        sink.close()
    assert pg_state(admin, schema) == ("character varying(40)", {1: "x" * 40})


def test_postgres_with_widening_off_dead_letters_and_keeps_the_column(
    pg_conninfo: dict[str, Any], pg_schema: tuple[str, psycopg.Connection]
) -> None:
    schema, admin = pg_schema
    sink = pg_sink(pg_conninfo, schema, widen_columns=False)
    try:
        assert sink.write([upsert(1, 1, 1, INT32)]) == []
        wide = upsert(2, 2**40, 2, INT64)
        failures = sink.write([wide, upsert(3, 3, 3, INT32)])
    finally:
        sink.close()
    assert [failure.event for failure in failures] == [wide]
    assert isinstance(failures[0].error, MappingError)
    assert "source type int64 does not fit target column type integer" in str(failures[0].error)
    assert pg_state(admin, schema) == ("integer", {1: 1, 3: 3})


def test_postgres_never_narrows_a_column(
    pg_conninfo: dict[str, Any], pg_schema: tuple[str, psycopg.Connection]
) -> None:
    schema, admin = pg_schema
    sink = pg_sink(pg_conninfo, schema)
    try:
        assert sink.write([upsert(1, 2**40, 1, INT64)]) == []
        assert sink.write([upsert(2, 2, 2, INT32)]) == []  # a replayed older event
    finally:
        sink.close()
    assert pg_state(admin, schema) == ("bigint", {1: 2**40, 2: 2})


# ---- ClickHouse ------------------------------------------------------------------------------


@pytest.fixture(params=("embedded", "server"))
def ch_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    database = f"widen_{uuid.uuid4().hex[:10]}"
    if request.param == "embedded":
        return {"data_dir": str(tmp_path / "chdb"), "database": database}
    request.getfixturevalue("clickhouse")  # fails with the devstack hint if the endpoint is down
    endpoints: Endpoints = request.getfixturevalue("endpoints")
    return {"host": endpoints.ch_host, "port": endpoints.ch_port, "database": database}


@pytest.fixture
def ch_sinks(ch_settings: dict[str, Any]) -> Iterator[list[ClickHouseSink]]:
    opened: list[ClickHouseSink] = []
    yield opened
    if opened:
        database = quote_identifier(ch_settings["database"])
        opened[0].backend.command(f"DROP DATABASE IF EXISTS {database}")
    for sink in opened:
        sink.close()


def ch_sink(
    ch_settings: dict[str, Any], opened: list[ClickHouseSink], **overrides: Any
) -> ClickHouseSink:
    sink = ClickHouseSink(ClickHouseSettings(**{**ch_settings, **overrides}))
    sink.open()
    opened.append(sink)
    return sink


def ch_state(sink: ClickHouseSink) -> tuple[str, dict[int, Any]]:
    (type_,) = sink.backend.query_rows(
        "SELECT type FROM system.columns WHERE database = currentDatabase()"
        " AND table = 't' AND name = 'n'"
    )[0]
    rows = sink.backend.query_rows("SELECT id, n FROM `t_current`")
    return str(type_), {int(key): value for key, value in rows}


def test_clickhouse_follows_int_to_bigint_in_a_batch_of_both_types(
    ch_settings: dict[str, Any], ch_sinks: list[ClickHouseSink]
) -> None:
    sink = ch_sink(ch_settings, ch_sinks)
    assert list(sink.write([upsert(1, 1, 1, INT32)])) == []
    assert list(sink.write([upsert(2, 2**40, 2, INT64), upsert(3, 3, 3, INT32)])) == []
    assert list(sink.write([upsert(1, -(2**62), 4, INT64)])) == []
    # The _current view was re-created: it reads the wider column.
    assert ch_state(sink) == ("Nullable(Int64)", {1: -(2**62), 2: 2**40, 3: 3})


def test_clickhouse_follows_a_wider_float_and_decimal(
    ch_settings: dict[str, Any], ch_sinks: list[ClickHouseSink]
) -> None:
    sink = ch_sink(ch_settings, ch_sinks)
    assert list(sink.write([upsert(1, Decimal("12345678.12"), 1, decimal(10, 2))])) == []
    wider = decimal(16, 4)
    assert list(sink.write([upsert(2, Decimal("123456789012.1234"), 2, wider)])) == []
    assert ch_state(sink) == (
        "Nullable(Decimal(16, 4))",
        {1: Decimal("12345678.12"), 2: Decimal("123456789012.1234")},
    )


def test_clickhouse_with_widening_off_keeps_the_column(
    ch_settings: dict[str, Any], ch_sinks: list[ClickHouseSink]
) -> None:
    sink = ch_sink(ch_settings, ch_sinks, widen_columns=False)
    assert list(sink.write([upsert(1, 1.5, 1, Column("n", "float32"))])) == []
    # A double Float32 holds exactly (one it would round is refused: test_exact_fit.py).
    assert list(sink.write([upsert(2, 2.5, 2, Column("n", "float64"))])) == []
    type_, _ = ch_state(sink)
    assert type_ == "Nullable(Float32)"
