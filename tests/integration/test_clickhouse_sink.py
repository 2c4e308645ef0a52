"""The ClickHouse sink in both modes: embedded (chDB in this process, a temporary data dir) and
server (clickhouse-connect over HTTP to the devstack's chDB-backed endpoint, ``scripts/devstack
up``). Every test runs against both and works in its own database (uuid suffix).

``write()`` is called directly with events from ``tests.support.debezium``'s generator (and a
few built by hand); its oracle says what the current state must be.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from fanout.errors import ConfigError, MappingError, RetryableError
from fanout.events import ChangeEvent, Column, Op, Origin
from fanout.settings import ClickHouseSettings
from sinks.clickhouse.sink import ClickHouseSink
from sinks.clickhouse.types import quote_identifier
from tests.integration.conftest import Endpoints
from tests.support.debezium import (
    DEFAULT_TABLES,
    LogicalEvent,
    MessageFormat,
    TableSpec,
    expected_state,
    generate_events,
)

FORMAT = MessageFormat()
MODES = ("embedded", "server")


@pytest.fixture(params=MODES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> ClickHouseSettings:
    database = f"chsink_{uuid.uuid4().hex[:10]}"
    if request.param == "embedded":
        return ClickHouseSettings(data_dir=str(tmp_path / "chdb"), database=database)
    request.getfixturevalue("clickhouse")  # fails with the devstack hint if the endpoint is down
    endpoints: Endpoints = request.getfixturevalue("endpoints")
    return ClickHouseSettings(host=endpoints.ch_host, port=endpoints.ch_port, database=database)


@pytest.fixture
def sink(settings: ClickHouseSettings) -> Iterator[ClickHouseSink]:
    sink = ClickHouseSink(settings)
    sink.open()
    yield sink
    sink.backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(settings.database)}")
    sink.close()


# ---- events ------------------------------------------------------------------------------

_offsets = iter(range(10**9))


def from_generator(events: Iterable[LogicalEvent], suffix: str) -> list[ChangeEvent]:
    """Change events as the decoder and router would hand them over (target = table_suffix)."""
    return [
        ChangeEvent(
            op=event.op,
            table=event.table,
            key=dict(event.key),
            row=None if event.row is None else dict(event.row),
            version=FORMAT.version_of(event.position),
            source_ts_ms=event.position.ts_ms,
            origin=Origin(f"cdc.{event.table}", 0, next(_offsets)),
            columns=event.spec.expected_columns(),
            target=f"{event.spec.table}_{suffix}",
        )
        for event in events
    ]


def upsert(
    target: str, key: int, row: dict[str, Any], version: int, columns: Sequence[Column] = ()
) -> ChangeEvent:
    return ChangeEvent(
        Op.UPSERT, f"src.{target}", {"id": key}, {"id": key, **row}, version, 1_700_000_000_000,
        Origin("cdc", 0, next(_offsets)), columns=tuple(columns), target=target,
    )  # fmt: skip


def delete(target: str, key: int, version: int) -> ChangeEvent:
    return ChangeEvent(
        Op.DELETE, f"src.{target}", {"id": key}, None, version, None,
        Origin("cdc", 0, next(_offsets)), target=target,
    )  # fmt: skip


def truncate(target: str, version: int) -> ChangeEvent:
    return ChangeEvent(
        Op.TRUNCATE, f"src.{target}", {}, None, version, None,
        Origin("cdc", 0, next(_offsets)), target=target,
    )  # fmt: skip


def batches(events: Sequence[ChangeEvent], size: int) -> list[list[ChangeEvent]]:
    return [list(events[i : i + size]) for i in range(0, len(events), size)]


def write_all(sink: ClickHouseSink, batch_list: Iterable[Sequence[ChangeEvent]]) -> None:
    for batch in batch_list:
        assert list(sink.write(batch)) == []


# ---- reading -----------------------------------------------------------------------------


def client(sink: ClickHouseSink) -> Client:
    return sink.backend.client


def select(sink: ClickHouseSink, sql: str) -> list[dict[str, Any]]:
    result = client(sink).query(sql)
    return [
        {name: value for name, value in zip(result.column_names, row, strict=True)}
        for row in result.result_rows
    ]


def current(sink: ClickHouseSink, target: str) -> list[dict[str, Any]]:
    """The ``<target>_current`` view, without fanout's columns."""
    rows = select(sink, f"SELECT * FROM {quote_identifier(target + '_current')}")
    return [{k: v for k, v in row.items() if not k.startswith("_fanout_")} for row in rows]


