"""Unconstrained ``numeric`` in ClickHouse: every digit, never rounded.

Through the real connector (``decimal.handling.mode=precise``: ``VariableScaleDecimal``) a
``numeric`` column without a scale lands as its exact decimal text in a ``String`` column, and
a ``numeric(38,10)`` one in ``Decimal(38, 10)``. A value headed for an existing ``Decimal(38,
18)`` column (what older versions made) that it cannot hold exactly is dead-lettered with the
reason, in both backends; the values it can hold are written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fanout.events import ChangeEvent, Column, Op, Origin
from fanout.settings import ClickHouseSettings
from sinks.clickhouse.sink import ClickHouseSink
from sinks.clickhouse.types import quote_identifier
from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.integration.fidelity_support import (
    StackSinks,
    capture,
    dead_letters,
    deliver,
    sinks_fixture,
    source_table,
)
from tests.support.pipeline import read_topic, wait_caught_up

VALUES = [
    Decimal("1E-22"),
    Decimal("-1208925819614629174706175"),  # -(2**80) + 1
    Decimal("123456789012345678901234567890.123456789012345678901"),
    Decimal("1.50"),
    Decimal(0),
    None,
]


targets = sinks_fixture("fidchn")


def test_unconstrained_numeric_keeps_every_digit_in_clickhouse(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    targets: StackSinks,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    columns = "id int PRIMARY KEY, amount numeric, fixed numeric(38,10)"
    with source_table(source_pg, "fid_chnum", columns) as table:
        capture(table, debezium)
        for ident, value in enumerate(VALUES, start=1):
            fixed = None if value is None or abs(value) >= 10**28 else value
            table.run("INSERT INTO {t} VALUES (%s, %s, %s)", ident, value, fixed)
        read_topic(table.topic, timeout_s=60, expect=len(VALUES))
        source = table.rows()

    deliver(targets, table, tmp_path, workers, {"max_events": 2}, ["clickhouse"])
    wait_caught_up(f"{targets.prefix}-clickhouse", [table.topic], timeout_s=120)
    assert dead_letters(targets.prefix, "clickhouse") == 0

    types = dict(
        targets.clickhouse.query(
            "SELECT name, type FROM system.columns"
            " WHERE database = {d:String} AND table = {t:String}",
            parameters={"d": targets.prefix, "t": table.name},
        ).result_rows
    )
    assert (types["amount"], types["fixed"]) == ("Nullable(String)", "Nullable(Decimal(38, 10))")
    stored = targets.read("clickhouse", table.name, ["id", "amount", "fixed"], ("id",))
    for key, row in source.items():
        text = stored[key]["amount"]
        assert (None if text is None else Decimal(text)) == row["amount"], key
        assert text is None or "E" not in text  # plain notation: 1E-22 is 0.000…01
        assert stored[key]["fixed"] == row["fixed"], key


@pytest.fixture(params=("embedded", "server"))
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClickHouseSink]:
    database = f"chnum_{uuid.uuid4().hex[:10]}"
    if request.param == "embedded":
        settings = ClickHouseSettings(data_dir=str(tmp_path / "chdb"), database=database)
    else:
        request.getfixturevalue("clickhouse")
        endpoints: Endpoints = request.getfixturevalue("endpoints")
        settings = ClickHouseSettings(
            host=endpoints.ch_host, port=endpoints.ch_port, database=database
        )
    made = ClickHouseSink(settings)
    made.open()
    yield made
    made.backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(database)}")
    made.close()


def test_a_value_an_existing_decimal_column_would_round_is_dead_lettered(
    sink: ClickHouseSink,
) -> None:
    sink.backend.command(
        "CREATE TABLE `old` (id Int64, amount Nullable(Decimal(38, 18)), `_fanout_version` UInt64,"
        " `_fanout_deleted` UInt8, `_fanout_source_ts_ms` Int64)"
        " ENGINE = ReplacingMergeTree(`_fanout_version`, `_fanout_deleted`) ORDER BY id"
    )
    declared = (Column("id", "int32", False), Column("amount", "decimal"))  # no scale
    amounts = [Decimal("1.5"), Decimal("1E-22"), Decimal("0.1234567890123456789"), Decimal(10**21)]
    batch = [
        ChangeEvent(
            Op.UPSERT,
            "public.old",
            {"id": i},
            {"id": i, "amount": amount},
            i,
            None,
            Origin("cdc", 0, i),
            declared,
            "old",
        )
        for i, amount in enumerate(amounts, start=1)
    ]
    failures = sink.write(batch)
    assert sorted(f.event.key["id"] for f in failures if f.event) == [2, 3, 4]
    assert all("holds exactly" in str(f.error) for f in failures)
    rows = sink.backend.query_rows("SELECT id, amount FROM `old` FINAL ORDER BY id")
    assert rows == [(1, Decimal("1.5"))]
