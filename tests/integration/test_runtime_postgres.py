"""The runtime end to end: real Kafka, `fanout run --sink postgres` processes, real PostgreSQL."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import psycopg
import pytest

from tests.integration.runtime_support import (
    Pipeline,
    all_tables_state,
    diff,
    oracle,
    stream,
)
from tests.support.debezium import Message, produce_stream
from tests.support.pipeline import (
    REPO,
    WorkerProcess,
    committed_offsets,
    end_offsets,
    produce,
    read_topic,
    wait_caught_up,
    wait_for,
)


def assert_converged(pg: psycopg.Connection[Any], line: Pipeline, messages: list[Message]) -> None:
    actual, expected = all_tables_state(pg, line.schema), oracle(messages)
    assert actual == expected, diff(actual, expected)
    assert sum(len(rows) for rows in expected.values()) > 0


def test_final_state_is_the_newest_event_per_key(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    messages = stream(4000)
    pipeline.drain(messages, workers)
    assert_converged(pg, pipeline, messages)
    assert read_topic(pipeline.dlq_topic, timeout_s=2, expect=0) == []


def test_duplicates_and_older_batches_delivered_again_change_nothing(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    messages = stream(3000)
    pipeline.drain(messages, workers)
    # The whole stream again, then its first half once more: older than what the sink holds.
    produce_stream(pipeline.topic, messages)
    produce_stream(pipeline.topic, messages[: len(messages) // 2])
    wait_caught_up(pipeline.group, [pipeline.topic])
    assert_converged(pg, pipeline, messages)


def test_replay_from_offset_zero_while_live_events_continue_converges(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    messages = stream(6000, n_keys=150, seed=7)
    first, second = messages[:3000], messages[3000:]
    produce_stream(pipeline.topic, first)
    workers.append(pipeline.worker())
    wait_caught_up(pipeline.group, [pipeline.topic])
    # A second consumer group on the same tables reads everything from offset 0 ...
    replay = Pipeline(
        pipeline.topic, pipeline.prefix + "-replay", pipeline.schema, pipeline.pg, pipeline.workdir
    )
    workers.append(replay.worker(max_events=97))
    # ... while the live one keeps receiving new events, deletes and re-inserts among them.
    produce_stream(pipeline.topic, second)
    wait_caught_up(pipeline.group, [pipeline.topic])
    wait_caught_up(replay.group, [pipeline.topic])
    assert_converged(pg, pipeline, messages)


def _retype(value: bytes, column: str, new_value: Any) -> bytes:
    """The same Debezium message with ``column`` now declared as a string: a type change."""
    envelope = json.loads(value)
    after = next(f for f in envelope["schema"]["fields"] if f["field"] == "after")
    field = next(f for f in after["fields"] if f["field"] == column)
    field.clear()
    field.update({"type": "string", "optional": True, "field": column})
    envelope["payload"]["after"][column] = new_value
    return json.dumps(envelope).encode()


def test_poison_records_go_to_the_dlq_and_their_neighbours_are_written(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    good = [m for m in stream(600, seed=3) if m.value is not None]
    orders = next(m for m in good if m.event.table == "inventory.orders" and m.event.row)
    int_column = next(
        c.name
        for c in orders.event.spec.columns
        if c.kind in ("int32", "int64") and c.name not in orders.event.key
    )
    poison = [
        (b'{"id": 1}', b"{not json"),
        (None, orders.value),
        (orders.key, _retype(orders.value or b"", int_column, "not a number")),
    ]
    produce_stream(pipeline.topic, good[:300])
    produce(pipeline.topic, poison)
    produce_stream(pipeline.topic, good[300:])
    workers.append(pipeline.worker(max_events=1000))
    wait_caught_up(pipeline.group, [pipeline.topic])

    assert_converged(pg, pipeline, good)
    dead = read_topic(pipeline.dlq_topic, expect=3)
    headers = [dict(m.headers()) for m in dead]
    assert sorted(h["fanout.error.class"].decode() for h in headers) == [
        "DecodeError",
        "DecodeError",
        "MappingError",
    ]
    assert {h["fanout.error.stage"].decode() for h in headers} == {"decode", "write"}
    mapping = next(h for h in headers if h["fanout.error.class"] == b"MappingError")
    assert int_column in mapping["fanout.error.message"].decode()
    for message, h in zip(dead, headers, strict=True):
        assert h["fanout.origin.topic"].decode() == pipeline.topic
        assert h["fanout.sink"] == b"postgres"
        assert int(h["fanout.attempts"]) >= 1
        assert {
            "fanout.origin.partition",
            "fanout.origin.offset",
            "fanout.origin.timestamp",
            "fanout.failed_at",
        } <= set(h)
        assert (message.key(), message.value()) in poison  # original bytes, untouched


def test_postgres_down_for_ten_seconds_loses_nothing_and_dead_letters_nothing(
    pipeline: Pipeline, pg_conninfo: dict[str, Any], workers: list[Any]
) -> None:
    messages = stream(6000, seed=11)
    produce_stream(pipeline.topic, messages[:2000])
    workers.append(pipeline.worker(max_events=200))
    wait_caught_up(pipeline.group, [pipeline.topic])
    devstack("down", "postgres")
    try:
        produce_stream(pipeline.topic, messages[2000:])
        # Ten seconds of outage, measured by the worker staying behind (it cannot commit).
        with pytest.raises(AssertionError, match="timed out"):
            wait_caught_up(pipeline.group, [pipeline.topic], timeout_s=10)
        assert workers[0].alive
    finally:
        devstack("up", "postgres")
    wait_caught_up(pipeline.group, [pipeline.topic], timeout_s=180)
    with psycopg.connect(**pg_conninfo, autocommit=True) as pg:
        assert_converged(pg, pipeline, messages)
    assert read_topic(pipeline.dlq_topic, timeout_s=2, expect=0) == []
    assert "sink down" in workers[0].log() and "sink back up" in workers[0].log()


def test_worker_killed_mid_batch_and_restarted_ends_correct(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    messages = stream(20000, n_keys=400, seed=5)
    produce_stream(pipeline.topic, messages)
    first = pipeline.worker(max_events=100)
    workers.append(first)
    total = sum(end_offsets([pipeline.topic]).values())
    wait_for(
        lambda: (
            0
            < sum(max(o, 0) for o in committed_offsets(pipeline.group, [pipeline.topic]).values())
            < total // 2
        ),
        60,
        "the worker to be part-way through",
        interval_s=0.05,
    )
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    workers.append(pipeline.worker())
    wait_caught_up(pipeline.group, [pipeline.topic])
    assert_converged(pg, pipeline, messages)


def test_sigterm_drains_commits_and_exits_zero(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    produce_stream(pipeline.topic, stream(2000))
    worker = pipeline.worker(max_events=100)
    workers.append(worker)
    wait_for(
        lambda: any(o > 0 for o in committed_offsets(pipeline.group, [pipeline.topic]).values()),
        60,
        "a first commit",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()[-2000:]
    assert "worker stopped" in worker.log()


def test_two_workers_split_the_partitions_and_a_rebalance_loses_nothing(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    messages = stream(12000, n_keys=300, seed=9)
    one, two = pipeline.worker(max_events=100), pipeline.worker(max_events=100)
    workers.extend([one, two])
    wait_for(
        lambda: "partitions assigned" in one.log() and "partitions assigned" in two.log(),
        60,
        "both workers to get partitions",
    )
    produce_stream(pipeline.topic, messages[:6000])
    wait_for(lambda: _assigned(one) and _assigned(two), 60, "both workers to own partitions")
    two.signal(signal.SIGTERM)  # its partitions move to the first worker
    assert two.wait() == 0
    produce_stream(pipeline.topic, messages[6000:])
    wait_caught_up(pipeline.group, [pipeline.topic])
    assert_converged(pg, pipeline, messages)


def _assigned(worker: Any) -> bool:
    """The worker's last assignment in its JSON log names at least one partition."""
    assigned = [
        json.loads(line) for line in worker.log().splitlines() if '"partitions assigned"' in line
    ]
    return bool(assigned and assigned[-1].get("partitions"))


