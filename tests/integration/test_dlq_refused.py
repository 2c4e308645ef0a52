"""A DLQ the brokers will never take a record into: real Kafka, a ``fanout run --sink postgres``
process, a DLQ topic created beforehand as a compacted topic (someone else's settings), which
refuses a keyless entry for good (INVALID_RECORD). It stands for the other final refusals of
the DLQ producer (a user without WRITE on the topic, a fatal producer error), which the local
broker (no authorizer) cannot be made to give: the worker stops as for a configuration error
(``/healthz`` 503 with the reason, one log line, exit 2 after ``config_error_exit_s``) with
nothing committed, instead of crashing with a traceback (exit 1)."""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.integration.runtime_support import Pipeline
from tests.integration.test_runtime_error_classes import free_port, get
from tests.support.pipeline import WorkerProcess, bootstrap, committed_offsets, produce, wait_for


def create_compacted(topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap()})
    new = NewTopic(
        topic, num_partitions=1, replication_factor=1, config={"cleanup.policy": "compact"}
    )
    admin.create_topics([new])[topic].result(timeout=30)


def test_a_dlq_that_refuses_its_records_stops_the_worker_with_a_configuration_error(
    pipeline: Pipeline, workers: list[WorkerProcess]
) -> None:
    dlq = f"{pipeline.prefix}.dlq.postgres"
    create_compacted(dlq)
    produce(pipeline.topic, [(None, b"not a Debezium message")])  # keyless, to the DLQ
    port = free_port()
    config = pipeline.config()
    config["metrics"] = {"port": port}
    config["sinks"]["postgres"]["config_error_exit_s"] = 3
    worker = WorkerProcess("postgres", config, pipeline.workdir)
    workers.append(worker.start())

    body = wait_for(lambda: _config_error(get(port, "/healthz")), 90, "/healthz 503")
    reason = body["sinks"]["postgres"]["reason"]
    assert reason.startswith(f"configuration error: the DLQ {dlq} refuses the records"), reason
    assert "kafka.dlq_prefix" in reason

    assert worker.wait(timeout_s=60) == 2, worker.log()[-3000:]
    said = [line for line in worker.log().splitlines() if "configuration error" in line]
    assert len(said) == 1, said
    assert json.loads(said[0])["error_class"] == "configuration"
    assert "Traceback" not in worker.log()
    committed = committed_offsets(pipeline.group, [pipeline.topic])
    assert all(offset < 0 for offset in committed.values()), committed  # none


def _config_error(answer: tuple[int, dict[str, Any]]) -> dict[str, Any] | None:
    status, body = answer
    return body if status == 503 and body["sinks"]["postgres"]["config_error"] else None
