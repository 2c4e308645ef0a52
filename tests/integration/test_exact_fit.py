"""Nothing is rounded into a pre-made or narrower column (issue 13): a value the target column
cannot hold exactly goes to the DLQ with the reason (column, value, target type), and the rest
of the batch is written. ``write()`` is called directly against the devstack's PostgreSQL and
ClickHouse (both modes), on tables made beforehand as a user would make them.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Column, Failure, Op, Origin
from fanout.settings import ClickHouseSettings, PostgresSettings
from sinks.clickhouse.sink import ClickHouseSink
from sinks.clickhouse.types import quote_identifier
from sinks.postgres.sink import PostgresSink
from tests.integration.conftest import Endpoints

_offsets = iter(range(10**9))
ID = Column("id", "int32", optional=False)
UTC = dt.UTC


def upsert(key: int, n: Any, *columns: Column) -> ChangeEvent:
    """Version = key: each event is its own row; ``columns`` () means no schema."""
    declared = (ID, *columns) if columns else ()
    return ChangeEvent(
        Op.UPSERT, "src.t", {"id": key}, {"id": key, "n": n}, key, 1_700_000_000_000,
        Origin("cdc", 0, next(_offsets)), columns=declared, target="t",
    )  # fmt: skip


def batch(values: Sequence[Any], *columns: Column) -> list[ChangeEvent]:
    return [upsert(key, value, *columns) for key, value in enumerate(values, start=1)]


def refused(failures: Sequence[Failure], *, contains: Sequence[str]) -> list[int]:
    """The keys of the refused events, each checked to be a MappingError naming the column,
    the value's reason and the target type."""
    keys = []
    for failure in failures:
        assert failure.event is not None
        assert isinstance(failure.error, MappingError), failure.error
        message = str(failure.error)
        assert "column" in message and "n" in message and "exactly" in message, message
        for text in contains:
            assert text in message, message
        keys.append(failure.event.key["id"])
    return sorted(keys)


# ---- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def pg(pg_conninfo: dict[str, Any]) -> Iterator[tuple[str, psycopg.Connection]]:
    name = f"exact_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(**pg_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        yield name, admin
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def pg_write(
    pg_conninfo: dict[str, Any],
    pg: tuple[str, psycopg.Connection],
    column_type: str,
    events: list[ChangeEvent],
    **settings: Any,
) -> tuple[list[Failure], dict[int, Any]]:
    """Write ``events`` into a pre-made ``t (id int primary key, n <column_type>)``; the
    failures and the rows stored."""
    schema, admin = pg
    table = sql.Identifier(schema, "t")
    admin.execute(
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, n {})").format(table, sql.SQL(column_type))
    )
    sink = PostgresSink(PostgresSettings(**{**pg_conninfo, "schema": schema, **settings}))
    sink.open()
    try:
        failures = sink.write(events)
    finally:
        sink.close()
    rows = admin.execute(sql.SQL("SELECT id, n FROM {}").format(table)).fetchall()
    return failures, dict(rows)


def test_postgres_refuses_a_decimal_its_numeric_column_would_round_or_overflow(
    pg_conninfo: dict[str, Any], pg: tuple[str, psycopg.Connection]
) -> None:
    variable_scale = Column("n", "decimal")  # numeric without a scale at the source
    values = [Decimal("1.23"), Decimal("1.234"), Decimal("123456789.1"), Decimal("-7.50")]
    failures, rows = pg_write(
        pg_conninfo, pg, "numeric(10,2)", batch(values, variable_scale), widen_columns=False
    )
    assert refused(failures, contains=["numeric(10,2)"]) == [2, 3]
    assert any("value 1.234 " in str(failure.error) for failure in failures)
    assert rows == {1: Decimal("1.23"), 4: Decimal("-7.50")}