def devstack(*args: str) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "devstack"), *args], check=True, timeout=180
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_health_and_readiness_tell_what_the_worker_does(
    pipeline: Pipeline, workers: list[Any]
) -> None:
    messages = stream(3000)
    produce_stream(pipeline.topic, messages)
    port = _free_port()
    config = pipeline.config()
    config["metrics"] = {"port": port}
    worker = WorkerProcess("postgres", config, pipeline.workdir).start()
    workers.append(worker)
    wait_for(lambda: _get(port, "/readyz")[0] == 200, 60, "/readyz to answer 200")
    assert _get(port, "/healthz")[0] == 200
    wait_caught_up(pipeline.group, [pipeline.topic])
    status, text = _get(port, "/metrics")
    assert status == 200
    assert _metric(text, "fanout_events_consumed_total", sink="postgres") == len(messages)
    assert _metric(text, "fanout_events_written_total", sink="postgres", op="delete") > 0
    # Each change is counted once: applied (written) or skipped as older than what the sink
    # holds (stale). Tombstones follow their delete and change nothing.
    changes = sum(1 for message in messages if not message.is_tombstone)
    written = _metric(text, "fanout_events_written_total", sink="postgres")
    stale = _metric(text, "fanout_stale_events_total", sink="postgres")
    assert written + stale == changes, (written, stale, changes)
    assert _metric(text, "fanout_end_to_end_latency_seconds_count", sink="postgres") == len(
        messages
    )
    wait_for(lambda: "fanout_consumer_lag{" in _get(port, "/metrics")[1], 30, "lag to be reported")
    devstack("down", "postgres")
    try:
        produce_stream(pipeline.topic, stream(200, seed=2))
        wait_for(lambda: _get(port, "/readyz")[0] == 503, 60, "/readyz to report 503")
        body = _get(port, "/readyz")[1]
        assert json.loads(body)["sinks"]["postgres"]["sink_up"] is False
        assert _get(port, "/healthz")[0] == 200  # down sink: not ready, but alive
    finally:
        devstack("up", "postgres")
    wait_for(lambda: _get(port, "/readyz")[0] == 200, 120, "/readyz to recover")


def test_topics_can_be_subscribed_by_regex(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    messages = stream(1500, seed=4)
    produce_stream(pipeline.topic, messages)
    config = pipeline.config()
    config["kafka"]["topics"] = []
    config["kafka"]["topic_pattern"] = re.escape(pipeline.prefix) + r"\.c.c$"
    workers.append(WorkerProcess("postgres", config, pipeline.workdir).start())
    wait_caught_up(pipeline.group, [pipeline.topic])
    assert_converged(pg, pipeline, messages)