def final_live(sink: ClickHouseSink, target: str) -> list[dict[str, Any]]:
    rows = select(sink, f"SELECT * FROM {quote_identifier(target)} FINAL WHERE _fanout_deleted = 0")
    return [{k: v for k, v in row.items() if not k.startswith("_fanout_")} for row in rows]


def count_all(sink: ClickHouseSink, target: str) -> int:
    return int(client(sink).command(f"SELECT count() FROM {quote_identifier(target)}"))


def normalized(value: Any, json_column: bool = False, array_column: bool = False) -> Any:
    if array_column and value is None:
        return []  # Array columns cannot be Nullable: a NULL array is stored empty
    if json_column and isinstance(value, str):
        return json.loads(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def keyed(rows: Iterable[dict[str, Any]], spec: TableSpec) -> dict[tuple[Any, ...], Any]:
    json_columns = {column.name for column in spec.columns if column.kind == "json"}
    arrays = {column.name for column in spec.columns if column.kind.endswith("[]")}
    return {
        spec.key_tuple(row): {
            k: normalized(v, k in json_columns, k in arrays) for k, v in row.items()
        }
        for row in rows
    }


def assert_matches_oracle(
    sink: ClickHouseSink, logical: list[LogicalEvent], suffix: str, final_too: bool = True
) -> None:
    oracle = expected_state(logical)
    for spec in DEFAULT_TABLES:
        target = f"{spec.table}_{suffix}"
        expected = keyed(oracle.get(spec.name, {}).values(), spec)
        assert keyed(current(sink, target), spec) == expected, target
        if final_too:
            assert keyed(final_live(sink, target), spec) == expected, target


# ---- convergence -------------------------------------------------------------------------


def test_final_state_is_the_newest_event_per_key(sink: ClickHouseSink) -> None:
    logical = list(generate_events(3000, n_keys=150, seed=1))
    write_all(sink, batches(from_generator(logical, "s"), 400))
    assert_matches_oracle(sink, logical, "s")


def test_replays_and_out_of_order_batches_converge(sink: ClickHouseSink) -> None:
    logical = list(generate_events(3000, n_keys=100, seed=2, mix=(0.2, 0.5, 0.3)))
    chunks = batches(from_generator(logical, "r"), 250)
    replayed = chunks + chunks[2:7]  # part of the stream again, as after a rebalance
    random.Random(7).shuffle(replayed)
    write_all(sink, replayed)
    assert_matches_oracle(sink, logical, "r")


def test_truncates_converge_in_any_order(sink: ClickHouseSink) -> None:
    logical = list(generate_events(2500, n_keys=80, seed=3, truncate_rate=0.004))
    assert any(event.kind == "truncate" for event in logical)
    chunks = batches(from_generator(logical, "t"), 200)
    write_all(sink, reversed(chunks))
    # Rows older than a truncation that arrive after it are hidden by the view; a plain FINAL
    # read sees them only when the truncation came first, so only the view is compared here.
    assert_matches_oracle(sink, logical, "t", final_too=False)


def test_a_delete_is_not_resurrected_by_an_older_event(sink: ClickHouseSink) -> None:
    write_all(sink, [[upsert("d", 1, {"v": "new"}, 5), delete("d", 1, 7)]])
    write_all(sink, [[upsert("d", 1, {"v": "old"}, 6)], [upsert("d", 2, {"v": "x"}, 1)]])
    assert current(sink, "d") == [{"id": 2, "v": "x"}]
    assert final_live(sink, "d") == [{"id": 2, "v": "x"}]


def test_within_a_batch_the_later_of_equal_versions_wins(sink: ClickHouseSink) -> None:
    write_all(sink, [[upsert("e", 1, {"v": "first"}, 3), upsert("e", 1, {"v": "second"}, 3)]])
    assert current(sink, "e") == [{"id": 1, "v": "second"}]


def test_a_truncate_clears_the_table_and_older_rows_stay_out(sink: ClickHouseSink) -> None:
    write_all(sink, [[upsert("tr", 1, {"v": "a"}, 1), upsert("tr", 2, {"v": "b"}, 2)]])
    write_all(sink, [[truncate("tr", 10)]])
    assert current(sink, "tr") == [] and final_live(sink, "tr") == []
    write_all(sink, [[upsert("tr", 1, {"v": "replayed"}, 2), upsert("tr", 3, {"v": "new"}, 11)]])
    assert current(sink, "tr") == [{"id": 3, "v": "new"}]
    assert final_live(sink, "tr") == [{"id": 3, "v": "new"}]


def test_a_retried_batch_is_not_stored_twice(sink: ClickHouseSink) -> None:
    batch = [upsert("dup", k, {"v": f"row {k}"}, k) for k in range(50)]
    write_all(sink, [batch])
    stored = count_all(sink, "dup")
    write_all(sink, [batch, batch])  # the runtime retrying after a lost acknowledgement
    assert stored == 50 and count_all(sink, "dup") == stored


# ---- schema ------------------------------------------------------------------------------


def test_a_column_added_mid_stream_appears_and_old_rows_read_null(sink: ClickHouseSink) -> None:
    write_all(sink, [[upsert("evo", 1, {"name": "a"}, 1)]])
    write_all(sink, [[upsert("evo", 2, {"name": "b", "score": 7}, 2)]])
    declared = (Column("id", "int64", False), Column("name", "string"), Column("n", "int32", False))
    write_all(sink, [[upsert("evo", 3, {"name": "c", "score": 8, "n": 5}, 3, declared)]])
    rows = {row["id"]: row for row in current(sink, "evo")}
    assert rows[1] == {"id": 1, "name": "a", "score": None, "n": 0}  # NOT NULL: the default
    assert rows[2] == {"id": 2, "name": "b", "score": 7, "n": 0}
    assert rows[3] == {"id": 3, "name": "c", "score": 8, "n": 5}


def test_a_type_mismatch_is_a_failure_and_its_neighbours_are_written(
    sink: ClickHouseSink,
) -> None:
    write_all(sink, [[upsert("p", 1, {"amount": 10}, 1)]])
    poison = upsert("p", 2, {"amount": "ten"}, 2)
    failures = sink.write([upsert("p", 3, {"amount": 30}, 3), poison, upsert("p", 4, {}, 4)])
    assert [f.event for f in failures] == [poison]
    [failure] = failures
    assert isinstance(failure.error, MappingError) and failure.stage == "write"
    assert "incompatible type change" in str(failure.error) and "'amount'" in str(failure.error)
    assert failure.origin == poison.origin
    assert sorted(row["id"] for row in current(sink, "p")) == [1, 3, 4]


def test_bad_targets_are_failures(sink: ClickHouseSink) -> None:
    bad = upsert("_fanout_truncations", 1, {"v": 1}, 1)
    good = upsert("fine", 1, {"v": 1}, 1)
    failures = sink.write([bad, good])
    assert [f.event for f in failures] == [bad] and "reserved" in str(failures[0].error)
    assert current(sink, "fine") == [{"id": 1, "v": 1}]


def test_a_table_of_another_engine_is_refused(sink: ClickHouseSink) -> None:
    sink.backend.command("CREATE TABLE `theirs` (id Int64) ENGINE = MergeTree ORDER BY id")
    failures = sink.write([upsert("theirs", 1, {}, 1)])
    assert len(failures) == 1 and "not ReplacingMergeTree" in str(failures[0].error)


def test_a_table_dropped_underneath_is_created_again(sink: ClickHouseSink) -> None:
    write_all(sink, [[upsert("gone", 1, {"v": "a"}, 1)]])
    sink.backend.command("DROP TABLE `gone`")
    write_all(sink, [[upsert("gone", 2, {"v": "b"}, 2)]])
    assert current(sink, "gone") == [{"id": 2, "v": "b"}]


def test_low_cardinality_columns_as_configured(settings: ClickHouseSettings) -> None:
    settings = settings.model_copy(update={"low_cardinality": {"lc": ["country"]}})
    sink = ClickHouseSink(settings)
    sink.open()
    try:
        write_all(sink, [[upsert("lc", 1, {"country": "NL", "city": "Delft"}, 1)]])
        types = dict(
            client(sink).query("SELECT name, type FROM system.columns WHERE table = 'lc' AND "
                               "database = currentDatabase()").result_rows
        )  # fmt: skip
        assert types["country"] == "LowCardinality(Nullable(String))"
        assert types["city"] == "Nullable(String)"
    finally:
        sink.backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(settings.database)}")
        sink.close()