def test_postgres_refuses_a_declared_decimal_no_widening_can_hold(
    pg_conninfo: dict[str, Any], pg: tuple[str, psycopg.Connection]
) -> None:
    # decimal(12,6) has fewer integer digits than numeric(10,2): no safe widening either way.
    declared = Column("n", "decimal", parameters=(("scale", "6"), ("precision", "12")))
    values = [Decimal("123456.500000"), Decimal("1.000001"), Decimal("-0.25")]
    failures, rows = pg_write(pg_conninfo, pg, "numeric(10,2)", batch(values, declared))
    assert refused(failures, contains=["numeric(10,2)", "1.000001"]) == [2]
    assert rows == {1: Decimal("123456.50"), 3: Decimal("-0.25")}


def test_postgres_refuses_a_wider_declared_decimal_when_widening_is_off(
    pg_conninfo: dict[str, Any], pg: tuple[str, psycopg.Connection]
) -> None:
    wider = Column("n", "decimal", parameters=(("scale", "4"), ("precision", "12")))
    values = [Decimal("1.2500"), Decimal("1.2345"), Decimal("12345678.5")]
    failures, rows = pg_write(
        pg_conninfo, pg, "numeric(10,2)", batch(values, wider), widen_columns=False
    )
    assert refused(failures, contains=["numeric(10,2)"]) == [2]
    assert rows == {1: Decimal("1.25"), 3: Decimal("12345678.50")}


def test_postgres_refuses_an_int_without_room_in_numeric(
    pg_conninfo: dict[str, Any], pg: tuple[str, psycopg.Connection]
) -> None:
    values = [10**9, 10**11, -(10**9)]
    failures, rows = pg_write(pg_conninfo, pg, "numeric(12,2)", batch(values, Column("n", "int64")))
    assert refused(failures, contains=["numeric(12,2)", str(10**11)]) == [2]
    assert rows == {1: Decimal(10**9), 3: Decimal(-(10**9))}


@pytest.mark.parametrize(
    ("column_type", "logical", "fits", "rounds"),
    [
        (
            "timestamp(3)",
            "timestamp",
            dt.datetime(2024, 5, 1, 12, 0, 0, 123000),
            dt.datetime(2024, 5, 1, 12, 0, 0, 123456),
        ),
        (
            "timestamptz(0)",
            "timestamptz",
            dt.datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC),
            dt.datetime(2024, 5, 1, 12, 0, 1, 500000, tzinfo=UTC),
        ),
        ("time(2)", "time", dt.time(8, 30, 0, 120000), dt.time(8, 30, 0, 123000)),
    ],
)
def test_postgres_refuses_sub_second_digits_its_column_would_round(
    pg_conninfo: dict[str, Any],
    pg: tuple[str, psycopg.Connection],
    column_type: str,
    logical: str,
    fits: Any,
    rounds: Any,
) -> None:
    failures, rows = pg_write(
        pg_conninfo, pg, column_type, batch([fits, rounds], Column("n", logical))
    )
    assert refused(failures, contains=["fractional second digits"]) == [2]
    assert rows == {1: fits}


def test_postgres_refuses_schemaless_values_a_narrow_column_would_change(
    pg_conninfo: dict[str, Any], pg: tuple[str, psycopg.Connection]
) -> None:
    # Without a schema the table's type decides: a double into real is rounded by PostgreSQL.
    failures, rows = pg_write(pg_conninfo, pg, "real", batch([0.5, 0.1, 1048576.5, 1e39]))
    assert refused(failures, contains=["real"]) == [2, 4]
    assert rows == {1: 0.5, 3: 1048576.5}


def test_postgres_refuses_a_schemaless_int_out_of_its_column_range_per_event(
    pg_conninfo: dict[str, Any], pg: tuple[str, psycopg.Connection]
) -> None:
    failures, rows = pg_write(pg_conninfo, pg, "smallint", batch([7, 40000, -32768]))
    assert refused(failures, contains=["smallint", "40000"]) == [2]
    assert rows == {1: 7, 3: -32768}


# ---- ClickHouse ------------------------------------------------------------------------------


@pytest.fixture(params=("embedded", "server"))
def ch_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    database = f"exact_{uuid.uuid4().hex[:10]}"
    if request.param == "embedded":
        return {"data_dir": str(tmp_path / "chdb"), "database": database}
    request.getfixturevalue("clickhouse")  # fails with the devstack hint if the endpoint is down
    endpoints: Endpoints = request.getfixturevalue("endpoints")
    return {"host": endpoints.ch_host, "port": endpoints.ch_port, "database": database}


