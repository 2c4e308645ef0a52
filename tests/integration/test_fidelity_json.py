"""JSON columns, captured by the real Debezium connector, exact in every sink.

A source table with a jsonb and a json column whose values vary row by row (objects, arrays,
scalars, numbers beyond float64, a JSON ``null`` beside SQL NULL, deep nesting) goes through
the real connector and one ``fanout run --sink X`` process per sink; then every source row is
compared, value by value, with PostgreSQL, ClickHouse and Elasticsearch (its ``_source`` read
with a parser that keeps every digit). Nothing may reach a DLQ: Elasticsearch's default JSON
mapping takes any shape. A second test makes Elasticsearch refuse the newest event of two keys
(``flattened`` takes objects only) and checks the older events of those keys still apply.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from clickhouse_connect.driver.client import Client as ClickHouseClient
from elasticsearch import Elasticsearch
from psycopg import sql

from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.integration.fidelity_support import (
    caught_up,
    dead_letters,
    sinks_fixture,
    source_table,
    stack_config,
    start_workers,
)
from tests.support.debezium_connector import DebeziumConnector
from tests.support.debezium_connector import read_topic as read_connector_topic
from tests.support.pipeline import unique

SINKS = ("postgres", "clickhouse", "elasticsearch")
BIG = "1234567890.1234567890123456789"
HUGE = "123456789012345678901234567890"
DEEP_DOC = '{"a": ' * 40 + "1.0000000000000000000001" + "}" * 40
DEEP_RAW = "[" * 40 + HUGE + "]" * 40
# id -> (doc jsonb, raw json); None is SQL NULL. Rows 1-5 are in the snapshot.
SNAPSHOT: dict[int, tuple[str | None, str | None]] = {
    1: (
        f'{{"n": {BIG}, "big": {HUGE}, "neg": -98765432109876543210.5e-3, "tags": ["a", null]}}',
        '{ "n" : 1.10,\n  "inf": 1e400 }',  # json keeps the text as written
    ),
    2: ('[1, {"x": 2}, "s", [[]]]', "[1,2]"),
    3: (BIG, HUGE),
    4: ("null", "null"),
    5: (None, None),
}
STREAMED: dict[int, tuple[str | None, str | None]] = {
    6: ('"text"', '"x"'),
    7: (DEEP_DOC, DEEP_RAW),
    8: ('{"n": "now text", "tags": {"k": true}}', '{"n": {"deeper": []}}'),  # other shapes
    9: ("true", "false"),
    10: ("{}", "[]"),
    11: ('{"v": 1}', None),
}
CHANGES = [
    ("UPDATE {t} SET doc = %s, note = 'updated' WHERE id = 2", ['{"x": {"y": [1.0e-30, 3]}}']),
    ("UPDATE {t} SET doc = 'null' WHERE id = 3", []),  # a number becomes a JSON null
    ("UPDATE {t} SET doc = NULL, raw = NULL WHERE id = 4", []),  # a JSON null becomes SQL NULL
    ("DELETE FROM {t} WHERE id = 6", []),
    ("UPDATE {t} SET doc = '[9]' WHERE id = 9", []),
    ("DELETE FROM {t} WHERE id = 9", []),  # updated, then deleted
    ("UPDATE {t} SET doc = %s WHERE id = 11", [f"[{BIG}, null, {{}}]"]),
]
# 5 snapshot reads, 6 inserts, 5 updates, 2 deletes each followed by its tombstone
RECORDS = len(SNAPSHOT) + len(STREAMED) + 5 + 2 * 2
MISSING = object()  # a field the Elasticsearch document does not have


def exact(text: str) -> Any:
    """A JSON text parsed with every number exact: integers as int, others as Decimal."""
    return json.loads(text, parse_float=Decimal)


def same(actual: Any, expected: Any) -> bool:
    """Equal, with numbers compared by their digits (``1.10`` is not ``1.1``), as text would."""
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(same(actual[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return type(actual) is type(expected) and str(actual) == str(expected)


# names of a test's consumer groups, DLQs, PostgreSQL schema, ClickHouse database and
# Elasticsearch indices; all dropped afterwards
prefix = sinks_fixture("fidjson", "prefix", prefix_only=True)


@pytest.fixture
def table(source_pg: psycopg.Connection[Any]) -> Iterator[str]:
    columns = "id int PRIMARY KEY, doc jsonb, raw json, n bigint, note text"
    with source_table(source_pg, "fid_json", columns) as made:
        yield made.name


def insert(
    conn: psycopg.Connection[Any], table: str, rows: dict[int, tuple[str | None, str | None]]
) -> None:
    statement = sql.SQL("INSERT INTO {} VALUES (%s, %s::jsonb, %s::json, %s, %s)").format(
        sql.Identifier(table)
    )
    for ident, (doc, raw) in rows.items():
        conn.execute(statement, (ident, doc, raw, 2**63 - ident, f"row {ident}"))


def es_sources(endpoints: Endpoints, alias: str) -> dict[str, dict[str, Any]]:
    """Every document through the alias (refreshed first), ``_source`` parsed from the
    response's own text."""
    refresh = urllib.request.Request(f"{endpoints.es_hosts[0]}/{alias}/_refresh", method="POST")
    urllib.request.urlopen(refresh, timeout=30).close()
    url = f"{endpoints.es_hosts[0]}/{alias}/_search?size=1000&seq_no_primary_term=false"
    request = urllib.request.Request(url, method="GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        body = exact(response.read().decode())
    return {hit["_id"]: hit["_source"] for hit in body["hits"]["hits"]}


def test_json_columns_are_exact_in_every_sink(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    table: str,
    prefix: str,
    endpoints: Endpoints,
    pg: psycopg.Connection[Any],
    clickhouse: ClickHouseClient,
    es: Elasticsearch,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    insert(source_pg, table, SNAPSHOT)
    connector = debezium(table.replace("_", "-"), [f"public.{table}"])
    insert(source_pg, table, STREAMED)
    for statement, args in CHANGES:
        source_pg.execute(sql.SQL(statement).format(t=sql.Identifier(table)), args)
    topic = connector.topic(table)
    read_connector_topic(endpoints.kafka_bootstrap, topic, expect=RECORDS, timeout_s=90)

    config = stack_config(prefix, topic, endpoints, {"max_events": 7, "max_wait_ms": 100})
    caught_up(start_workers(config, tmp_path, workers, SINKS))
    assert {sink: dead_letters(prefix, sink) for sink in SINKS} == dict.fromkeys(SINKS, 0)

    columns = sql.SQL("SELECT id, doc::text, raw::text, n, note FROM {} ORDER BY id")
    source = {row[0]: row[1:] for row in source_pg.execute(columns.format(sql.Identifier(table)))}
    assert sorted(source) == [1, 2, 3, 4, 5, 7, 8, 10, 11]
    assert source[3][0] == "null" and source[4][0] is None and source[5][0] is None

    # PostgreSQL: jsonb columns, so the doc text is PostgreSQL's own output on both sides; the
    # json source column's text is compared by value (jsonb normalises whitespace).
    target = pg.execute(columns.format(sql.Identifier(prefix, table))).fetchall()
    assert [row[0] for row in target] == sorted(source)
    for ident, doc, raw, n, note in target:
        want_doc, want_raw, want_n, want_note = source[ident]
        assert doc == want_doc, ident
        assert (raw is None) == (want_raw is None), ident
        assert raw is None or exact(raw) == exact(want_raw), ident
        assert (n, note) == (want_n, want_note)

    # ClickHouse: String columns holding the connector's text, byte for byte.
    rows = clickhouse.query(
        f"SELECT id, doc, raw, n, note FROM `{prefix}`.`{table}` FINAL "
        "WHERE _fanout_deleted = 0 ORDER BY id"
    ).result_rows
    assert {row[0]: tuple(row[1:]) for row in rows} == source

    # Elasticsearch: _source holds each JSON value exactly; SQL NULL leaves the field out.
    docs = es_sources(endpoints, f"{prefix}-{table}")
    assert sorted(docs, key=int) == [str(ident) for ident in sorted(source)]
    for ident, (doc, raw, n, note) in source.items():
        got = docs[str(ident)]
        for name, text in (("doc", doc), ("raw", raw)):
            if text is None:
                assert got.get(name, MISSING) is MISSING, (ident, name)
            else:
                assert same(got[name], exact(text)), (ident, name, got[name])
        assert (got["n"], got["note"]) == (n, note)
    assert docs["3"]["doc"] is None and "doc" not in docs["4"]
    physical = f"{prefix}-{table}.fanout"
    properties = es.indices.get_mapping(index=physical)[physical]["mappings"]["properties"]
    assert properties["doc"] == properties["raw"] == {"type": "object", "enabled": False}


def test_a_document_elasticsearch_refuses_leaves_the_older_events_of_its_key_applied(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    table: str,
    prefix: str,
    endpoints: Endpoints,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    connector: DebeziumConnector = debezium(table.replace("_", "-"), [f"public.{table}"])
    insert(source_pg, table, {1: ('{"a": 1}', None), 2: ('{"b": 1}', None)})
    for statement in [
        "UPDATE {t} SET doc = '{{\"a\": 2}}' WHERE id = 1",
        "DELETE FROM {t} WHERE id = 1",
        "INSERT INTO {t} (id, doc) VALUES (1, '5')",  # flattened refuses a scalar
        "UPDATE {t} SET doc = '[1, 2]' WHERE id = 2",  # and an array of scalars
    ]:
        source_pg.execute(sql.SQL(statement).format(t=sql.Identifier(table)))
    topic = connector.topic(table)
    read_connector_topic(endpoints.kafka_bootstrap, topic, expect=7, timeout_s=90)

    # Everything in one batch: the refused events are the newest of their keys in it.
    batch = {"max_events": 100, "max_wait_ms": 3000}
    mappings = {table: {"doc": "flattened"}}
    config = stack_config(prefix, topic, endpoints, batch, json_column_mappings=mappings)
    caught_up(start_workers(config, tmp_path, workers, ["elasticsearch"]))

    docs = es_sources(endpoints, f"{prefix}-{table}")
    # key 1: deleted (the re-insert was refused); key 2: the version before the refused update
    assert {ident: doc["doc"] for ident, doc in docs.items()} == {"2": {"b": 1}}
    refused = read_connector_topic(endpoints.kafka_bootstrap, f"{prefix}.dlq.elasticsearch", 2)
    assert sorted(record.value["payload"]["after"]["doc"] for record in refused) == ["5", "[1, 2]"]
    assert dead_letters(prefix, "elasticsearch") == 2


def test_elasticsearch_takes_numbers_of_any_size_without_a_rejection(
    source_pg: psycopg.Connection[Any],
    debezium: StartConnector,
    prefix: str,
    endpoints: Endpoints,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    table = unique("fid_num")
    ident = sql.Identifier(table)
    source_pg.execute(
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, amount numeric, ratio float8)").format(ident)
    )
    try:
        connector = debezium(table.replace("_", "-"), [f"public.{table}"])
        insert = sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(ident)
        rows = [
            (1, Decimal(1), 1.5),  # the first document maps amount and ratio dynamically
            (2, Decimal(2**70), 1e300),  # beyond int64; beyond a float32
            (3, Decimal(-(2**80) + 1), -1.7976931348623157e308),
            (4, Decimal("1E-22"), 5e-324),
            (5, Decimal("123456789012345678901234567890.50"), None),
        ]
        for row in rows:
            source_pg.execute(insert, row)
        topic = connector.topic(table)
        read_connector_topic(endpoints.kafka_bootstrap, topic, expect=len(rows), timeout_s=90)
        select = sql.SQL("SELECT id, amount::text, ratio FROM {} ORDER BY id").format(ident)
        source = {row[0]: row[1:] for row in source_pg.execute(select)}
    finally:
        source_pg.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))

    config = stack_config(prefix, topic, endpoints, {"max_events": 2, "max_wait_ms": 100})
    caught_up(start_workers(config, tmp_path, workers, ["elasticsearch"]))
    assert dead_letters(prefix, "elasticsearch") == 0

    docs = es_sources(endpoints, f"{prefix}-{table}")
    # numeric: text in plain notation, every digit (Debezium's VariableScaleDecimal drops
    # trailing fractional zeros: 1.50 arrives as 1.5); float8: the same double
    assert all("E" not in d["amount"] and "e" not in d["amount"] for d in docs.values())
    assert {int(i): (Decimal(d["amount"]), d["ratio"]) for i, d in docs.items()} == {
        i: (Decimal(amount), None if ratio is None else Decimal(repr(ratio)))
        for i, (amount, ratio) in source.items()
    }
