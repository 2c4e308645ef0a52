"""The three error classes end to end: real Kafka, `fanout run --sink …` processes, real stores.

- DATA: records PostgreSQL or ClickHouse refuse (a NUL byte, a lone surrogate, integers beyond
  their column) go to the DLQ, the rest is written, the worker lives.
- CONFIGURATION: a role without INSERT grant stops the worker: nothing consumed or committed,
  nothing dead-lettered, /readyz and /healthz 503 with the reason, one log line, exit 2 after
  ``config_error_exit_s``.
- TRANSIENT: a store that hangs (a proxy that stops answering) turns /readyz 503 within about
  its timeout while /healthz stays 200, and everything moves again once it answers.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from clickhouse_connect.driver.client import Client as ClickHouseClient
from psycopg import sql

from tests.integration.conftest import Endpoints
from tests.integration.runtime_support import Pipeline, all_tables_state, diff, oracle, stream
from tests.support.debezium import (
    PRODUCTS,
    Message,
    expected_state,
    generate_stream,
    produce_stream,
)
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of a health endpoint (0 and {} while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


def customer(template: Message, new_id: int, **values: Any) -> tuple[bytes, bytes]:
    """A customers insert like ``template`` under a fresh key, with ``values`` in its row."""
    key, value = json.loads(template.key or b""), json.loads(template.value or b"")
    key["payload"]["id"] = new_id
    value["payload"]["after"].update(id=new_id, **values)
    # json.dumps escapes what it cannot write as text: "\u0000", a lone "\ud800"
    return json.dumps(key).encode(), json.dumps(value).encode()


def a_customer_insert(messages: list[Message]) -> Message:
    return next(
        m
        for m in messages
        if m.value is not None
        and m.event.table == "inventory.customers"
        and m.event.kind == "insert"
    )


def caught_up(worker: WorkerProcess, group: str, topic: str, timeout_s: float = 120) -> None:
    """Wait until ``group`` committed ``topic`` to its end; on a timeout, say what the worker
    logged last."""
    try:
        wait_caught_up(group, [topic], timeout_s=timeout_s)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log tail:\n{worker.log()[-4000:]}") from None


def assert_converged(pg: psycopg.Connection[Any], line: Pipeline, messages: list[Message]) -> None:
    actual, expected = all_tables_state(pg, line.schema), oracle(messages)
    assert actual == expected, diff(actual, expected)


# ---- DATA ----------------------------------------------------------------------------------


def test_nul_bytes_and_lone_surrogates_go_to_the_dlq_and_the_rest_is_written(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    good = [m for m in stream(800, seed=21) if m.value is not None]
    template = a_customer_insert(good)
    poison = [
        customer(template, 900_001, first_name="nul \x00 inside"),
        customer(template, 900_002, email="\x00"),
        customer(template, 900_003, first_name="lone \ud800 surrogate"),
        customer(template, 900_004, last_name="\udfff"),
        # a uuid without hyphens sends its batch by text COPY, where the surrogate used to
        # escape as a UnicodeEncodeError and kill the worker (a crash loop on restart)
        customer(template, 900_005, external_id="a0eebc999c0b4ef8bb6d6bb9bd380a11", email="\ud83d"),
    ]
    produce_stream(pipeline.topic, good[:400])
    produce(pipeline.topic, poison)
    produce_stream(pipeline.topic, good[400:])
    worker = pipeline.worker(max_events=2000)  # the poison shares its batches with good records
    workers.append(worker)
    caught_up(worker, pipeline.group, pipeline.topic)

    assert worker.alive, worker.log()[-3000:]
    assert_converged(pg, pipeline, good)
    dead = read_topic(pipeline.dlq_topic, expect=len(poison))
    assert sorted((m.key(), m.value()) for m in dead) == sorted(poison)
    reasons = {}
    for message in dead:
        headers = dict(message.headers())
        assert headers["fanout.error.stage"] == b"write"
        reasons[json.loads(message.key())["payload"]["id"]] = headers["fanout.error.message"]
    assert b"0x00" in reasons[900_001] and b"0x00" in reasons[900_002]
    assert b"surrogates not allowed" in reasons[900_003]
    assert b"surrogates not allowed" in reasons[900_004]
    assert b"surrogates not allowed" in reasons[900_005]
    log = worker.log()
    assert "worker crashed" not in log and "Traceback" not in log


# ---- CONFIGURATION -------------------------------------------------------------------------


def test_a_role_without_insert_grant_stops_the_worker_says_why_and_exits_non_zero(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    messages = stream(3000, seed=22)
    first, second = messages[:1500], messages[1500:]
    pipeline.drain(first, workers)  # creates the tables
    assert workers[0].stop() == 0
    pg.execute(
        sql.SQL("REVOKE INSERT ON ALL TABLES IN SCHEMA {} FROM CURRENT_USER").format(
            sql.Identifier(pipeline.schema)
        )
    )
    before = committed_offsets(pipeline.group, [pipeline.topic])
    produce_stream(pipeline.topic, second)
    port = free_port()
    config = pipeline.config()
    config["metrics"] = {"port": port}
    config["sinks"]["postgres"]["config_error_exit_s"] = 10
    worker = WorkerProcess("postgres", config, pipeline.workdir).start()
    workers.append(worker)

    ready = wait_for(lambda: _refused(get(port, "/readyz")), 60, "/readyz 503 with the reason")
    started = time.monotonic()
    reason = ready["sinks"]["postgres"]["reason"]
    assert reason.startswith("configuration error: postgres refused the sink's configuration")
    assert "permission denied for table" in reason
    status, live = get(port, "/healthz")
    assert status == 503 and "permission denied" in live["sinks"]["postgres"]["reason"]

    code = worker.wait(timeout_s=60)
    assert code == 2, worker.log()[-3000:]
    assert time.monotonic() - started > 5  # the configured wait (10 s), not at once
    assert committed_offsets(pipeline.group, [pipeline.topic]) == before  # nothing committed
    assert read_topic(pipeline.dlq_topic, timeout_s=2, expect=0) == []  # nothing dead-lettered
    said = [line for line in worker.log().splitlines() if "configuration error" in line]
    assert len(said) == 1, said  # once, clearly
    line = json.loads(said[0])
    assert line["sink"] == "postgres" and line["error_class"] == "configuration"
    assert "permission denied for table" in line["msg"] and "exiting in 10 s" in line["msg"]


def _refused(answer: tuple[int, dict[str, Any]]) -> dict[str, Any] | None:
    status, body = answer
    if status == 503 and body["sinks"]["postgres"]["config_error"]:
        return body
    return None


# ---- TRANSIENT: a store that hangs -------------------------------------------------------------


@pytest.fixture
def pg_proxy(pg_conninfo: dict[str, Any]) -> Iterator[TcpProxy]:
    """A TCP proxy in front of PostgreSQL: hang it to make the store stop answering."""
    proxy = TcpProxy((pg_conninfo["host"], pg_conninfo["port"]))
    proxy.up()
    yield proxy
    proxy.resume()
    proxy.down()


def test_a_hung_postgres_turns_readyz_503_within_its_timeout_and_everything_moves_after(
    pipeline: Pipeline, pg: psycopg.Connection[Any], pg_proxy: TcpProxy, workers: list[Any]
) -> None:
    messages = stream(3000, seed=23)
    port = free_port()
    config = pipeline.config(max_events=200)
    config["metrics"] = {"port": port}
    postgres = config["sinks"]["postgres"]
    postgres.update(port=pg_proxy.port, statement_timeout_s=3, lock_timeout_s=3)
    postgres["connect_timeout_s"] = 3
    produce_stream(pipeline.topic, messages[:1000])
    worker = WorkerProcess("postgres", config, pipeline.workdir).start()
    workers.append(worker)
    wait_caught_up(pipeline.group, [pipeline.topic])
    wait_for(lambda: get(port, "/readyz")[0] == 200, 30, "/readyz 200")

    pg_proxy.hang()
    produce_stream(pipeline.topic, messages[1000:])
    hung_at = time.monotonic()
    body = wait_for(lambda: _hung(get(port, "/readyz")), 30, "/readyz 503: no answer")
    assert time.monotonic() - hung_at < 3 + 12  # the timeout, a write's start, a poll
    assert body["sinks"]["postgres"]["reason"].startswith("no answer from the store for")
    for _ in range(3):  # alive all along: the loop turns while the call hangs
        assert get(port, "/healthz")[0] == 200
        time.sleep(1)  # sampling interval of a bounded observation, not a sync point
    assert worker.alive

    pg_proxy.resume()
    wait_caught_up(pipeline.group, [pipeline.topic], timeout_s=120)
    wait_for(lambda: get(port, "/readyz")[0] == 200, 30, "/readyz 200 again")
    assert_converged(pg, pipeline, messages)
    assert read_topic(pipeline.dlq_topic, timeout_s=2, expect=0) == []


def _hung(answer: tuple[int, dict[str, Any]]) -> dict[str, Any] | None:
    status, body = answer
    return body if status == 503 and body["sinks"]["postgres"]["hung"] else None


# ---- ClickHouse: values it refuses --------------------------------------------------------------


def product(template: Message, new_id: int, **values: Any) -> tuple[bytes, bytes]:
    """A products insert like ``template`` under a fresh key, with ``values`` in its row."""
    key, value = json.loads(template.key or b""), json.loads(template.value or b"")
    key["payload"]["id"] = new_id
    value["payload"]["after"].update(id=new_id, **values)
    return json.dumps(key).encode(), json.dumps(value).encode()


def test_clickhouse_values_it_refuses_go_to_the_dlq_not_a_stall(
    clickhouse: ClickHouseClient, endpoints: Endpoints, tmp_path: Path, workers: list[Any]
) -> None:
    prefix = unique("rtch")
    topic = create_topic(f"{prefix}.cdc", partitions=3)
    database = f"rtch_{uuid.uuid4().hex[:8]}"
    good = [m for m in generate_stream(400, n_keys=100, tables=(PRODUCTS,), seed=24) if m.value]
    template = next(m for m in good if m.event.kind == "insert")
    refused = [
        product(template, 900_001, reviews=2**64),  # int64 column: beyond any 64-bit integer
        product(template, 900_002, reviews=2**63),  # beyond int64
        product(template, 900_003, reviews=-(2**63) - 1),
        product(template, 900_004, stock=2**40),  # int32 column: the schema lies about it
        product(template, 900_005, reviews="not a number"),  # a string in an int64 column
    ]
    produce_stream(topic, good[:200])
    produce(topic, refused)
    produce_stream(topic, good[200:])
    config = {
        "kafka": {
            "topics": [topic],
            "group_prefix": prefix,
            "dlq_prefix": f"{prefix}.dlq",
            "session_timeout_ms": 6000,
        },
        "metrics": {"port": 0},
        "sinks": {
            "clickhouse": {
                "enabled": True,
                "mode": "server",
                "host": endpoints.ch_host,
                "port": endpoints.ch_port,
                "database": database,
                "batch": {"max_events": 1000, "max_wait_ms": 200},
                "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 1000},
            }
        },
    }
    worker = WorkerProcess("clickhouse", config, tmp_path).start()
    workers.append(worker)
    try:
        caught_up(worker, f"{prefix}-clickhouse", topic, timeout_s=180)
        assert worker.alive, worker.log()[-3000:]
        dead = read_topic(f"{prefix}.dlq.clickhouse", expect=len(refused))
        assert sorted((m.key(), m.value()) for m in dead) == sorted(refused)
        expected = {
            key[0]: (row["stock"], row["reviews"])
            for key, row in expected_state(good)["inventory.products"].items()
        }
        query = (
            f"SELECT id, stock, reviews FROM `{database}`.products FINAL WHERE _fanout_deleted = 0"
        )
        stored = {
            id_: (stock, reviews) for id_, stock, reviews in clickhouse.query(query).result_rows
        }
        assert stored == expected
        assert "ClickHouse unavailable" not in worker.log()
    finally:
        clickhouse.command(f"DROP DATABASE IF EXISTS `{database}`")


def test_a_clickhouse_password_refused_stops_the_worker_at_open_and_it_exits_2(
    clickhouse: ClickHouseClient, endpoints: Endpoints, tmp_path: Path, workers: list[Any]
) -> None:
    prefix = unique("rtchpw")
    topic = create_topic(f"{prefix}.cdc", partitions=1)
    produce(topic, [(b'{"id": 1}', b'{"id": 1}')])
    port = free_port()
    config = {
        "kafka": {"topics": [topic], "group_prefix": prefix, "dlq_prefix": f"{prefix}.dlq"},
        "metrics": {"port": port},
        "sinks": {
            "clickhouse": {
                "enabled": True,
                "mode": "server",
                "host": endpoints.ch_host,
                "port": endpoints.ch_port,
                "password": "not the password",
                "config_error_exit_s": 3,
            }
        },
    }
    worker = WorkerProcess("clickhouse", config, tmp_path).start()
    workers.append(worker)
    assert worker.wait(timeout_s=60) == 2, worker.log()[-3000:]
    said = [line for line in worker.log().splitlines() if "configuration error" in line]
    assert len(said) == 1, worker.log()[-3000:]
    assert "AUTHENTICATION_FAILED" in said[0] and "exiting in 3 s" in said[0]
    assert "not the password" not in worker.log()
    assert committed_offsets(f"{prefix}-clickhouse", [topic]) == {(topic, 0): -1001}