@pytest.fixture
def ch_sink(ch_settings: dict[str, Any]) -> Iterator[ClickHouseSink]:
    sink = ClickHouseSink(ClickHouseSettings(**ch_settings, widen_columns=False))
    sink.open()
    yield sink
    sink.backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(ch_settings['database'])}")
    sink.close()


def ch_write(
    sink: ClickHouseSink, column_type: str, events: list[ChangeEvent]
) -> tuple[list[Failure], dict[int, Any]]:
    """Write ``events`` into a pre-made ``t`` whose ``n`` column is ``column_type``."""
    sink.backend.command(
        f"CREATE TABLE `t` (id Int32, n {column_type}, `_fanout_version` UInt64,"
        " `_fanout_deleted` UInt8, `_fanout_source_ts_ms` Int64)"
        " ENGINE = ReplacingMergeTree(`_fanout_version`, `_fanout_deleted`) ORDER BY id"
    )
    failures = list(sink.write(events))
    rows = sink.backend.query_rows("SELECT id, n FROM `t` FINAL ORDER BY id")
    return failures, {int(key): value for key, value in rows}


def test_clickhouse_refuses_a_double_its_float32_column_would_round(
    ch_sink: ClickHouseSink,
) -> None:
    values = [0.5, 0.1, 16777217.0, 1e39, -2.25]
    failures, rows = ch_write(ch_sink, "Nullable(Float32)", batch(values, Column("n", "float64")))
    assert refused(failures, contains=["Float32"]) == [2, 3, 4]
    assert rows == {1: 0.5, 5: -2.25}


def test_clickhouse_refuses_an_int_its_float64_column_would_round(
    ch_sink: ClickHouseSink,
) -> None:
    values = [2**53, 2**53 + 1]
    failures, rows = ch_write(ch_sink, "Nullable(Float64)", batch(values, Column("n", "int64")))
    assert refused(failures, contains=["Float64", str(2**53 + 1)]) == [2]
    assert rows == {1: float(2**53)}


@pytest.mark.parametrize(
    ("column_type", "values", "bad"),
    [
        ("Nullable(Int32)", [5, 2**40, -(2**31)], [2]),
        ("Int16", [-1, 32768, 32767], [2]),
        ("Nullable(UInt32)", [0, -1, 2**32, 2**32 - 1], [2, 3]),
    ],
)
def test_clickhouse_refuses_an_int64_out_of_its_int_column_range_per_event(
    ch_sink: ClickHouseSink, column_type: str, values: list[int], bad: list[int]
) -> None:
    failures, rows = ch_write(ch_sink, column_type, batch(values, Column("n", "int64")))
    assert (
        refused(failures, contains=["out of range", column_type.split("(")[-1].rstrip(")")]) == bad
    )
    assert rows == {key: value for key, value in enumerate(values, 1) if key not in bad}


def test_clickhouse_refuses_sub_second_digits_its_datetime64_column_would_cut(
    ch_sink: ClickHouseSink,
) -> None:
    values = [
        dt.datetime(2024, 5, 1, 12, 0, 0, 123000),
        dt.datetime(2024, 5, 1, 12, 0, 0, 123456),
        dt.datetime(2024, 5, 1, 12, 0, 0, 999999, tzinfo=UTC),
    ]
    column = Column("n", "timestamp")
    failures, rows = ch_write(ch_sink, "Nullable(DateTime64(3, 'UTC'))", batch(values, column))
    assert refused(failures, contains=["DateTime64(3, 'UTC')", "fractional second"]) == [2, 3]
    assert rows == {1: values[0]}  # read back without a zone


def array_of(items: str) -> Column:
    return Column("n", "array", parameters=(("items", items),))


