"""Checking events that carry a Debezium schema (per shape) against a ClickHouse table."""

from __future__ import annotations

from typing import Any

from fanout.events import ChangeEvent, Column, Op, Origin
from sinks.clickhouse.check import check_events
from sinks.clickhouse.schema import TableSchema
from sinks.clickhouse.types import table_column_from_catalog

COLUMNS = (Column("id", "int64", False), Column("n", "int32", False), Column("s", "string"))


def event(
    key: int, row: dict[str, Any] | None, columns: tuple[Column, ...] = COLUMNS
) -> ChangeEvent:
    return ChangeEvent(
        Op.UPSERT if row is not None else Op.DELETE,
        "src.t",
        {"id": key},
        None if row is None else {"id": key, **row},
        key,
        None,
        Origin("t", 0, key),
        columns=columns,
        target="t",
    )


def table(**columns: str) -> TableSchema:
    every = {"id": "Int64", **columns}
    return TableSchema(
        ("id",), {name: table_column_from_catalog(name, t, "") for name, t in every.items()}
    )


def test_a_new_table_gets_every_declared_column_with_its_type() -> None:
    checked = check_events([event(1, {"n": 1, "s": None})], None, low_cardinality=())
    assert checked.key == ("id",) and not checked.rejected
    assert {name: c.ch_type for name, c in checked.new_columns.items()} == {
        "id": "Int64",
        "n": "Int32",
        "s": "Nullable(String)",
    }


def test_null_in_a_not_null_column_rejects_only_that_event() -> None:
    checked = check_events(
        [event(1, {"n": 1, "s": "a"}), event(2, {"n": None, "s": "b"}), event(3, None)],
        table(n="Int32", s="Nullable(String)"),
        low_cardinality=(),
    )
    assert [e.key["id"] for e in checked.valid] == [1, 3]  # the delete carries no row
    assert "'n' is NULL" in checked.rejected[0][1]


def test_a_declared_type_change_rejects_values_but_not_nulls() -> None:
    changed = (Column("id", "int64", False), Column("n", "string"))
    checked = check_events(
        [event(1, {"n": "text"}, changed), event(2, {"n": None}, changed)],
        table(n="Nullable(Int32)"),
        low_cardinality=(),
    )
    assert [e.key["id"] for e in checked.valid] == [2]
    assert "incompatible type change" in checked.rejected[0][1]


def test_schema_tuples_rebuilt_per_event_are_checked_the_same() -> None:
    events = [event(k, {"n": k, "s": None}, tuple(COLUMNS)) for k in range(3)]
    events.append(event(9, {"n": "x", "s": None}, (COLUMNS[0], Column("n", "string"), COLUMNS[2])))
    checked = check_events(events, table(n="Int32", s="Nullable(String)"), low_cardinality=())
    assert len(checked.valid) == 3 and checked.rejected[0][0].key == {"id": 9}


def test_a_column_clickhouse_cannot_hold_rejects_the_event_not_the_batch() -> None:
    huge = (
        Column("id", "int64", False),
        Column("d", "decimal", parameters=(("precision", "99"), ("scale", "2"))),
    )
    checked = check_events(
        [event(1, {"d": 1}, huge), event(2, {"n": 5, "s": "ok"})],
        table(n="Int32", s="Nullable(String)"),
        low_cardinality=(),
    )
    assert [e.key["id"] for e in checked.valid] == [2]
    assert "does not fit" in checked.rejected[0][1]


def test_columns_the_schema_does_not_describe_are_inferred() -> None:
    checked = check_events(
        [event(1, {"n": 1, "s": "a", "extra": 2.5})],
        table(n="Int32", s="Nullable(String)"),
        low_cardinality=("extra",),
    )
    assert not checked.rejected
    assert checked.new_columns["extra"].ch_type == "Nullable(Float64)"
