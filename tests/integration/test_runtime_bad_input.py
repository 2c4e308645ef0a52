"""Bad input through a real worker (`fanout run --sink postgres`, real Kafka and PostgreSQL):
every bad record lands in the DLQ with its reason (one too large for the DLQ topic stored
truncated), nothing of it is written, the records around it are, and the worker commits."""

from __future__ import annotations

import copy
import json
from typing import Any

import psycopg

from tests.integration.runtime_support import Pipeline, all_tables_state, diff, oracle, stream
from tests.support.debezium import Message, produce_stream
from tests.support.pipeline import (
    WorkerProcess,
    committed_offsets,
    end_offsets,
    produce,
    read_topic,
    wait_caught_up,
)

DLQ_MAX_BYTES = 100_000
HUGE_LSN = 2**62  # newer than every generated position: if a poison row were applied, it wins


def edited(message: Message, value: Any = None, key: Any = None) -> tuple[bytes, bytes]:
    """``message``'s key and value bytes after ``key(doc)`` / ``value(doc)`` edited them."""
    key_doc, value_doc = json.loads(message.key or b"null"), json.loads(message.value or b"null")
    if key is not None:
        key(key_doc)
    if value is not None:
        value(value_doc)
    return json.dumps(key_doc).encode(), json.dumps(value_doc).encode()


def newest(doc: dict[str, Any], **after: Any) -> None:
    """Make the envelope newer than anything else of its key, with ``after`` changes."""
    doc["payload"]["source"]["lsn"] = HUGE_LSN
    doc["payload"]["after"].update(after)


def poison_records(good: list[Message]) -> dict[str, tuple[bytes | None, bytes | None]]:
    """Named bad records, built from real-looking ones; the reason each must be refused with."""
    customer = next(m for m in good if m.event.table == "inventory.customers" and m.event.row)
    order = next(m for m in good if m.event.table == "inventory.orders" and m.event.row)
    other_id = customer.event.key["id"] + 100_000

    def other_key(doc: dict[str, Any]) -> None:
        doc["payload"]["id"] = other_id

    def null_key(doc: dict[str, Any]) -> None:
        doc["payload"]["id"] = None

    return {
        "oversized": (b'{"id": 1}', json.dumps({"blob": "x" * 300_000}).encode()),
        "wrong shape": (b'{"id": 1}', b'{"id": 1, "first_name": "not an envelope"}'),
        "schema, no payload": (b'{"id": 1}', json.dumps({"schema": _schema(customer)}).encode()),
        "key disagrees": edited(
            customer, key=other_key, value=lambda d: newest(d, first_name="POISON")
        ),
        "null key": edited(customer, key=null_key, value=lambda d: newest(d, first_name="NULL")),
        "boolean yes": edited(customer, value=lambda d: newest(d, active="yes")),
        "string int": edited(order, value=lambda d: newest(d, customer_id="12")),
        "lsn beyond int64": edited(customer, value=beyond_int64),
    }


def beyond_int64(doc: dict[str, Any]) -> None:
    newest(doc, first_name="LSN")
    doc["payload"]["source"]["lsn"] = 2**63


def _schema(message: Message) -> Any:
    return json.loads(message.value or b"{}")["schema"]


REASONS = {
    "oversized": "neither a Debezium envelope",
    "wrong shape": "neither a Debezium envelope (before/after/source/op) nor a known flattened row",
    "schema, no payload": "value is a JsonConverter schema without a payload",
    "key disagrees": "key and value disagree: key column 'id' is",
    "null key": "key column 'id' is null",
    "boolean yes": "column 'active': value does not match its schema (boolean): got text 'yes'",
    "string int": "column 'customer_id': value does not match its schema (int32): got text '12'",
    "lsn beyond int64": "lsn 9223372036854775808 does not fit a version",
}


def test_bad_records_go_to_the_dlq_with_their_reasons_and_the_rest_is_written(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    good = [m for m in stream(1500, seed=21) if m.value is not None]
    poison = poison_records(good)
    produce_stream(pipeline.topic, good[:700])
    produce(pipeline.topic, poison.values())
    produce_stream(pipeline.topic, good[700:])
    config = copy.deepcopy(pipeline.config(max_events=400))
    config["kafka"]["dlq_max_message_bytes"] = DLQ_MAX_BYTES
    worker = WorkerProcess("postgres", config, pipeline.workdir).start()
    workers.append(worker)

    wait_caught_up(pipeline.group, [pipeline.topic], timeout_s=180)  # committed to the end
    assert worker.alive, worker.log()[-3000:]
    ends = end_offsets([pipeline.topic])
    assert committed_offsets(pipeline.group, [pipeline.topic]) == ends

    actual, expected = all_tables_state(pg, pipeline.schema), oracle(good)
    assert actual == expected, diff(actual, expected)  # no poison row applied, every good one

    dead = read_topic(pipeline.dlq_topic, expect=len(poison))
    assert len(dead) == len(poison)
    entries = [(m, {k: v.decode() for k, v in m.headers()}) for m in dead]
    for name, (key, value) in poison.items():
        assert value is not None
        message, headers = next(
            (m, h)
            for m, h in entries
            if m.key() == key and (m.value() == value or value.startswith(m.value() or b"\0"))
        )
        assert (headers["fanout.error.stage"], headers["fanout.error.class"]) == (
            "decode",
            "DecodeError",
        )
        assert REASONS[name] in headers["fanout.error.message"], (name, headers)
        if name == "oversized":  # cut to fit the DLQ topic, and saying so
            assert headers["fanout.truncated"] == "true"
            assert headers["fanout.original.value_bytes"] == str(len(value))
            assert headers["fanout.original.key_bytes"] == str(len(key or b""))
            assert len(message.value()) < DLQ_MAX_BYTES < len(value)
            assert headers["fanout.origin.topic"] == pipeline.topic  # where the whole one is
        else:
            assert "fanout.truncated" not in headers
            assert message.value() == value  # byte for byte
    assert "DLQ record truncated" in worker.log()