@pytest.mark.parametrize(
    ("column_type", "items", "values", "bad"),
    [
        (
            "numeric(10,2)[]",
            "decimal",
            [[Decimal("1.25"), None], [Decimal("1.5"), Decimal("1.005")], [Decimal("1e9")]],
            [2, 3],
        ),
        (
            "timestamp(0)[]",
            "timestamp",
            [[dt.datetime(2024, 5, 1, 12)], [dt.datetime(2024, 5, 1, 12, 0, 0, 500000)]],
            [2],
        ),
    ],
)
def test_postgres_refuses_an_array_element_its_column_would_round(
    pg_conninfo: dict[str, Any],
    pg: tuple[str, psycopg.Connection],
    column_type: str,
    items: str,
    values: list[Any],
    bad: list[int],
) -> None:
    failures, rows = pg_write(pg_conninfo, pg, column_type, batch(values, array_of(items)))
    shown = column_type.replace("(0)", "(0) without time zone")  # as format_type() shows it
    assert refused(failures, contains=["an element of", shown]) == bad
    assert rows == {key: value for key, value in enumerate(values, 1) if key not in bad}


def test_postgres_widens_a_numeric_column_with_a_negative_scale(
    pg_conninfo: dict[str, Any], pg: tuple[str, psycopg.Connection]
) -> None:
    # numeric(2,-3) rounds to thousands; a declared decimal(5,0) widens it to numeric(5,0).
    declared = Column("n", "decimal", parameters=(("scale", "0"), ("precision", "5")))
    values = [Decimal(12000), Decimal(12345)]
    failures, rows = pg_write(pg_conninfo, pg, "numeric(2,-3)", batch(values, declared))
    assert failures == []
    assert rows == {1: Decimal(12000), 2: Decimal(12345)}


def test_clickhouse_keeps_every_date_and_timestamp_in_the_columns_it_creates(
    ch_settings: dict[str, Any],
) -> None:
    # Date32 and DateTime64(6) hold years 1 .. 9999 (all a decoded value can be) exactly,
    # though ClickHouse documents 1900 .. 2299: nothing is clamped, in either mode.
    sink = ClickHouseSink(ClickHouseSettings(**ch_settings))
    sink.open()
    try:
        days = [dt.date(1, 1, 1), dt.date(1850, 1, 1), dt.date(2300, 1, 1), dt.date(9999, 12, 31)]
        stamps = [dt.datetime.combine(day, dt.time(23, 59, 59, 999999)) for day in days]
        events = batch(days, Column("n", "date")) + [  # timestamps into a second table
            replace(upsert(key, stamp, Column("n", "timestamp")), target="u")
            for key, stamp in enumerate(stamps, 10)
        ]
        assert list(sink.write(events)) == []
        query = "SELECT id, toString(n) FROM {} FINAL ORDER BY id"
        assert sink.backend.query_rows(query.format("`t`")) == [
            (key, str(day)) for key, day in enumerate(days, 1)
        ]
        assert sink.backend.query_rows(query.format("`u`")) == [
            (key, stamp.isoformat(" ")) for key, stamp in enumerate(stamps, 10)
        ]
    finally:
        sink.backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(ch_settings['database'])}")
        sink.close()


@pytest.mark.parametrize(
    ("column_type", "logical", "values", "bad"),
    [
        (
            "Nullable(Date)",
            "date",
            [dt.date(1969, 12, 31), dt.date(1970, 1, 1), dt.date(2149, 6, 7), dt.date(2024, 2, 29)],
            [1, 3],
        ),
        (
            "DateTime('UTC')",
            "timestamp",
            [dt.datetime(1850, 1, 1), dt.datetime(2024, 5, 1, 12), dt.datetime(9999, 12, 31)],
            [1, 3],
        ),
        (
            "Nullable(DateTime64(9, 'UTC'))",
            "timestamp",
            [dt.datetime(2262, 4, 11), dt.datetime(2262, 4, 12), dt.datetime(1600, 1, 1)],
            [2, 3],
        ),
    ],
)
def test_clickhouse_refuses_a_date_outside_its_column_range_per_event(
    ch_sink: ClickHouseSink, column_type: str, logical: str, values: list[Any], bad: list[int]
) -> None:
    # The driver failed the whole insert on these (found only by bisection, no value named).
    failures, rows = ch_write(ch_sink, column_type, batch(values, Column("n", logical)))
    assert refused(failures, contains=["outside its range"]) == bad
    assert rows == {key: value for key, value in enumerate(values, 1) if key not in bad}


