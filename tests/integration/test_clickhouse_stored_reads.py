"""The ClickHouse sink reads the stored values partial rows lack for every target of a write in
one query (server mode; embedded runs one per target): each target still gets its own table's
values, and a table dropped underneath the sink is recovered from as when each target read its
own. Both modes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fanout.events import ChangeEvent, Column, Op, Origin
from fanout.settings import ClickHouseSettings
from sinks.clickhouse.sink import ClickHouseSink
from sinks.clickhouse.types import quote_identifier
from tests.integration.conftest import Endpoints

# Two tables of different layouts: a bigint key with text, bytes and an array; a two-column
# key with a number and a timestamp.
ITEMS = (
    Column("id", "int64", optional=False),
    Column("n", "int64"),
    Column("body", "string"),
    Column("blob", "bytes"),
    Column("tags", "array", parameters=(("items", "string"),)),
)
STOCK = (
    Column("site", "string", optional=False),
    Column("sku", "int32", optional=False),
    Column("qty", "int32"),
    Column("note", "string"),
    Column("price", "decimal", parameters=(("scale", "2"), ("precision", "10"))),
)
_offsets = iter(range(10**9))


def change(target: str, key: dict[str, Any], row: dict[str, Any], version: int) -> ChangeEvent:
    columns = ITEMS if target == "items" else STOCK
    origin = Origin("cdc.stored", 0, next(_offsets))
    return ChangeEvent(Op.UPSERT, f"src.{target}", key, row, version, 1, origin, columns, target)


def write(sink: ClickHouseSink, *events: ChangeEvent) -> None:
    failures = sink.write(list(events))
    assert failures == [], [str(failure.error) for failure in failures]


@pytest.fixture(params=("embedded", "server"))
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClickHouseSink]:
    database = f"stored_{uuid.uuid4().hex[:10]}"
    if request.param == "embedded":
        settings = ClickHouseSettings(data_dir=str(tmp_path / "chdb"), database=database)
    else:
        request.getfixturevalue("clickhouse")  # fails with the devstack hint if it is down
        endpoints: Endpoints = request.getfixturevalue("endpoints")
        settings = ClickHouseSettings(
            host=endpoints.ch_host, port=endpoints.ch_port, database=database
        )
    opened = ClickHouseSink(settings)
    opened.open()
    yield opened
    opened.backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(database)}")
    opened.close()


def current(sink: ClickHouseSink, target: str) -> list[tuple[Any, ...]]:
    names = [column.name for column in (ITEMS if target == "items" else STOCK)]
    result = sink.backend.client.query(
        f"SELECT {', '.join(map(quote_identifier, names))} FROM {quote_identifier(target)} FINAL "
        f"ORDER BY {quote_identifier(names[0])}, {quote_identifier(names[1])}",
        column_formats={"blob": "bytes"},
    )
    return [tuple(row) for row in result.result_rows]


ITEM = {"id": 1, "n": 1, "body": "ü" * 3000, "blob": b"\xff\x00 not utf-8", "tags": ["a", None]}
SITE = {"site": "north", "sku": 7, "qty": 5, "note": "it's", "price": "12.50"}


def whole(sink: ClickHouseSink) -> None:
    write(
        sink,
        change("items", {"id": 1}, ITEM, 1),
        change("items", {"id": 2}, {**ITEM, "id": 2, "body": "two"}, 1),
        change("stock", {"site": "north", "sku": 7}, SITE, 1),
    )


def test_partial_rows_of_two_targets_in_one_write_keep_their_own_stored_values(
    sink: ClickHouseSink,
) -> None:
    whole(sink)
    write(
        sink,
        change("items", {"id": 1}, {"id": 1, "n": 2}, 2),
        change("items", {"id": 2}, {"id": 2, "n": 3, "tags": ["b"]}, 2),
        change("items", {"id": 3}, {"id": 3, "n": 4}, 2),  # never stored: NULL/default
        change("stock", {"site": "north", "sku": 7}, {"site": "north", "sku": 7, "qty": 4}, 2),
    )
    assert current(sink, "items") == [
        (1, 2, "ü" * 3000, b"\xff\x00 not utf-8", ["a", None]),
        (2, 3, "two", b"\xff\x00 not utf-8", ["b"]),
        (3, 4, None, None, []),
    ]
    [stock] = current(sink, "stock")
    assert stock[:4] == ("north", 7, 4, "it's") and str(stock[4]) == "12.50"


def test_a_table_dropped_underneath_is_recreated_and_the_other_target_keeps_its_values(
    sink: ClickHouseSink,
) -> None:
    whole(sink)
    sink.backend.command("DROP TABLE `items`")
    write(
        sink,
        change("items", {"id": 1}, {"id": 1, "n": 2}, 2),
        change("stock", {"site": "north", "sku": 7}, {"site": "north", "sku": 7, "qty": 4}, 2),
    )
    assert current(sink, "items") == [(1, 2, None, None, [])]
    [stock] = current(sink, "stock")
    assert stock[:4] == ("north", 7, 4, "it's")
