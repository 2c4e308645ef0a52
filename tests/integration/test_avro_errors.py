"""Avro records a worker cannot decode, and a registry it cannot reach, end to end.

Real Kafka, the local Apicurio Registry (its Confluent-compatible API), ``fanout run --sink
postgres`` processes, the real PostgreSQL:

- DATA: a value that is not Confluent Avro, one whose schema id the registry does not have and
  one cut short go to the DLQ (stage decode) with the reason, one PostgreSQL refuses (stage
  write) too; the good record is written and the worker lives; ``fanout dlq show`` prints an
  Avro entry decoded, or its raw bytes with a note when the id is unknown or the registry away;
- CONFIGURATION: a registry that does not answer stops the worker once
  ``kafka.schema_registry.unavailable_after_s`` has passed, saying which URL, with nothing
  dead-lettered or committed, and it exits 2;
- while the worker retries a registry that went away, ``/readyz`` answers 503 naming it, and
  200 again once the registry is back (the registry taken away behind a TCP proxy).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from psycopg import sql

from tests.integration.conftest import Endpoints
from tests.integration.ops_support import fanout, write_config
from tests.support.avro_connect import avro_datum, avro_schema, frame
from tests.support.pipeline import (
    WorkerProcess,
    committed_offsets,
    create_topic,
    produce,
    read_topic,
    unique,
    wait_caught_up,
    wait_for,
)
from tests.support.tcp_proxy import TcpProxy

REGISTRY = os.environ.get("DEVSTACK_REGISTRY_URL", "http://127.0.0.1:8081").rstrip("/")
CCOMPAT = f"{REGISTRY}/apis/ccompat/v7"
ROW = {
    "type": "struct",
    "optional": True,
    "name": "avroerr.public.items.Value",
    "fields": [
        {"type": "int32", "optional": False, "field": "id"},
        {"type": "string", "optional": True, "field": "name"},
    ],
}
ENVELOPE = {
    "type": "struct",
    "optional": False,
    "name": "avroerr.public.items.Envelope",
    "fields": [
        {**ROW, "field": "before"},
        {**ROW, "field": "after"},
        {
            "type": "struct",
            "optional": False,
            "field": "source",
            "name": "io.debezium.connector.postgresql.Source",
            "fields": [
                {"type": "int64", "optional": False, "field": "ts_ms"},
                {"type": "string", "optional": False, "field": "schema"},
                {"type": "string", "optional": False, "field": "table"},
                {"type": "int64", "optional": True, "field": "lsn"},
            ],
        },
        {"type": "string", "optional": False, "field": "op"},
    ],
}
KEY_SCHEMA = {"type": "struct", "optional": False, "fields": [{"type": "int32", "field": "id"}]}


def key(ident: int) -> bytes:
    return json.dumps({"schema": KEY_SCHEMA, "payload": {"id": ident}}).encode()


def insert(ident: int, lsn: int) -> dict[str, Any]:
    source = {"ts_ms": 1, "schema": "public", "table": "items", "lsn": lsn}
    return {"before": None, "after": {"id": ident, "name": "n"}, "source": source, "op": "c"}


def config(
    prefix: str, topic: str, endpoints: Endpoints, registry: dict[str, Any]
) -> dict[str, Any]:
    return {
        "kafka": {
            "topics": [topic],
            "group_prefix": prefix,
            "dlq_prefix": f"{prefix}.dlq",
            "session_timeout_ms": 6000,
            "value_format": "avro",
            "key_format": "json",
            "schema_registry": registry,
        },
        "metrics": {"port": 0},
        "sinks": {
            "postgres": {
                "enabled": True,
                "schema": prefix,
                "config_error_exit_s": 3,
                **endpoints.pg,
                "batch": {"max_events": 10, "max_wait_ms": 100},
            }
        },
    }


def register(schema: Any) -> int:
    """The id the local registry gives ``schema`` under a fresh subject."""
    subject = unique("avroerr") + "-value"
    return SchemaRegistryClient({"url": CCOMPAT}).register_schema(
        subject, Schema(json.dumps(schema), "AVRO")
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    """``/readyz``'s status and body; (0, {}) while the worker does not listen yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())
    except OSError:
        return 0, {}