# ---- values ------------------------------------------------------------------------------

ROUND_TRIP_COLUMNS = (
    Column("id", "int64", optional=False),
    Column("flag", "boolean"),
    Column("small", "int16"),
    Column("medium", "int32"),
    Column("ratio", "float32"),
    Column("amount", "float64"),
    Column("price", "decimal", parameters=(("precision", "20"), ("scale", "6"))),
    Column("loose", "decimal"),
    Column("name", "string"),
    Column("blob", "bytes"),
    Column("uid", "uuid"),
    Column("day", "date"),
    Column("at", "time"),
    Column("local", "timestamp"),
    Column("instant", "timestamptz"),
    Column("doc", "json"),
    Column("tags", "array", parameters=(("items", "string"),)),
    Column("scores", "array", parameters=(("items", "int64"),)),
)
ROUND_TRIP_ROW = {
    "flag": True,
    "small": -32768,
    "medium": 2_147_483_647,
    "ratio": 0.5,
    "amount": -1234.5678,
    "price": Decimal("12345678901234.123456"),
    "loose": Decimal("-0.000000000000000001"),
    "name": "héllo, 東京 'quoted' `back`",
    "blob": b"\x00\xffbinary",
    "uid": "0b0e4b8e-5bd1-4f6c-9e60-d1a8b2d3f1c2",
    "day": dt.date(1901, 2, 3),
    "at": dt.time(13, 14, 15, 161718),
    "local": dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
    "instant": dt.datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC),
    "doc": {"nested": {"list": [1, 2.5, None, "x"]}, "ok": True},
    "tags": ["a", None, "ü"],
    "scores": [1, -2, 2**62],
}


