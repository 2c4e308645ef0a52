"""The PostgreSQL sink against the real PostgreSQL of the devstack (``scripts/devstack up``).

Each test writes into its own schema (uuid suffix) and drops it afterwards, so engineers can
run the suite side by side. ``write()`` is called directly with events built here; the
runtime's end-to-end tests live elsewhere.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from fanout.errors import MappingError, RetryableError
from fanout.events import ChangeEvent, Column, Op, Origin
from fanout.runtime.metrics import STALE_SKIPPED
from fanout.settings import PostgresSettings
from sinks.postgres.sink import PostgresSink
from tests.support.debezium import DEFAULT_TABLES, Message, expected_state, generate_stream

BOOKKEEPING = ("_fanout_version", "_fanout_updated_at")


SettingsFactory = Callable[..., PostgresSettings]


@pytest.fixture(scope="module")
def make_settings(pg_conninfo: dict[str, Any]) -> SettingsFactory:
    """PostgresSettings for the devstack (conftest's ``pg_conninfo`` fails if it is down)."""

    def make(**overrides: Any) -> PostgresSettings:
        return PostgresSettings(**{**pg_conninfo, "connect_timeout_s": 5, **overrides})

    return make


@pytest.fixture(scope="module")
def admin(pg_conninfo: dict[str, Any]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        yield conn


@pytest.fixture
def schema(admin: psycopg.Connection) -> Iterator[str]:
    name = f"pgsink_{uuid.uuid4().hex[:10]}"
    yield name
    admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def sink(schema: str, make_settings: SettingsFactory) -> Iterator[PostgresSink]:
    sink = PostgresSink(make_settings(schema=schema, application_name=f"fanout-test-{schema}"))
    sink.open()
    yield sink
    sink.close()


# --- building events and reading tables ------------------------------------------------------

_offsets = iter(range(10**9))


def upsert(
    target: str,
    key: dict[str, Any],
    row: dict[str, Any],
    version: int,
    columns: Sequence[Column] = (),
) -> ChangeEvent:
    return ChangeEvent(
        op=Op.UPSERT,
        table=f"src.{target}",
        key=key,
        row={**key, **row},
        version=version,
        source_ts_ms=None,
        origin=Origin("cdc", 0, next(_offsets)),
        columns=tuple(columns),
        target=target,
    )


def delete(target: str, key: dict[str, Any], version: int) -> ChangeEvent:
    return ChangeEvent(
        Op.DELETE, f"src.{target}", key, None, version, None, Origin("cdc", 0, next(_offsets)),
        target=target,
    )  # fmt: skip


def truncate(target: str, version: int) -> ChangeEvent:
    return ChangeEvent(
        Op.TRUNCATE, f"src.{target}", {}, None, version, None, Origin("cdc", 0, next(_offsets)),
        target=target,
    )  # fmt: skip


def table_rows(admin: psycopg.Connection, schema: str, table: str) -> list[dict[str, Any]]:
    """The table's rows without bookkeeping columns, ordered by every column."""
    cur = admin.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, table)))
    names = [d.name for d in cur.description or ()]
    rows = [
        {n: v for n, v in zip(names, row, strict=True) if n not in BOOKKEEPING}
        for row in cur.fetchall()
    ]
    return sorted(rows, key=lambda r: [repr(v) for v in r.values()])


def by_id(rows: list[dict[str, Any]], key: str = "id") -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in rows}


# --- a random CDC stream and its oracle -----------------------------------------------------

ORDER_COLUMNS = (
    Column("id", "int64", optional=False),
    Column("status", "string"),
    Column("amount", "decimal", parameters=(("scale", "2"), ("precision", "12"))),
    Column("placed_at", "timestamptz"),
    Column("attrs", "json"),
)


def _order_row(rng: random.Random) -> dict[str, Any]:
    placed_at = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randint(0, 10**7))
    return {
        "status": rng.choice(["new", "paid", "shipped", 'it\'s "quoted"']),
        "amount": Decimal(rng.randint(0, 10**6)) / 100,
        "placed_at": placed_at,
        "attrs": {"gift": rng.random() < 0.5, "tags": ["a", "b"][: rng.randint(0, 2)]},
    }


