"""A source table of many column types captured by the real Debezium connector and delivered
by one worker per sink, for the verify and repair tests; and hand-made damage in each sink."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
from clickhouse_connect.driver.client import Client as ClickHouseClient
from psycopg import sql

from tests.integration.conftest import Endpoints
from tests.integration.fidelity_support import (
    ALL_SINKS,
    caught_up,
    source_table,
    stack_config,
)
from tests.integration.fidelity_support import start_workers as start_sink_workers
from tests.integration.ops_support import fanout
from tests.support.debezium_connector import SourceDb
from tests.support.debezium_connector import read_topic as read_connector_topic
from tests.support.pipeline import bootstrap

COLUMNS = (
    "id int PRIMARY KEY, name text NOT NULL, amount numeric(12,2), ratio real, score float8, "
    "doc jsonb, raw json, tags text[], nums int[], born date, seen timestamptz, "
    "logged timestamp, at_time time, flag boolean, uid uuid, blob bytea, note text"
)
BIG = "1234567890.1234567890123456789"
# every sink renames one column and drops another, as routing may
ROUTE = {"rename": {"name": "label"}, "drop": ["note"]}


def row(ident: int) -> tuple[Any, ...]:
    """Row ``ident``: values of every type; every fifth row holds NULL where it can, every
    seventh a JSON null."""
    if ident % 5 == 0:
        return (ident, f"name {ident}") + (None,) * 15
    return (
        ident,
        f"name {ident}",
        Decimal(f"{ident}.50"),
        1.1 * ident,
        ident / 3,
        "null"
        if ident % 7 == 0
        else f'{{"n": {BIG}, "k": [{ident}, null], "d": {{"b": 1, "a": 1.10}}}}',
        f'{{ "z": 1,  "a": {ident}e2 }}',
        [f"t{ident}", None, ""],
        [ident, None],
        dt.date(2020, 1, 1) + dt.timedelta(days=ident),
        dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(2024, 5, 6, 7, 8, 9, ident),
        dt.time(12, 34, 56, ident),
        ident % 2 == 0,
        uuid.UUID(int=ident),
        bytes([0, 255, ident % 256]),
        "a note",
    )


@contextmanager
def many_types_table(conn: psycopg.Connection[Any], prefix: str, count: int) -> Iterator[str]:
    """A new source table of ``COLUMNS`` holding rows 1 to ``count``, dropped afterwards."""
    with source_table(conn, prefix, COLUMNS) as table:
        insert(conn, table.name, range(1, count + 1))
        yield table.name


def insert(conn: psycopg.Connection[Any], table: str, idents: range | list[int]) -> None:
    marks = sql.SQL(", ").join([sql.Placeholder()] * 17)
    statement = sql.SQL("INSERT INTO {} VALUES ({})").format(sql.Identifier(table), marks)
    with conn.cursor() as cursor:
        cursor.executemany(statement, [row(i) for i in idents])


def pipeline_config(prefix: str, topic: str, table: str, endpoints: Endpoints) -> dict[str, Any]:
    config = stack_config(prefix, topic, endpoints, {"max_events": 50, "max_wait_ms": 100})
    for sink in ALL_SINKS:
        config["sinks"][sink]["routing"] = {"tables": {f"public.{table}": ROUTE}}
    source = SourceDb.from_env()
    config["source"] = {
        "host": source.host,
        "port": source.port,
        "user": source.user,
        "password": source.password,
        "dbname": source.dbname,
    }
    return config


def start_workers(config: dict[str, Any], tmp_path: Path, workers: list[Any], records: int) -> None:
    """A worker per sink, once the topic holds ``records`` (the connector's topic may not even
    exist yet), then until every sink caught up."""
    (topic,) = config["kafka"]["topics"]
    read_connector_topic(config["kafka"].get("bootstrap_servers", bootstrap()), topic, records, 90)
    caught_up(start_sink_workers(config, tmp_path, workers))


def verify(config_path: Path, sink: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = fanout(
        config_path, "verify", "--sink", sink, "--json", "--settle-timeout", "60", *args
    )
    assert result.code in (0, 1) and result.stdout.strip(), str(result)
    return result.code, result.json()


def verify_across(config_path: Path) -> tuple[int, dict[str, Any]]:
    result = fanout(config_path, "verify", "--across", "--json", "--settle-timeout", "60")
    assert result.code in (0, 1) and result.stdout.strip(), str(result)
    return result.code, result.json()


def found(report: dict[str, Any]) -> dict[str, Any]:
    """What a verify found in its one table: kind -> sorted ids, and the differing columns."""
    (table,) = report["tables"]
    kinds: dict[str, Any] = {"missing": [], "extra": [], "different": [], "columns": {}}
    for entry in table["keys"]:
        kinds[entry["kind"]].append(entry["key"]["id"])
        if entry["columns"]:
            kinds["columns"][entry["key"]["id"]] = entry["columns"]
    for kind in ("missing", "extra", "different"):
        kinds[kind].sort()
    return kinds


# --- damage done by hand, in each sink: row 3 changed, row 4 deleted, row 1000 added --------

DAMAGE = {"missing": [4], "extra": [1000], "different": [3], "columns": {3: ["name"]}}


def damage_postgres(pg: psycopg.Connection[Any], schema: str, table: str) -> None:
    target = sql.Identifier(schema, table)
    pg.execute(sql.SQL("UPDATE {} SET label = 'changed by hand' WHERE id = 3").format(target))
    pg.execute(sql.SQL("DELETE FROM {} WHERE id = 4").format(target))
    pg.execute(
        sql.SQL(
            "INSERT INTO {} (id, label, _fanout_version) VALUES (1000, 'added by hand', 0)"
        ).format(target)
    )


def damage_clickhouse(clickhouse: ClickHouseClient, database: str, table: str) -> None:
    name = f"`{database}`.`{table}`"
    newer = "_fanout_version + 1 AS _fanout_version"
    clickhouse.command(
        f"INSERT INTO {name} SELECT * REPLACE ('changed by hand' AS label, {newer}) "
        f"FROM {name} FINAL WHERE id = 3"
    )
    clickhouse.command(
        f"INSERT INTO {name} SELECT * REPLACE (1 AS _fanout_deleted, {newer}) "
        f"FROM {name} FINAL WHERE id = 4"
    )
    # (an alias is visible in WHERE: the row to copy is chosen in a subquery)
    clickhouse.command(
        f"INSERT INTO {name} SELECT * REPLACE (1000 AS id) "
        f"FROM (SELECT * FROM {name} FINAL WHERE id = 6)"
    )


def damage_elasticsearch(es_url: str, alias: str) -> None:
    physical = f"{alias}.fanout"
    version, changed = es_document(es_url, physical, "3")
    changed["label"] = "changed by hand"
    es_put(es_url, physical, "3", changed, f"version={version + 1}&version_type=external")
    es_call(es_url, "DELETE", f"/{physical}/_doc/4")
    _, added = es_document(es_url, physical, "6")
    es_put(es_url, physical, "1000", {**added, "id": 1000}, "refresh=true")


# Documents are read and written as JSON text with every number kept as written (a client
# that parses numbers into floats would change the JSON columns' digits itself).


def es_call(es_url: str, method: str, path: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(f"{es_url}{path}", data=body, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read(), parse_float=orjson.Fragment, parse_int=orjson.Fragment)


def es_document(es_url: str, index: str, doc_id: str) -> tuple[int, dict[str, Any]]:
    answer = es_call(es_url, "GET", f"/{index}/_doc/{doc_id}")
    return int(orjson.dumps(answer["_version"])), answer["_source"]


def es_put(es_url: str, index: str, doc_id: str, source: dict[str, Any], query: str) -> None:
    es_call(es_url, "PUT", f"/{index}/_doc/{doc_id}?{query}", orjson.dumps(source))
