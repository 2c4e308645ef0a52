"""One target's share of a batch: checks, columnar layout, dedup tokens, errors."""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from fanout.errors import MappingError, PermanentError, RetryableError, UnknownError
from fanout.events import ChangeEvent, Column, Op, Origin
from fanout.settings import ClickHouseSettings
from sinks.clickhouse.check import check_events
from sinks.clickhouse.errors import classify, clickhouse_code, mapped_errors
from sinks.clickhouse.schema import TableSchema
from sinks.clickhouse.types import table_column_from_catalog
from sinks.clickhouse.write import build_insert, deduplication_token


def event(
    key: int, row: dict[str, Any] | None, version: int, offset: int = 0, op: Op = Op.UPSERT
) -> ChangeEvent:
    if row is not None:
        row = {"id": key, **row}
    return ChangeEvent(
        op=op,
        table="src.t",
        key={"id": key},
        row=row,
        version=version,
        source_ts_ms=1,
        origin=Origin("topic", 0, offset),
        target="t",
    )


def schema(**columns: str) -> TableSchema:
    all_columns = {"id": "Int64", **columns}
    return TableSchema(
        key=("id",),
        columns={name: table_column_from_catalog(name, t, "") for name, t in all_columns.items()},
    )


def test_check_rejects_poison_and_gathers_new_columns() -> None:
    checked = check_events(
        [event(1, {"n": 1, "extra": "x"}, 1), event(2, {"n": "not a number"}, 2)],
        schema(n="Nullable(Int64)"),
        low_cardinality=(),
    )
    assert [e.key for e in checked.valid] == [{"id": 1}]
    [(rejected, reason)] = checked.rejected
    assert rejected.key == {"id": 2} and "incompatible type change" in reason
    assert list(checked.new_columns) == ["extra"]
    assert checked.new_columns["extra"].ch_type == "Nullable(String)"


def test_check_refuses_a_different_primary_key() -> None:
    wrong = ChangeEvent(Op.DELETE, "src.t", {"other": 1}, None, 1, 1, Origin("t", 0, 0), target="t")
    checked = check_events([wrong], schema(), low_cardinality=())
    assert "does not match the table's key" in checked.rejected[0][1]


def test_a_null_column_of_unknown_type_is_not_created() -> None:
    checked = check_events([event(1, {"maybe": None}, 1)], schema(), low_cardinality=())
    assert checked.valid and "maybe" not in checked.new_columns


def test_a_null_column_the_schema_declares_is_created() -> None:
    declared = ChangeEvent(
        Op.UPSERT,
        "src.t",
        {"id": 1},
        {"id": 1, "when": None},
        1,
        1,
        Origin("t", 0, 0),
        columns=(Column("id", "int64", False), Column("when", "date")),
        target="t",
    )
    checked = check_events([declared], schema(), low_cardinality=())
    assert checked.new_columns["when"].ch_type == "Nullable(Date32)"


def test_delete_rows_carry_the_key_version_and_defaults() -> None:
    table = schema(n="Int64", s="Nullable(String)")
    insert = build_insert(
        [event(1, {"n": 5, "s": "x"}, 3), event(2, None, 4, op=Op.DELETE)], table, {"n", "s"}
    )
    columns = dict(zip(insert.column_names, insert.columns, strict=True))
    assert columns["id"] == [1, 2]
    assert columns["n"] == [5, 0] and columns["s"] == ["x", None]
    assert columns["_fanout_version"] == [3, 4] and columns["_fanout_deleted"] == [0, 1]


def test_dedup_token_is_stable_for_the_same_batch_and_differs_otherwise() -> None:
    table = schema(n="Int64")
    batch = [event(1, {"n": 1}, 1, offset=10), event(2, {"n": 2}, 2, offset=11)]
    insert = build_insert(batch, table, {"n"})
    token = deduplication_token("t", batch, insert)
    assert token == deduplication_token("t", list(reversed(batch)), insert)
    assert token != deduplication_token("u", batch, insert)
    shifted = [event(1, {"n": 1}, 1, offset=12), event(2, {"n": 2}, 2, offset=13)]
    assert token != deduplication_token("t", shifted, insert)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (DatabaseError("type mismatch", code=53), MappingError),
        (DatabaseError("cannot parse", code=6), MappingError),
        (DatabaseError("too many parts", code=252), RetryableError),
        (DatabaseError("Query memory limit exceeded", code=241), MappingError),
        (DatabaseError("Memory limit (total) exceeded", code=241), RetryableError),
        (DatabaseError("some new code", code=12345), UnknownError),
        (DatabaseError("HTTP 503 without a code"), RetryableError),
        (OperationalError("connection refused"), RetryableError),
        (ConnectionResetError("reset"), RetryableError),
        (ValueError("invalid literal for int()"), MappingError),
    ],
)
def test_driver_errors_are_classified(error: Exception, expected: type[Exception]) -> None:
    verdict = classify(error)
    assert verdict is not None and type(verdict.error()) is expected


def test_mapped_errors_keep_the_clickhouse_code() -> None:
    with pytest.raises(PermanentError) as caught, mapped_errors():
        raise DatabaseError("Unknown table", code=60)
    assert clickhouse_code(caught.value) == 60
    assert isinstance(caught.value.__cause__, DatabaseError)


def test_embedded_is_the_default_without_a_host() -> None:
    assert ClickHouseSettings().effective_mode == "embedded"
    assert ClickHouseSettings(host="ch.example").effective_mode == "server"
    assert ClickHouseSettings(host="ch.example", mode="embedded").effective_mode == "embedded"