@pytest.mark.parametrize(
    ("column_type", "items", "values", "bad"),
    [
        ("Array(Float32)", "float64", [[0.5, -2.25], [0.5, 0.1], [16777217.0]], [2, 3]),
        (
            "Array(Nullable(Decimal(10, 2)))",
            "decimal",
            [[Decimal("1.25"), None], [Decimal("1.255")], [Decimal("123456789")]],
            [2, 3],
        ),
        ("Array(Int32)", "int64", [[1, -(2**31)], [2**31]], [2]),
    ],
)
def test_clickhouse_refuses_an_array_element_its_column_would_round_or_could_not_hold(
    ch_sink: ClickHouseSink, column_type: str, items: str, values: list[Any], bad: list[int]
) -> None:
    failures, rows = ch_write(ch_sink, column_type, batch(values, array_of(items)))
    assert refused(failures, contains=["an element of", column_type]) == bad
    assert rows == {key: value for key, value in enumerate(values, 1) if key not in bad}


def test_clickhouse_keeps_timestamps_in_an_array_exact_whatever_the_local_zone(
    ch_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The driver takes a naive datetime as local time, and far from 1970 its float timestamp()
    # rounds 23:59:59.999999 up a second: array elements went in so (scalars did not).
    values = [[dt.datetime(2024, 5, 1, 12), None], [dt.datetime(1200, 1, 1, 23, 59, 59, 999999)]]
    sink = ClickHouseSink(ClickHouseSettings(**ch_settings))
    sink.open()
    try:
        monkeypatch.setenv("TZ", "America/New_York")  # only around the write: the encoding
        time.tzset()
        try:
            failures = list(sink.write(batch(values, array_of("timestamp"))))
        finally:
            monkeypatch.undo()
            time.tzset()
        assert failures == []
        rows = sink.backend.query_rows("SELECT id, toString(n) FROM `t` FINAL ORDER BY id")
        assert rows == [
            (1, "['2024-05-01 12:00:00.000000',NULL]"),
            (2, "['1200-01-01 23:59:59.999999']"),
        ]
    finally:
        sink.backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(ch_settings['database'])}")
        sink.close()


def test_clickhouse_carries_a_stored_timestamp_forward_exactly_whatever_the_local_zone(
    ch_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A partial row (an unchanged TOASTed column left out) takes the stored values of the
    # columns it lacks: a timestamp reads back naive, and went in again as local time, and far
    # from 1970 a second late.
    stamps = [dt.datetime(2024, 5, 1, 12), dt.datetime(1200, 1, 1, 23, 59, 59, 999999)]
    declared = (ID, Column("n", "timestamp"), Column("note", "string"))
    sink = ClickHouseSink(ClickHouseSettings(**ch_settings))
    sink.open()
    try:
        full = [
            replace(upsert(key, stamp, *declared[1:]), row={"id": key, "n": stamp, "note": "a"})
            for key, stamp in enumerate(stamps, 1)
        ]
        assert list(sink.write(full)) == []
        partial = [  # later changes (another offset: the same one is an insert retried)
            replace(
                upsert(key, None, *declared[1:]), row={"id": key, "note": "b"}, version=10 + key
            )
            for key in range(1, len(stamps) + 1)
        ]
        monkeypatch.setenv("TZ", "America/New_York")  # only around the write: the encoding
        time.tzset()
        try:
            failures = list(sink.write(partial))
        finally:
            monkeypatch.undo()
            time.tzset()
        assert failures == []
        rows = sink.backend.query_rows("SELECT id, toString(n), note FROM `t` FINAL ORDER BY id")
        assert rows == [
            (1, "2024-05-01 12:00:00.000000", "b"),
            (2, "1200-01-01 23:59:59.999999", "b"),
        ]
    finally:
        sink.backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(ch_settings['database'])}")
        sink.close()
