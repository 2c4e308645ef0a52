"""Numbers and booleans at their limits, captured by the real Debezium connector, in every sink.

A source table with boolean, smallint, int, bigint, real and double precision columns holds the
types' extremes and NaN/±Infinity (which Kafka Connect writes as JSON text). It goes through the
real connector and one ``fanout run --sink X`` per sink: PostgreSQL and ClickHouse hold every
value as the source does, Elasticsearch holds null where the value is NaN or infinite (a numeric
field cannot hold them), and no record is dead-lettered. A second test feeds the connector's
``ExtractNewRecordState`` output to the decoder: recognised by its ``__`` fields and headers,
and, without them, only on a topic declared in ``kafka.flattened_topics``.
"""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from clickhouse_connect.driver.client import Client as ClickHouseClient
from psycopg import sql

from fanout.debezium.envelope import Decoder
from fanout.errors import DecodeError
from fanout.events import Op
from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.integration.fidelity_support import (
    caught_up,
    dead_letters,
    sinks_fixture,
    source_table,
    stack_config,
    start_workers,
    topic_records,
)

SINKS = ("postgres", "clickhouse", "elasticsearch")
NAN, INF = math.nan, math.inf
# id -> (b boolean, s smallint, i int, g bigint, r real, d double precision)
ROWS: dict[int, tuple[Any, ...]] = {
    1: (True, 32767, -(2**31), 2**63 - 1, NAN, NAN),
    2: (False, -32768, 2**31 - 1, -(2**63), INF, -INF),
    3: (None, 0, 0, 0, -INF, INF),
    4: (True, 1, -1, 1, 1.5, 0.1),
}
COLUMNS = ("b", "s", "i", "g", "r", "d")


def same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    return type(actual) is type(expected) and actual == expected


prefix = sinks_fixture("fidnum", "prefix", prefix_only=True)


@pytest.fixture
def table(source_pg: psycopg.Connection[Any]) -> Iterator[str]:
    columns = (
        "id int PRIMARY KEY, b boolean, s smallint, i int, g bigint, r real, d double precision"
    )
    with source_table(source_pg, "fid_num", columns) as made:
        yield made.name


def insert(conn: psycopg.Connection[Any], table: str) -> None:
    statement = sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, %s)")
    for ident, values in ROWS.items():
        conn.execute(statement.format(sql.Identifier(table)), (ident, *values))


def test_limits_nan_and_infinities_reach_every_sink_as_each_can_hold_them(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    table: str,
    prefix: str,
    endpoints: Endpoints,
    pg: psycopg.Connection[Any],
    clickhouse: ClickHouseClient,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    connector = debezium(table.replace("_", "-"), [f"public.{table}"])
    insert(source_pg, table)
    topic = connector.topic(table)
    records = topic_records(endpoints.kafka_bootstrap, topic, expect=len(ROWS))
    assert b'"r":"NaN"' in (records[0].value or b"")  # how the connector writes a NaN

    config = stack_config(prefix, topic, endpoints, {"max_events": 3, "max_wait_ms": 100})
    caught_up(start_workers(config, tmp_path, workers, SINKS))
    dead = {sink: dead_letters(prefix, sink) for sink in SINKS}
    assert dead == dict.fromkeys(SINKS, 0)

    select = sql.SQL("SELECT id, b, s, i, g, r, d FROM {} ORDER BY id")
    rows = pg.execute(select.format(sql.Identifier(prefix, table))).fetchall()
    assert [row[0] for row in rows] == sorted(ROWS)
    for ident, *values in rows:
        assert all(map(same, values, ROWS[ident])), (ident, values)

    result = clickhouse.query(
        f"SELECT id, b, s, i, g, r, d FROM `{prefix}`.`{table}` FINAL ORDER BY id"
    ).result_rows
    assert [row[0] for row in result] == sorted(ROWS)
    for ident, *values in result:
        assert all(map(same, values, ROWS[ident])), (ident, values)

    alias = f"{prefix}-{table}"
    url = f"{endpoints.es_hosts[0]}/{alias}"
    urllib.request.urlopen(urllib.request.Request(f"{url}/_refresh", method="POST")).close()
    with urllib.request.urlopen(f"{url}/_search?size=100", timeout=30) as response:
        hits = json.loads(response.read())["hits"]["hits"]
    documents = {int(hit["_id"]): hit["_source"] for hit in hits}
    assert sorted(documents) == sorted(ROWS)
    for ident, expected in ROWS.items():
        for name, value in zip(COLUMNS, expected, strict=True):
            stored = documents[ident].get(name)
            if isinstance(value, float) and not math.isfinite(value):
                assert stored is None, (ident, name, stored)  # Elasticsearch cannot hold them
            elif name == "r":
                assert stored == pytest.approx(value), (ident, name)  # real: float32
            else:
                assert stored == value, (ident, name, stored)


def test_the_connectors_flattened_records_are_recognised_by_their_markers_or_declaration(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    table: str,
    endpoints: Endpoints,
) -> None:
    unwrap = {
        "transforms": "unwrap",
        "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
    }
    marked = debezium(
        table.replace("_", "-") + "-marked",
        [f"public.{table}"],
        {
            **unwrap,
            "transforms.unwrap.delete.tombstone.handling.mode": "rewrite",
            "transforms.unwrap.add.fields": "table",
            "transforms.unwrap.add.headers": "op,lsn,source.ts_ms",
        },
    )
    plain = debezium(table.replace("_", "-") + "-plain", [f"public.{table}"], unwrap)
    insert(source_pg, table)
    source_pg.execute(sql.SQL("DELETE FROM {} WHERE id = 2").format(sql.Identifier(table)))
    expect = len(ROWS) + 1  # the rows, then the delete (rewritten; plain: a tombstone)

    marked_records = topic_records(endpoints.kafka_bootstrap, marked.topic(table), expect)
    events = [Decoder().decode(record) for record in marked_records]
    assert [event.op if event else None for event in events] == [Op.UPSERT] * len(ROWS) + [
        Op.DELETE
    ]
    versions = [event.version for event in events if event]
    assert versions == sorted(versions)
    lsn_header = dict(marked_records[0].headers)["__lsn"]
    assert events[0] is not None and events[0].version == int(lsn_header)  # not a time
    first = events[0].row
    assert first is not None and math.isnan(first["r"]) and first["b"] is True
    assert events[0].table == f"public.{table}"

    plain_records = topic_records(endpoints.kafka_bootstrap, plain.topic(table), expect)
    for record in plain_records[: len(ROWS)]:  # no __ field or header: the SMT's default
        with pytest.raises(DecodeError, match=r"not in kafka\.flattened_topics"):
            Decoder().decode(record)
    declared = Decoder(flattened_topics=[plain.topic(table)])
    decoded = [declared.decode(record) for record in plain_records]
    assert [event.op if event else None for event in decoded] == [Op.UPSERT] * len(ROWS) + [
        Op.DELETE
    ]
    last = plain_records[len(ROWS)].value  # the delete is a tombstone (its schema kept)
    assert last is None or json.loads(last)["payload"] is None