def test_undecodable_avro_goes_to_the_dlq_with_the_reason_and_the_rest_is_written(
    endpoints: Endpoints, pg: psycopg.Connection[Any], tmp_path: Path, workers: list[Any]
) -> None:
    schema = avro_schema(ENVELOPE)
    schema_id = register(schema)
    good = frame(schema_id, schema, avro_datum(ENVELOPE, insert(1, 100)))
    refused = insert(5, 500)
    refused["after"]["name"] = "a\x00b"  # PostgreSQL text holds no NUL: refused at write
    poison = [
        (key(2), json.dumps(insert(2, 200)).encode()),  # JSON on an Avro topic
        (key(3), frame(2_000_000_000, schema, avro_datum(ENVELOPE, insert(3, 300)))),
        (key(4), good[:-3]),  # cut short
        (key(5), frame(schema_id, schema, avro_datum(ENVELOPE, refused))),
    ]
    prefix = unique("avroerr")
    topic = create_topic(f"{prefix}.public.items", partitions=1)
    produce(topic, [(key(1), good), *poison])
    registry = {"url": CCOMPAT}
    settings = config(prefix, topic, endpoints, registry)
    worker = WorkerProcess("postgres", settings, tmp_path)
    workers.append(worker.start())
    try:
        wait_caught_up(f"{prefix}-postgres", [topic], timeout_s=120)
        assert worker.alive, worker.log()[-3000:]
        rows = pg.execute(sql.SQL("SELECT id FROM {}").format(sql.Identifier(prefix, "items")))
        assert [row[0] for row in rows] == [1]
        dead = read_topic(f"{prefix}.dlq.postgres", expect=len(poison))
        reasons = {m.key(): dict(m.headers()) for m in dead}
        assert sorted(reasons) == sorted(k for k, _ in poison)
        stages = {k: h["fanout.error.stage"] for k, h in reasons.items()}
        assert stages == {key(2): b"decode", key(3): b"decode", key(4): b"decode", key(5): b"write"}
        said = {k: h["fanout.error.message"].decode() for k, h in reasons.items()}
        assert "not Confluent Avro: starts with byte 0x7b" in said[key(2)]
        assert "schema id 2000000000 is not in the schema registry" in said[key(3)]
        assert f"is not Avro of schema id {schema_id}" in said[key(4)]
        entries = {m.key(): f"{m.partition()}:{m.offset()}" for m in dead}
        assert_dlq_show_decodes_avro(settings, tmp_path, entries[key(5)], entries[key(3)], refused)
    finally:
        pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(prefix)))


def assert_dlq_show_decodes_avro(
    settings: dict[str, Any], tmp_path: Path, avro: str, unknown_id: str, record: dict[str, Any]
) -> None:
    """``fanout dlq show`` of Avro entries: decoded, else raw bytes with a note, never a trace."""
    shown = show(write_config(tmp_path, settings), avro)
    assert shown["value"] == record
    assert "shown decoded with schema id" in shown["notes"]["value"]
    unknown = show(write_config(tmp_path, settings), unknown_id)
    assert unknown["value"].startswith("b'\\x00w5\\x94\\x00"), unknown["value"]  # id 2e9
    assert "not in the schema registry" in unknown["notes"]["value"]

    away = {**settings, "kafka": {**settings["kafka"], "schema_registry": {"url": closed_url()}}}
    raw = show(write_config(tmp_path, away), avro)
    assert raw["value"].startswith("b'\\x00"), raw["value"]
    assert "shown as raw bytes, not decoded: schema registry" in raw["notes"]["value"]
    assert "unavailable" in raw["notes"]["value"]
    text = fanout(write_config(tmp_path, away), "dlq", "show", "--sink", "postgres", avro)
    assert text.code == 0 and "Traceback" not in text.stderr, text
    assert "note: value shown as raw bytes, not decoded" in text.stdout


def show(config: Path, entry: str) -> dict[str, Any]:
    result = fanout(config, "dlq", "show", "--sink", "postgres", entry, "--json")
    assert result.code == 0 and "Traceback" not in result.stderr, result
    shown: dict[str, Any] = result.json()
    return shown


