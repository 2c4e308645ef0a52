"""The limits a sink is measured against, on the same stream and the same final rows.

* raw consume: confluent-kafka reads every record and
  ``fanout.debezium.envelope.Decoder`` decodes it; nothing is written anywhere;
* each target's direct load of the final rows (newest row per key, deletes gone), already in
  memory in the shape the client wants: PostgreSQL ``COPY`` into a fresh table with the primary
  key, Elasticsearch ``helpers.parallel_bulk`` (and ``helpers.bulk``) into a fresh index,
  ClickHouse columnar ``insert`` via clickhouse-connect into a fresh MergeTree table.

Only the load call is timed (row preparation is not); DDL is done before the clock starts.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import clickhouse_connect
import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from elasticsearch import Elasticsearch, helpers
from psycopg import sql
from psycopg.types.json import Jsonb

from bench import env
from bench.stream import Stream, spec_of
from fanout.debezium.envelope import Decoder
from fanout.events import Origin
from tests.support.debezium import TableSpec

Rows = dict[str, dict[tuple[Any, ...], dict[str, Any]]]


def raw_consume(stream: Stream) -> float:
    """Seconds to read and decode every record of the topic (partitions assigned, no group)."""
    consumer = Consumer(
        {
            "bootstrap.servers": env.bootstrap(),
            "group.id": f"bench-raw-{env.new_id()}",
            "enable.auto.commit": False,
        }
    )
    decoder = Decoder()
    started = time.monotonic()
    consumer.assign([TopicPartition(stream.topic, p, OFFSET_BEGINNING) for p in stream.ends])
    seen = 0
    deadline = started + 1800
    try:
        while seen < stream.records:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw consume read {seen} of {stream.records} records")
            for message in consumer.consume(1000, timeout=1.0):
                if message.error() is not None:
                    continue
                decoder.decode(_origin(message))
                seen += 1
        return time.monotonic() - started
    finally:
        consumer.close()


def _origin(message: Any) -> Origin:
    return Origin(
        message.topic(),
        message.partition(),
        message.offset(),
        message.timestamp()[1],
        message.key(),
        message.value(),
    )


# -- PostgreSQL ---------------------------------------------------------------------------

_PG_TYPES = {
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "float64": "double precision",
    "boolean": "boolean",
    "text": "text",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "date": "date",
    "time": "time",
    "json": "jsonb",
    "uuid": "uuid",
    "bytes": "bytea",
    "text[]": "text[]",
}


def postgres_copy(final: Rows) -> float:
    schema = f"bench_copy_{env.new_id()}"
    with psycopg.connect(**env.settings().sinks.postgres.conninfo()) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        loads = []
        for table, rows in final.items():
            spec = spec_of(table)
            conn.execute(_pg_create(schema, spec))
            loads.append((spec, [_pg_row(spec, row) for row in rows.values()]))
        conn.commit()
        started = time.monotonic()
        with conn.cursor() as cursor:
            for spec, values in loads:
                with cursor.copy(_pg_copy(schema, spec)) as copy:
                    for row in values:
                        copy.write_row(row)
        conn.commit()
        return time.monotonic() - started


def _pg_type(column: Any) -> sql.Composable:
    if column.kind == "decimal":
        return sql.SQL(f"numeric({int(column.precision)},{int(column.scale)})")
    return sql.SQL(_PG_TYPES[column.kind])


def _pg_create(schema: str, spec: TableSpec) -> sql.Composed:
    defs = [
        sql.SQL("{} {}").format(sql.Identifier(column.name), _pg_type(column))
        for column in spec.columns
    ]
    defs.append(
        sql.SQL("PRIMARY KEY ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, spec.primary_key))
        )
    )
    return sql.SQL("CREATE TABLE {} ({})").format(
        sql.Identifier(schema, spec.table), sql.SQL(", ").join(defs)
    )


def _pg_copy(schema: str, spec: TableSpec) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema, spec.table),
        sql.SQL(", ").join(sql.Identifier(column.name) for column in spec.columns),
    )


def _pg_row(spec: TableSpec, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        Jsonb(row[c.name]) if c.kind == "json" and row[c.name] is not None else row[c.name]
        for c in spec.columns
    )


# -- Elasticsearch ------------------------------------------------------------------------


def elasticsearch_load(final: Rows, parallel: bool) -> float:
    es_settings = env.settings().sinks.elasticsearch
    prefix = f"bench_direct_{env.new_id()}_"
    with Elasticsearch(es_settings.hosts, request_timeout=120) as es:
        for table in final:
            es.indices.create(index=prefix + spec_of(table).table)
        actions = list(_es_actions(prefix, final))
        started = time.monotonic()
        if parallel:
            for ok, item in helpers.parallel_bulk(es, actions, chunk_size=1000, thread_count=4):
                if not ok:
                    raise RuntimeError(f"direct bulk item failed: {item}")
        else:
            helpers.bulk(es, actions, chunk_size=1000)
        return time.monotonic() - started


def _es_actions(prefix: str, final: Rows) -> Iterator[dict[str, Any]]:
    for table, rows in final.items():
        index = prefix + spec_of(table).table
        for key, row in rows.items():
            yield {"_index": index, "_id": "|".join(map(str, key)), "_source": row}


# -- ClickHouse ---------------------------------------------------------------------------

_CH_TYPES = {
    "int16": "Int16",
    "int32": "Int32",
    "int64": "Int64",
    "float64": "Float64",
    "boolean": "Bool",
    "text": "String",
    "timestamp": "DateTime64(6)",
    "timestamptz": "DateTime64(6, 'UTC')",
    "date": "Date32",
    "time": "Int64",
    "json": "String",
    "uuid": "UUID",
    "bytes": "String",
    "text[]": "Array(String)",
}


def clickhouse_insert(final: Rows) -> float:
    ch = env.settings().sinks.clickhouse
    client = clickhouse_connect.get_client(host=ch.host or "127.0.0.1", port=ch.port)
    prefix = f"bench_direct_{env.new_id()}_"
    loads = []
    for table, rows in final.items():
        spec = spec_of(table)
        name = prefix + spec.table
        client.command(_ch_create(name, spec))
        columns = [[_ch_value(c, row[c.name]) for row in rows.values()] for c in spec.columns]
        loads.append((name, spec, columns))
    started = time.monotonic()
    for name, spec, columns in loads:
        client.insert(
            name, columns, column_names=[c.name for c in spec.columns], column_oriented=True
        )
    return time.monotonic() - started


def _ch_type(column: Any) -> str:
    if column.kind == "decimal":
        base = f"Decimal({int(column.precision)}, {int(column.scale)})"
    else:
        base = _CH_TYPES[column.kind]
    return base if column.kind == "text[]" or not column.optional else f"Nullable({base})"


def _ch_create(name: str, spec: TableSpec) -> str:
    columns = ", ".join(f"`{c.name}` {_ch_type(c)}" for c in spec.columns)
    order = ", ".join(f"`{k}`" for k in spec.primary_key)
    return f"CREATE TABLE `{name}` ({columns}) ENGINE = MergeTree ORDER BY ({order})"


def _ch_value(column: Any, value: Any) -> Any:
    if value is None:
        return [] if column.kind == "text[]" else None
    if column.kind == "json":
        return json.dumps(value)
    if column.kind == "uuid":
        return uuid.UUID(value)
    return value