def _line_row(rng: random.Random) -> dict[str, Any]:
    return {
        "sku": f"SKU-{rng.randint(1, 99)}",
        "qty": rng.randint(1, 5),
        "price": rng.random() * 100,
    }


def random_stream(
    seed: int, n: int
) -> tuple[list[ChangeEvent], dict[str, dict[tuple[Any, ...], Any]]]:
    """``n`` events over an orders table (declared schema) and a composite-key line items table
    (inferred types), with inserts, updates, deletes and re-inserts; returns the events and the
    oracle: per target, the newest row per key (None for a deleted key)."""
    rng = random.Random(seed)
    events: list[ChangeEvent] = []
    oracle: dict[str, dict[tuple[Any, ...], Any]] = {"orders": {}, "Line Items": {}}
    for version in range(1, n + 1):
        if rng.random() < 0.5:
            target, key = "orders", {"id": rng.randint(1, 60)}
            row, columns = _order_row(rng), ORDER_COLUMNS
        else:
            target, key = (
                "Line Items",
                {"order_id": rng.randint(1, 20), "line_no": rng.randint(1, 3)},
            )
            row, columns = _line_row(rng), ()
        ident = tuple(key.values())
        if oracle[target].get(ident) is not None and rng.random() < 0.25:
            events.append(delete(target, key, version))
            oracle[target][ident] = None
        else:
            events.append(upsert(target, key, row, version, columns))
            oracle[target][ident] = {**key, **row}
    return events, oracle


def expected_rows(oracle: dict[tuple[Any, ...], Any]) -> list[dict[str, Any]]:
    rows = [row for row in oracle.values() if row is not None]
    return sorted(rows, key=lambda r: [repr(v) for v in r.values()])


