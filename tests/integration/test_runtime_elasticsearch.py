"""The runtime end to end with the Elasticsearch sink: real Kafka, `fanout run --sink
elasticsearch`, the devstack's Elasticsearch behind a TCP proxy the test can cut (the shared
Elasticsearch itself is never stopped)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from sinks.elasticsearch.types import json_document
from tests.support.debezium import (
    DEFAULT_TABLES,
    Message,
    expected_state,
    generate_stream,
    produce_stream,
)
from tests.support.pipeline import WorkerProcess, create_topic, read_topic, unique, wait_caught_up
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
def prefix(es: Elasticsearch, kafka_bootstrap: str) -> Iterator[str]:
    name = unique("rtes")
    yield name
    es.options(ignore_status=404).indices.delete(index=f"{name}-*", expand_wildcards="all")


def worker_config(prefix: str, topic: str, hosts: list[str]) -> dict[str, Any]:
    return {
        "kafka": {
            "topics": [topic],
            "group_prefix": prefix,
            "dlq_prefix": f"{prefix}.dlq",
            "session_timeout_ms": 6000,
        },
        "metrics": {"port": 0},
        "sinks": {
            "elasticsearch": {
                "enabled": True,
                "hosts": hosts,
                "index_prefix": f"{prefix}-",
                "request_timeout_s": 5,
                "batch": {"max_events": 200, "max_wait_ms": 100},
                "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 1000},
            }
        },
    }


def searched_state(es: Elasticsearch, prefix: str) -> dict[str, dict[str, Any]]:
    state: dict[str, dict[str, Any]] = {}
    for spec in DEFAULT_TABLES:
        alias = f"{prefix}-{spec.table}"
        if not es.indices.exists_alias(name=alias):
            state[spec.table] = {}
            continue
        es.indices.refresh(index=alias)
        state[spec.table] = {
            hit["_id"]: {k: v for k, v in hit["_source"].items() if not k.startswith("_fanout_")}
            for hit in helpers.scan(es, index=alias, size=2000)
        }
    return state


def expected_docs(messages: list[Message]) -> dict[str, dict[str, Any]]:
    expected = expected_state(messages)
    out: dict[str, dict[str, Any]] = {}
    for spec in DEFAULT_TABLES:
        rows = expected.get(spec.name, {})
        json_columns = {column.name for column in spec.columns if column.kind == "json"}
        out[spec.table] = {
            # a JSON column holding SQL NULL is left out of the document
            _doc_id(key): {
                name: value
                for name, value in json_document(row).items()
                if not (value is None and name in json_columns)
            }
            for key, row in rows.items()
        }
    return out


def _doc_id(key: tuple[Any, ...]) -> str:
    return str(key[0]) if len(key) == 1 else "[" + ",".join(str(v) for v in key) + "]"


def test_elasticsearch_away_for_ten_seconds_loses_nothing_and_dead_letters_nothing(
    proxy: TcpProxy, es: Elasticsearch, prefix: str, tmp_path: Path
) -> None:
    topic = create_topic(f"{prefix}.cdc", partitions=6)
    messages = list(generate_stream(5000, n_keys=200, seed=5))
    group, dlq = f"{prefix}-elasticsearch", f"{prefix}.dlq.elasticsearch"
    produce_stream(topic, messages[:1500])
    worker = WorkerProcess("elasticsearch", worker_config(prefix, topic, [proxy.url]), tmp_path)
    worker.start()
    try:
        wait_caught_up(group, [topic], timeout_s=120)
        proxy.down()
        try:
            produce_stream(topic, messages[1500:])
            with pytest.raises(AssertionError, match="timed out"):  # ten seconds of outage
                wait_caught_up(group, [topic], timeout_s=10)
            assert worker.alive
        finally:
            proxy.up()
        wait_caught_up(group, [topic], timeout_s=180)
    finally:
        worker.stop()
    assert searched_state(es, prefix) == expected_docs(messages)
    assert read_topic(dlq, timeout_s=2, expect=0) == []
    assert "sink down" in worker.log() and "sink back up" in worker.log()
