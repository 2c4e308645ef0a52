"""Avro through a real schema registry, from the real connector: the same rows as JSON.

Two Debezium connectors capture one source table: one with JsonConverter, one with the Apicurio
Avro converter writing the Confluent wire format (magic byte, 4-byte schema id) and registering
its schemas in the local Apicurio Registry (``scripts/devstack`` component ``registry``). The
columns cover Debezium's logical types: Decimal, VariableScaleDecimal, Date, MicroTimestamp,
ZonedTimestamp, Json, Uuid, Enum, Bits, bytes, a NaN double, arrays. fanout reads the Avro
topic through the registry's Confluent-compatible API (``kafka.value_format: avro``):

- each change decodes to the same ``ChangeEvent`` from both topics;
- one worker per encoding writes every sink, and each sink holds the same rows from both.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from fanout.debezium.envelope import Decoder
from fanout.events import ChangeEvent
from fanout.settings import load_settings
from tests.integration.conftest import Endpoints
from tests.integration.debezium_fixtures import StartConnector
from tests.integration.fidelity_support import (
    ALL_SINKS,
    SourceTable,
    StackSinks,
    capture,
    dead_letters,
    sinks_fixture,
    source_table,
    stack_config,
    topic_records,
)
from tests.support.pipeline import (
    WorkerProcess,
    create_topic,
    unique,
    wait_caught_up,
)

REGISTRY = os.environ.get("DEVSTACK_REGISTRY_URL", "http://127.0.0.1:8081").rstrip("/")
CCOMPAT = f"{REGISTRY}/apis/ccompat/v7"
COLUMNS = (
    "id int PRIMARY KEY, small smallint, price numeric(10,2), amount numeric, day date,"
    " at timestamp, at_tz timestamptz, doc jsonb, uid uuid, mood {mood}, flags bit(3),"
    " blob bytea, ratio double precision, tags text[], nums int[]"
)
INSERT = (
    "INSERT INTO {t} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::bit(3), %s, %s, %s, %s)"
)
ROWS = [
    (1, -3, "123.45", "0.482", "2022-01-08", "2024-01-02 03:04:05.123456",
     "2024-01-02 03:04:05.123456+02", '{"a": [1, 2.50, 12345678901234567890]}',
     "0b7a1c5e-2f0d-4a57-9a43-0e3b8d1f7a11", "ok", "101", b"\x00\xff", float("nan"),
     ["a", None], [1, None, -2]),
    (2, 32767, "-0.01", "-1E+30", "1970-01-01", "1999-12-31 23:59:59",
     "2000-01-01 00:00:00+00", "null", None, "sad", "000", b"", float("inf"), [], []),
    (3, None, None, None, None, None, None, None, None, None, None, None, None, None, None),
]  # fmt: skip
CHANGES = len(ROWS) + 3  # the inserts, one update, one delete and its tombstone


def avro_converters() -> dict[str, str]:
    """Connector settings: key and value in Avro, Confluent framing, schemas registered."""
    settings: dict[str, str] = {}
    for side in ("key", "value"):
        prefix = f"{side}.converter"
        settings[prefix] = "io.apicurio.registry.utils.converter.AvroConverter"
        for name, value in {
            "url": f"{REGISTRY}/apis/registry/v2",
            "auto-register": "true",
            "find-latest": "true",
            "as-confluent": "true",  # magic byte + 4-byte id, not Apicurio's 8-byte global id
            "use-id": "contentId",  # the id the Confluent-compatible API serves schemas by
            "headers.enabled": "false",
        }.items():
            settings[f"{prefix}.apicurio.registry.{name}"] = value
    return settings


@pytest.fixture
def registry_up() -> None:
    import urllib.request

    try:
        urllib.request.urlopen(f"{CCOMPAT}/subjects", timeout=10).close()
    except OSError as exc:
        pytest.fail(
            f"the schema registry at {REGISTRY} is not answering ({exc}); start the local"
            " stack with `scripts/devstack up` (see docs/DEVSTACK.md)",
            pytrace=False,
        )


@pytest.fixture
def table(source_pg: psycopg.Connection[Any]) -> Iterator[SourceTable]:
    mood = unique("mood")
    create = sql.SQL("CREATE TYPE {} AS ENUM ('sad', 'ok')").format(sql.Identifier(mood))
    source_pg.execute(create)
    try:
        with source_table(source_pg, "avro", COLUMNS.format(mood=mood)) as created:
            yield created
    finally:
        source_pg.execute(sql.SQL("DROP TYPE IF EXISTS {}").format(sql.Identifier(mood)))


json_sinks = sinks_fixture("avroj", "json_sinks")  # where the JSON topic is delivered
avro_sinks = sinks_fixture("avroa", "avro_sinks")  # and the Avro one


def change(table: SourceTable) -> None:
    for row in ROWS:
        table.run(INSERT, *row)
    table.run("UPDATE {t} SET price = 99999999.99, tags = ARRAY['x'] WHERE id = 1")
    table.run("DELETE FROM {t} WHERE id = 3")


def same(left: ChangeEvent | None, right: ChangeEvent | None) -> None:
    """Equal events, NaN equal to NaN."""
    assert (left is None) == (right is None)
    if left is None or right is None:
        return
    fields = ("op", "table", "key", "version", "source_ts_ms", "columns")
    assert [getattr(left, f) for f in fields] == [getattr(right, f) for f in fields]
    assert (left.row or {}).keys() == (right.row or {}).keys()
    for name, value in (left.row or {}).items():
        other = (right.row or {})[name]
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(other, float) and math.isnan(other), name
        else:
            assert (type(value), value) == (type(other), other), name


def test_each_change_decodes_alike_from_avro_and_json_and_every_sink_holds_the_same_rows(
    registry_up: None,
    debezium: StartConnector,
    table: SourceTable,
    endpoints: Endpoints,
    json_sinks: StackSinks,
    avro_sinks: StackSinks,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    json_topic = capture(table, debezium).topic(table.name)
    avro_prefix = table.name.replace("_", "-") + "-avro"
    avro_topic = create_topic(f"{avro_prefix}.public.{table.name}", partitions=1)
    debezium(avro_prefix, [f"public.{table.name}"], overrides=avro_converters())

    targets = {"json": json_sinks, "avro": avro_sinks}
    batch = {"max_events": 4, "max_wait_ms": 100}
    configs = {
        "json": stack_config(json_sinks.prefix, json_topic, endpoints, batch),
        "avro": stack_config(avro_sinks.prefix, avro_topic, endpoints, batch),
    }
    configs["avro"]["kafka"] |= {"value_format": "avro", "schema_registry": {"url": CCOMPAT}}
    for config in configs.values():
        workers.append(WorkerProcess(None, config, tmp_path).start())
    change(table)

    json_records = topic_records(endpoints.kafka_bootstrap, json_topic, CHANGES)
    avro_records = topic_records(endpoints.kafka_bootstrap, avro_topic, CHANGES)
    assert all(r.value is None or r.value[:1] == b"\x00" for r in avro_records)
    avro_decoder = Decoder.from_settings(load_settings(**configs["avro"]).kafka)
    json_decoder = Decoder()
    from_avro = [avro_decoder.decode(r) for r in avro_records]
    from_json = [json_decoder.decode(r) for r in json_records]
    for avro_event, json_event in zip(from_avro, from_json, strict=True):
        same(avro_event, json_event)

    for form, config in configs.items():
        topic, prefix = config["kafka"]["topics"][0], targets[form].prefix
        for sink in ALL_SINKS:
            wait_caught_up(f"{prefix}-{sink}", [topic], timeout_s=180)
            assert dead_letters(prefix, sink) == 0, (form, sink)
    columns = table.columns()
    for sink in ALL_SINKS:
        from_json_rows = json_sinks.read(sink, table.name, columns, table.key)
        from_avro_rows = avro_sinks.read(sink, table.name, columns, table.key)
        assert sorted(from_avro_rows) == [(1,), (2,)], sink
        assert repr(from_avro_rows) == repr(from_json_rows), sink  # NaN as NaN