def batches(events: list[ChangeEvent], size: int) -> list[list[ChangeEvent]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def assert_matches_oracle(
    admin: psycopg.Connection, schema: str, oracle: dict[str, dict[tuple[Any, ...], Any]]
) -> None:
    for target, newest in oracle.items():
        assert table_rows(admin, schema, target) == expected_rows(newest), target


# --- convergence -----------------------------------------------------------------------------


def test_stream_written_in_order_equals_newest_event_per_key(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    events, oracle = random_stream(seed=1, n=1500)
    for batch in batches(events, 97):
        assert sink.write(batch) == []
    assert_matches_oracle(admin, schema, oracle)


def test_replaying_batches_in_any_order_converges(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    events, oracle = random_stream(seed=2, n=1500)
    live = batches(events, 50)
    rng = random.Random(7)
    for batch in live:
        sink.write(batch)
    replay = batches(events, 131)  # a backfill with other batch boundaries, out of order
    rng.shuffle(replay)
    for batch in replay:
        sink.write(batch)
    for batch in reversed(live):
        sink.write(batch)
    assert_matches_oracle(admin, schema, oracle)


def test_backfill_from_the_start_while_live_batches_continue_converges(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    events, oracle = random_stream(seed=3, n=1200)
    live, backfill = batches(events, 40), batches(events, 70)
    half = len(live) // 2
    for batch in live[:half]:
        sink.write(batch)
    # The backfill starts from offset 0 while live goes on, and goes on after live is done:
    # from then on every backfill batch is older than the table, which must not go back in time.
    for i in range(len(backfill)):
        sink.write(backfill[i])
        if half + i < len(live):
            sink.write(live[half + i])
        elif i % 3 == 0:
            assert_matches_oracle(admin, schema, oracle)
    assert_matches_oracle(admin, schema, oracle)


def test_same_batch_twice_and_older_batch_after_newer_change_nothing(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    older = [upsert("t", {"id": 1}, {"v": "old"}, 1), upsert("t", {"id": 2}, {"v": "old"}, 2)]
    newer = [upsert("t", {"id": 1}, {"v": "new"}, 3), delete("t", {"id": 2}, 4)]
    sink.write(older)
    sink.write(newer)
    after = table_rows(admin, schema, "t")
    sink.write(newer)
    sink.write(older)
    assert table_rows(admin, schema, "t") == after == [{"id": 1, "v": "new"}]


def test_the_newest_event_per_key_in_a_batch_wins_and_ties_go_to_the_later(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    sink.write(
        [
            upsert("t", {"id": 1}, {"v": "b"}, 5),
            upsert("t", {"id": 1}, {"v": "a"}, 4),  # older, later in the batch
            upsert("t", {"id": 2}, {"v": "first"}, 7),
            upsert("t", {"id": 2}, {"v": "second"}, 7),  # same version: the later wins
        ]
    )
    assert table_rows(admin, schema, "t") == [{"id": 1, "v": "b"}, {"id": 2, "v": "second"}]


def test_stale_events_are_counted(sink: PostgresSink, schema: str) -> None:
    counter = STALE_SKIPPED.labels("postgres", "t")
    sink.write([upsert("t", {"id": 1}, {"v": "new"}, 10)])
    before = counter._value.get()
    sink.write([upsert("t", {"id": 1}, {"v": "old"}, 9), delete("t", {"id": 1}, 8)])
    assert counter._value.get() - before == 2


def debezium_events(n: int, seed: int) -> tuple[list[ChangeEvent], list[Message]]:
    """A realistic stream (tests.support.debezium) as the decoder and router would hand it over:
    three tables, one with a composite key, inserts/updates/deletes/re-inserts and truncates."""
    messages = [
        m
        for m in generate_stream(n, n_keys=40, seed=seed, truncate_rate=0.01)
        if not m.is_tombstone
    ]
    events = []
    for offset, message in enumerate(messages):
        logical = message.event
        events.append(
            ChangeEvent(
                op=logical.op,
                table=logical.table,
                key=logical.key,
                row=logical.row,
                version=message.version,
                source_ts_ms=message.timestamp_ms,
                origin=message.origin(offset=offset),
                columns=logical.spec.expected_columns(),
                target=logical.spec.table,
            )
        )
    return events, messages


def assert_matches_debezium_oracle(
    admin: psycopg.Connection, schema: str, messages: list[Message]
) -> None:
    expected = expected_state(messages)
    for spec in DEFAULT_TABLES:
        stored = {}
        for row in table_rows(admin, schema, spec.table):
            row = {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in row.items()}
            stored[spec.key_tuple(row)] = row
        assert stored == expected.get(spec.name, {}), spec.name


def test_a_debezium_stream_with_truncates_converges_under_any_replay(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    events, messages = debezium_events(3000, seed=11)
    assert any(e.op is Op.TRUNCATE for e in events) and any(e.op is Op.DELETE for e in events)
    for batch in batches(events, 200):
        assert sink.write(batch) == []
    assert_matches_debezium_oracle(admin, schema, messages)
    replay = batches(events, 77)
    random.Random(5).shuffle(replay)
    for batch in replay:
        assert sink.write(batch) == []
    assert_matches_debezium_oracle(admin, schema, messages)


def test_two_writers_at_once_on_a_fresh_schema_converge(
    sink: PostgresSink, admin: psycopg.Connection, schema: str, make_settings: SettingsFactory
) -> None:
    """A live consumer and a backfill started at the same moment: both create the same tables,
    then write the same keys concurrently; the tables end at the newest event per key."""
    events, messages = debezium_events(3000, seed=12)
    backfill_sink = PostgresSink(make_settings(schema=schema))
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(writer: PostgresSink, stream: list[list[ChangeEvent]]) -> None:
        try:
            start.wait(timeout=30)
            for batch in stream:
                assert writer.write(batch) == []
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(sink, batches(events, 150))),
        threading.Thread(target=run, args=(backfill_sink, batches(events, 110))),
    ]
    backfill_sink.open()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    backfill_sink.close()
    assert errors == []
    assert_matches_debezium_oracle(admin, schema, messages)


# --- deletes, tombstones, truncate -----------------------------------------------------------


def test_a_deleted_row_is_not_resurrected_by_an_older_upsert(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    sink.write([upsert("t", {"id": 1}, {"v": "a"}, 1), upsert("t", {"id": 2}, {"v": "b"}, 2)])
    sink.write([delete("t", {"id": 1}, 3)])
    sink.write([upsert("t", {"id": 1}, {"v": "a"}, 1)])  # replayed from before the delete
    sink.write([upsert("t", {"id": 1}, {"v": "a2"}, 2)])
    assert table_rows(admin, schema, "t") == [{"id": 2, "v": "b"}]


def test_a_delete_arriving_before_the_insert_it_follows_is_remembered(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    sink.write([upsert("t", {"id": 9}, {"v": "x"}, 1)])
    sink.write([delete("t", {"id": 1}, 5)])
    sink.write([upsert("t", {"id": 1}, {"v": "a"}, 4)])
    assert table_rows(admin, schema, "t") == [{"id": 9, "v": "x"}]


def test_reinsert_after_delete_is_applied_and_replaces_the_tombstone(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    sink.write([upsert("t", {"id": 1}, {"v": "a"}, 1), delete("t", {"id": 1}, 2)])
    sink.write([upsert("t", {"id": 1}, {"v": "again"}, 3)])
    sink.write([delete("t", {"id": 1}, 2), upsert("t", {"id": 1}, {"v": "a"}, 1)])  # replays
    assert table_rows(admin, schema, "t") == [{"id": 1, "v": "again"}]
    assert table_rows(admin, schema, "t__fanout_tombstones") == []


def test_truncate_clears_the_table_and_older_events_stay_out(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    before = [upsert("t", {"id": i}, {"v": f"r{i}"}, i) for i in range(1, 6)] + [
        delete("t", {"id": 5}, 6)
    ]
    sink.write(before)
    sink.write([truncate("t", 10)])
    assert table_rows(admin, schema, "t") == []
    sink.write(before)  # a replay of everything before the truncate
    assert table_rows(admin, schema, "t") == []
    sink.write([upsert("t", {"id": 2}, {"v": "after"}, 11)])
    sink.write([truncate("t", 10)])  # the truncate replayed: a newer row survives
    assert table_rows(admin, schema, "t") == [{"id": 2, "v": "after"}]


def test_truncate_inside_a_batch_applies_to_what_came_before_it(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    sink.write(
        [
            upsert("t", {"id": 1}, {"v": "gone"}, 1),
            truncate("t", 2),
            upsert("t", {"id": 2}, {"v": "kept"}, 3),
        ]
    )
    assert table_rows(admin, schema, "t") == [{"id": 2, "v": "kept"}]


def test_truncate_of_a_table_never_seen_is_remembered(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    sink.write([truncate("t", 10)])
    sink.write([upsert("t", {"id": 1}, {"v": "old"}, 9), upsert("t", {"id": 2}, {"v": "new"}, 11)])
    assert table_rows(admin, schema, "t") == [{"id": 2, "v": "new"}]


def test_a_truncate_alone_reaching_a_freshly_started_sink_clears_the_table(
    sink: PostgresSink, admin: psycopg.Connection, schema: str, make_settings: SettingsFactory
) -> None:
    sink.write([upsert("t", {"id": 1}, {"v": "a"}, 1), delete("t", {"id": 2}, 2)])
    restarted = PostgresSink(make_settings(schema=schema))
    restarted.open()
    try:
        assert restarted.write([truncate("t", 5)]) == []
        assert restarted.write([upsert("t", {"id": 1}, {"v": "a"}, 1)]) == []
    finally:
        restarted.close()
    assert table_rows(admin, schema, "t") == []
    assert table_rows(admin, schema, "t__fanout_tombstones") == []


def test_tombstones_older_than_the_retention_are_purged_on_open(
    sink: PostgresSink, admin: psycopg.Connection, schema: str, make_settings: SettingsFactory
) -> None:
    sink.write([upsert("t", {"id": i}, {"v": "x"}, i) for i in (1, 2)])
    sink.write([delete("t", {"id": 1}, 3), delete("t", {"id": 2}, 4)])
    tombstones = sql.Identifier(schema, "t__fanout_tombstones")
    admin.execute(
        sql.SQL(
            "UPDATE {} SET _fanout_deleted_at = now() - interval '200 hours' WHERE id = 1"
        ).format(tombstones)
    )
    reopened = PostgresSink(make_settings(schema=schema, tombstone_retention_hours=168))
    reopened.open()
    reopened.close()
    remaining = admin.execute(sql.SQL("SELECT id FROM {}").format(tombstones)).fetchall()
    assert remaining == [(2,)]


# --- schema evolution ------------------------------------------------------------------------


def test_a_new_column_is_added_and_older_rows_read_null(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    sink.write([upsert("t", {"id": 1}, {"name": "a"}, 1)])
    sink.write([upsert("t", {"id": 2}, {"name": "b", "email": "b@x.io"}, 2)])
    assert table_rows(admin, schema, "t") == [
        {"id": 1, "name": "a", "email": None},
        {"id": 2, "name": "b", "email": "b@x.io"},
    ]


def test_a_new_column_in_the_middle_of_a_batch(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    sink.write(
        [
            upsert("t", {"id": 1}, {"name": "a"}, 1),
            upsert("t", {"id": 2}, {"name": "b", "age": 40}, 2),
            upsert("t", {"id": 3}, {"name": "c"}, 3),
        ]
    )
    assert by_id(table_rows(admin, schema, "t")) == {
        1: {"id": 1, "name": "a", "age": None},
        2: {"id": 2, "name": "b", "age": 40},
        3: {"id": 3, "name": "c", "age": None},
    }


def test_a_type_change_fails_that_event_and_its_neighbours_are_written(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    count = Column("count", "int32")
    sink.write([upsert("t", {"id": 1}, {"count": 1}, 1, [Column("id", "int64"), count])])
    changed = upsert(
        "t", {"id": 2}, {"count": "many"}, 3, [Column("id", "int64"), Column("count", "string")]
    )
    failures = sink.write(
        [
            upsert("t", {"id": 3}, {"count": 3}, 2, [Column("id", "int64"), count]),
            changed,
            upsert("t", {"id": 4}, {"count": 4}, 4, [Column("id", "int64"), count]),
        ]
    )
    assert [f.event for f in failures] == [changed]
    assert isinstance(failures[0].error, MappingError)
    assert str(failures[0].error) == (
        "column count: source type string does not fit target column type integer"
    )
    assert failures[0].stage == "write" and failures[0].origin == changed.origin
    assert [r["id"] for r in table_rows(admin, schema, "t")] == [1, 3, 4]


def test_an_unmappable_event_reaches_the_dlq_even_when_a_newer_one_supersedes_it(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    declared = [Column("id", "int64"), Column("count", "int32")]
    sink.write([upsert("t", {"id": 1}, {"count": 1}, 1, declared)])
    poison = upsert(
        "t", {"id": 1}, {"count": "x"}, 2, [Column("id", "int64"), Column("count", "string")]
    )
    failures = sink.write([poison, upsert("t", {"id": 1}, {"count": 3}, 3, declared)])
    assert [f.event for f in failures] == [poison]
    assert table_rows(admin, schema, "t") == [{"id": 1, "count": 3}]


def test_widening_into_a_larger_integer_column_is_accepted(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    sink.write([upsert("t", {"id": 1}, {"n": 1}, 1, [Column("id", "int64"), Column("n", "int64")])])
    failures = sink.write(
        [upsert("t", {"id": 2}, {"n": 2}, 2, [Column("id", "int64"), Column("n", "int16")])]
    )
    assert failures == []
    assert len(table_rows(admin, schema, "t")) == 2


# --- types and names -------------------------------------------------------------------------


@pytest.mark.parametrize("with_real", [True, False], ids=["text-copy", "binary-copy"])
def test_every_logical_type_round_trips(
    sink: PostgresSink, admin: psycopg.Connection, schema: str, with_real: bool
) -> None:
    """With a ``real`` column the rows go in COPY's text format, without it in binary."""
    columns = [
        Column("id", "int32", optional=False),
        Column("flag", "boolean"),
        Column("small", "int16"),
        Column("big", "int64"),
        Column("ratio", "float32"),
        Column("score", "float64"),
        Column("price", "decimal", parameters=(("scale", "3"), ("precision", "10"))),
        Column("free_decimal", "decimal"),
        Column("note", "string"),
        Column("blob", "bytes"),
        Column("ref", "uuid"),
        Column("day", "date"),
        Column("at", "time"),
        Column("local_ts", "timestamp"),
        Column("utc_ts", "timestamptz"),
        Column("doc", "json"),
        Column("doc_text", "json"),
        Column("nums", "array", parameters=(("items", "int64"),)),
        Column("words", "array", parameters=(("items", "string"),)),
    ]
    row = {
        "flag": True,
        "small": -3,
        "big": 2**62,
        "ratio": 0.5,
        "score": 1e-300,
        "price": Decimal("1234567.125"),
        "free_decimal": Decimal("3.14159265358979323846"),
        "note": 'tab\there, newline\nthere, back\\slash, "quotes", é',
        "blob": b"\x00\xff\\N\n",
        "ref": str(uuid.UUID(int=42)),
        "day": dt.date(2024, 2, 29),
        "at": dt.time(23, 59, 58, 999999),
        "local_ts": dt.datetime(2024, 1, 2, 3, 4, 5, 6),
        "utc_ts": dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        "doc": {"a": [1, 2, {"b": None}], "c": "é"},
        "doc_text": "just a string",
        "nums": [1, 2, 3],
        "words": ["a b", 'c"d', "e,f", "{g}", None],
    }
    if not with_real:
        columns = [column for column in columns if column.name != "ratio"]
        del row["ratio"]
    assert sink.write([upsert("types", {"id": 1}, row, 1, columns)]) == []
    [stored] = table_rows(admin, schema, "types")
    stored["ref"] = str(stored["ref"])
    assert stored == {"id": 1, **row}
    types = dict(
        admin.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'types'",
            (schema,),
        ).fetchall()
    )
    assert types["price"] == "numeric" and types["doc"] == "jsonb" and types["nums"] == "ARRAY"
    assert types["utc_ts"] == "timestamp with time zone"
    assert types.get("ratio", "real") == "real"


def test_values_only_postgresql_parses_or_rejects_behave_as_in_text(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    admin.execute(
        sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, day date, ref uuid, n smallint)").format(
            sql.Identifier(schema, "t")
        )
    )
    ref = uuid.UUID(int=7)
    sink.write([upsert("t", {"id": 1}, {"day": "2024-02-29", "ref": "{" + str(ref) + "}"}, 1)])
    assert table_rows(admin, schema, "t") == [
        {"id": 1, "day": dt.date(2024, 2, 29), "ref": ref, "n": None}
    ]
    for row in ({"n": 70000}, {"id": 2**31}):  # binary int2/int4 would wrap these silently
        # Refused per event by the sink's range check, before the store sees them.
        [failure] = sink.write([upsert("t", {"id": row.get("id", 2)}, row, 2)])
        assert isinstance(failure.error, MappingError) and "out of range" in str(failure.error)
    assert [r["id"] for r in table_rows(admin, schema, "t")] == [1]


def test_awkward_identifiers_round_trip(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    target = 'My "Table"; DROP TABLE x; --'
    key = {'Key "Col"': 1, "second key": "b"}
    sink.write([upsert(target, key, {"Mixed Case": "v", "semi;colon": 2}, 1)])
    sink.write([upsert(target, key, {"Mixed Case": "w", "semi;colon": 3}, 2)])
    assert table_rows(admin, schema, target) == [
        {'Key "Col"': 1, "second key": "b", "Mixed Case": "w", "semi;colon": 3}
    ]
    sink.write([delete(target, key, 3)])
    assert table_rows(admin, schema, target) == []


def test_invalid_target_names_are_mapping_failures(sink: PostgresSink) -> None:
    bad = ["", "x" * 64, "nul\x00name", "_fanout_truncations", "t__fanout_tombstones"]
    good = upsert("fine", {"id": 1}, {"v": 1}, 1)
    events = [upsert(name, {"id": 1}, {"v": 1}, 1) for name in bad] + [good]
    failures = sink.write(events)
    assert [f.event for f in failures] == events[:-1]
    assert all(isinstance(f.error, MappingError) for f in failures)
    assert "longer than 63 bytes" in str(failures[1].error)


def test_invalid_column_names_and_null_keys_are_mapping_failures(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    ok = upsert("t", {"id": 1}, {"v": 1}, 1)
    long_column = upsert("t", {"id": 2}, {"c" * 64: 1}, 2)
    null_key = upsert("t", {"id": None}, {"v": 1}, 3)
    failures = sink.write([ok, long_column, null_key])
    assert sorted(f.origin.offset for f in failures) == sorted(
        [long_column.origin.offset, null_key.origin.offset]
    )
    assert table_rows(admin, schema, "t") == [{"id": 1, "v": 1}]


# --- existing tables -------------------------------------------------------------------------


def test_an_existing_table_is_used_and_gets_the_bookkeeping_columns(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    table = sql.Identifier(schema, "accounts")
    admin.execute(
        sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, owner varchar(40))").format(table)
    )
    admin.execute(sql.SQL("INSERT INTO {} VALUES (1, 'kept until replaced')").format(table))
    assert sink.write([upsert("accounts", {"id": 2}, {"owner": "b"}, 5)]) == []
    assert sink.write([upsert("accounts", {"id": 1}, {"owner": "a"}, 4)]) == []
    assert table_rows(admin, schema, "accounts") == [
        {"id": 1, "owner": "a"},
        {"id": 2, "owner": "b"},
    ]


def test_an_existing_table_without_the_key_columns_fails_its_events(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    admin.execute(
        sql.SQL("CREATE TABLE {} (code text PRIMARY KEY)").format(sql.Identifier(schema, "odd"))
    )
    failures = sink.write([upsert("odd", {"id": 1}, {"v": 1}, 1)])
    assert len(failures) == 1 and isinstance(failures[0].error, MappingError)


def test_an_existing_table_without_a_unique_key_is_still_truncated(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    table = sql.Identifier(schema, "heap")
    admin.execute(sql.SQL("CREATE TABLE {} (id integer, v text)").format(table))
    admin.execute(sql.SQL("INSERT INTO {} VALUES (1, 'x')").format(table))
    failures = sink.write([upsert("heap", {"id": 2}, {"v": "y"}, 1), truncate("heap", 2)])
    assert len(failures) == 1 and "no primary key or unique index" in str(failures[0].error)
    assert table_rows(admin, schema, "heap") == []


# --- failures of the store -------------------------------------------------------------------


def test_a_killed_connection_is_retryable_and_the_next_write_reconnects(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    sink.write([upsert("t", {"id": 1}, {"v": "a"}, 1)])
    killed = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (f"fanout-test-{schema}",),
    ).fetchall()
    assert killed == [(True,)]
    batch = [upsert("t", {"id": 2}, {"v": "b"}, 2)]
    with pytest.raises(RetryableError):
        sink.write(batch)
    assert sink.write(batch) == []
    assert table_rows(admin, schema, "t") == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]


def test_open_raises_retryable_when_postgres_is_unreachable(
    schema: str, make_settings: SettingsFactory
) -> None:
    sink = PostgresSink(make_settings(schema=schema, host="127.0.0.1", port=1, connect_timeout_s=1))
    with pytest.raises(RetryableError):
        sink.open()
    sink.close()
    sink.close()


def test_a_column_an_event_does_not_carry_keeps_its_stored_value(
    sink: PostgresSink, admin: psycopg.Connection, schema: str
) -> None:
    table = sql.Identifier(schema, "partial")
    admin.execute(
        sql.SQL(
            "CREATE TABLE {} (id integer PRIMARY KEY, n integer, note text, extra text)"
        ).format(table)
    )
    admin.execute(sql.SQL("INSERT INTO {} (id, extra) VALUES (1, 'made by hand')").format(table))
    declared = (Column("id", "int32", False), Column("n", "int32"), Column("note", "string"))
    sink.write([upsert("partial", {"id": 1}, {"n": 1, "note": "long"}, 1, declared)])
    # An update without `note` (Debezium's placeholder for an unchanged TOASTed value, removed
    # by the decoder), and a row inserted without it: nothing stored to keep there.
    sink.write(
        [
            upsert("partial", {"id": 1}, {"n": 2}, 2, declared),
            upsert("partial", {"id": 2}, {"n": 5}, 3, declared),
        ]
    )
    assert table_rows(admin, schema, "partial") == [
        {"id": 1, "n": 2, "note": "long", "extra": "made by hand"},
        {"id": 2, "n": 5, "note": None, "extra": None},
    ]
    # A NULL the event carries is a value.
    sink.write([upsert("partial", {"id": 1}, {"n": 3, "note": None}, 4, declared)])
    assert table_rows(admin, schema, "partial")[0] == {
        "id": 1, "n": 3, "note": None, "extra": "made by hand"
    }  # fmt: skip