def test_every_logical_type_round_trips(sink: ClickHouseSink) -> None:
    write_all(sink, [[upsert("vals", 1, ROUND_TRIP_ROW, 1, ROUND_TRIP_COLUMNS)]])
    [row] = select(sink, "SELECT *, hex(blob) AS blob_hex FROM `vals_current`")
    assert bytes.fromhex(row.pop("blob_hex")) == ROUND_TRIP_ROW["blob"]
    assert json.loads(row["doc"]) == ROUND_TRIP_ROW["doc"]
    assert row["at"] == "13:14:15.161718"
    assert normalized(row["instant"]) == dt.datetime(2024, 3, 1, 12, 0, 0, 123456)
    assert row["local"].replace(tzinfo=None) == ROUND_TRIP_ROW["local"]
    assert str(row["uid"]) == ROUND_TRIP_ROW["uid"]
    assert row["loose"] == "-0.000000000000000001"  # no scale: its exact text, every digit
    skip = {"blob", "doc", "at", "instant", "local", "uid", "loose"}
    for name, value in ROUND_TRIP_ROW.items():
        if name not in skip:
            assert row[name] == value, name


def test_nulls_round_trip_and_a_null_array_reads_empty(sink: ClickHouseSink) -> None:
    nulls = dict.fromkeys(ROUND_TRIP_ROW)
    write_all(sink, [[upsert("nulls", 1, nulls, 1, ROUND_TRIP_COLUMNS)]])
    [row] = current(sink, "nulls")
    assert row.pop("tags") == [] and row.pop("scores") == []
    assert set(row.values()) == {1, None}


# ---- modes and failures ------------------------------------------------------------------


def test_a_second_data_dir_in_one_process_is_a_config_error(
    settings: ClickHouseSettings, sink: ClickHouseSink, tmp_path: Path
) -> None:
    if settings.effective_mode != "embedded":
        pytest.skip("chDB's one-directory-per-process limit applies to embedded mode only")
    other = ClickHouseSink(settings.model_copy(update={"data_dir": str(tmp_path / "other")}))
    with pytest.raises(ConfigError, match="data_dir"):
        other.open()


def test_an_unreachable_server_is_retryable() -> None:
    unreachable = ClickHouseSink(ClickHouseSettings(host="127.0.0.1", port=1, connect_timeout_s=2))
    with pytest.raises(RetryableError):
        unreachable.open()
    unreachable.close()
    unreachable.close()


_LEAN_WRITE = """
import sys
from fanout.events import ChangeEvent, Op, Origin
from fanout.settings import ClickHouseSettings
from sinks.clickhouse.sink import ClickHouseSink

host, port, database = sys.argv[1:4]
sink = ClickHouseSink(ClickHouseSettings(host=host, port=int(port), database=database))
sink.open()
row = {"id": 1, "v": "x"}
event = ChangeEvent(Op.UPSERT, "s.t", {"id": 1}, row, 1, 1, Origin("t", 0, 0), (), "t")
assert list(sink.write([event])) == []
sink.backend.command(f"DROP DATABASE IF EXISTS `{database}`")
print(sorted({"pandas", "numpy"} & set(sys.modules)))
"""


def test_server_mode_writes_without_loading_pandas_or_numpy(endpoints: Endpoints) -> None:
    # clickhouse-connect would import both on the first insert (~80 MiB of RSS)
    database = f"chsink_{uuid.uuid4().hex[:10]}"
    args = [endpoints.ch_host, str(endpoints.ch_port), database]
    done = subprocess.run(
        [sys.executable, "-c", _LEAN_WRITE, *args], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