def closed_url() -> str:
    """The URL of a port nothing listens on."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{closed.getsockname()[1]}"


def test_a_registry_that_does_not_answer_stops_the_worker_naming_it_and_it_exits_2(
    endpoints: Endpoints, tmp_path: Path, workers: list[Any]
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    schema = avro_schema(ENVELOPE)
    prefix = unique("avrodown")
    topic = create_topic(f"{prefix}.public.items", partitions=1)
    produce(topic, [(key(1), frame(1, schema, avro_datum(ENVELOPE, insert(1, 100))))])
    registry = {"url": url, "unavailable_after_s": 2, "timeout_s": 1}
    worker = WorkerProcess("postgres", config(prefix, topic, endpoints, registry), tmp_path)
    workers.append(worker.start())

    assert worker.wait(timeout_s=90) == 2, worker.log()[-3000:]
    said = [line for line in worker.log().splitlines() if "configuration error" in line]
    assert len(said) == 1, said
    assert f"schema registry {url} unavailable for 2 s" in said[0]
    assert committed_offsets(f"{prefix}-postgres", [topic]) == {(topic, 0): -1001}  # none
    assert read_topic(f"{prefix}.dlq.postgres", timeout_s=2, expect=0) == []


def test_readyz_names_the_registry_while_it_is_away_and_is_200_once_it_is_back(
    endpoints: Endpoints, pg: psycopg.Connection[Any], tmp_path: Path, workers: list[Any]
) -> None:
    schema = avro_schema(ENVELOPE)
    schema_id = register(schema)
    upstream = urlsplit(REGISTRY)
    proxy = TcpProxy((upstream.hostname or "127.0.0.1", upstream.port or 80))  # not up: away
    url = f"{proxy.url}/apis/ccompat/v7"
    prefix = unique("avroaway")
    topic = create_topic(f"{prefix}.public.items", partitions=1)
    produce(topic, [(key(1), frame(schema_id, schema, avro_datum(ENVELOPE, insert(1, 100))))])
    registry = {"url": url, "unavailable_after_s": 120, "timeout_s": 2}
    settings = config(prefix, topic, endpoints, registry)
    port = settings["metrics"]["port"] = free_port()
    worker = WorkerProcess("postgres", settings, tmp_path)
    workers.append(worker.start())
    try:

        def registry_named() -> str | None:
            status, body = readyz(port)
            reason = str(body.get("sinks", {}).get("postgres", {}).get("reason"))
            return reason if status == 503 and "schema registry" in reason else None

        reason = wait_for(registry_named, 60, "/readyz to name the registry")
        assert reason.startswith(f"schema registry {url} unavailable: "), reason
        assert worker.alive, worker.log()[-3000:]
        proxy.up()
        wait_for(lambda: readyz(port)[0] == 200, 60, "/readyz to answer 200 again")
        wait_caught_up(f"{prefix}-postgres", [topic], timeout_s=60)
        rows = pg.execute(sql.SQL("SELECT id FROM {}").format(sql.Identifier(prefix, "items")))
        assert [row[0] for row in rows] == [1]
    finally:
        proxy.down()
        pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(prefix)))


def test_a_worker_told_to_stop_while_the_registry_is_away_exits_0_without_waiting_it_out(
    endpoints: Endpoints, tmp_path: Path, workers: list[Any]
) -> None:
    """SIGTERM during the registry's retries: the worker stops (exit 0) and commits nothing of
    the undecoded record, which the next worker consumes again; it does not wait out
    ``unavailable_after_s`` (then exit 2 with a configuration error)."""
    schema = avro_schema(ENVELOPE)
    schema_id = register(schema)
    upstream = urlsplit(REGISTRY)
    proxy = TcpProxy((upstream.hostname or "127.0.0.1", upstream.port or 80))  # not up: away
    prefix = unique("avrostop")
    topic = create_topic(f"{prefix}.public.items", partitions=1)
    produce(topic, [(key(1), frame(schema_id, schema, avro_datum(ENVELOPE, insert(1, 100))))])
    url = f"{proxy.url}/apis/ccompat/v7"
    registry = {"url": url, "unavailable_after_s": 280, "timeout_s": 2}  # < max.poll 300 s
    settings = config(prefix, topic, endpoints, registry)
    port = settings["metrics"]["port"] = free_port()
    worker = WorkerProcess("postgres", settings, tmp_path)
    workers.append(worker.start())
    try:
        wait_for(lambda: "schema registry" in str(readyz(port)[1]), 60, "the registry retried")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout_s=90) == 0, worker.log()[-3000:]  # hang guard, not a bound
        assert "configuration error" not in worker.log()
        assert committed_offsets(f"{prefix}-postgres", [topic]) == {(topic, 0): -1001}  # none
    finally:
        proxy.down()
