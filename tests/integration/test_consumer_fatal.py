"""Fatal consumer errors end to end: real Kafka, `fanout run --sink postgres` processes.

Static group membership (``kafka.group_instance_id``) is where librdkafka declares a consumer
dead (``_FATAL``): a member fenced out by another process with the same id, or a member refused
because a crashed predecessor still holds the id (KIP-848 protocol). A dead consumer must not
leave a worker that looks alive and moves nothing.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import psycopg
import pytest

from tests.integration.runtime_support import Pipeline, all_tables_state, diff, oracle, stream
from tests.integration.test_runtime_error_classes import free_port, get
from tests.support.debezium import produce_stream
from tests.support.pipeline import WorkerProcess, wait_caught_up, wait_for


def static_member(pipeline: Pipeline, member: str, port: int, **kafka: Any) -> dict[str, Any]:
    config = pipeline.config()
    config["kafka"].update(group_instance_id=member, **kafka)
    config["metrics"] = {"port": port}
    config["sinks"]["postgres"]["config_error_exit_s"] = 5
    return config


def test_a_member_fenced_by_another_with_its_id_says_why_and_exits_2_the_other_goes_on(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[WorkerProcess]
) -> None:
    messages = stream(2000, seed=31)
    produce_stream(pipeline.topic, messages[:1000])
    first_port, second_port = free_port(), free_port()
    first = WorkerProcess(
        "postgres", static_member(pipeline, "pod-0", first_port), pipeline.workdir
    )
    workers.append(first.start())
    wait_caught_up(pipeline.group, [pipeline.topic])

    second = WorkerProcess(
        "postgres", static_member(pipeline, "pod-0", second_port), pipeline.workdir
    )
    workers.append(second.start())
    body = wait_for(lambda: _config_error(get(first_port, "/healthz")), 90, "/healthz 503")
    reason = body["sinks"]["postgres"]["reason"]
    assert reason.startswith("configuration error: Kafka fenced this consumer out")
    assert "'pod-0'" in reason and "kafka.group_instance_id" in reason
    status, ready = get(first_port, "/readyz")
    assert status == 503 and ready["sinks"]["postgres"]["config_error"]

    assert first.wait(timeout_s=60) == 2, first.log()[-3000:]
    said = [line for line in first.log().splitlines() if "configuration error" in line]
    assert len(said) == 1, said
    assert json.loads(said[0])["error_class"] == "configuration"
    assert "Traceback" not in first.log()

    produce_stream(pipeline.topic, messages[1000:])  # the member that holds the id goes on
    wait_caught_up(pipeline.group, [pipeline.topic], timeout_s=120)
    assert second.alive, second.log()[-3000:]
    actual, expected = all_tables_state(pg, pipeline.schema), oracle(messages)
    assert actual == expected, diff(actual, expected)


def _config_error(answer: tuple[int, dict[str, Any]]) -> dict[str, Any] | None:
    status, body = answer
    return body if status == 503 and body["sinks"]["postgres"]["config_error"] else None


@pytest.mark.slow  # waits out the broker's session timeout of the killed member (45 s)
def test_a_static_member_restarted_after_a_crash_is_refused_then_joins_again_kip848(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[WorkerProcess]
) -> None:
    messages = stream(2000, seed=32)
    produce_stream(pipeline.topic, messages[:1000])
    kip848 = {"extra": {"group.protocol": "consumer"}}
    port = free_port()
    config = static_member(pipeline, "pod-0", port, **kip848)
    config["sinks"]["postgres"]["config_error_exit_s"] = 180  # the refusal lasts ~45 s
    crashed = WorkerProcess("postgres", config, pipeline.workdir)
    workers.append(crashed.start())
    wait_caught_up(pipeline.group, [pipeline.topic])
    crashed.signal(signal.SIGKILL)
    crashed.wait()

    produce_stream(pipeline.topic, messages[1000:])
    restarted = WorkerProcess("postgres", config, pipeline.workdir)
    workers.append(restarted.start())
    body = wait_for(lambda: _refused(get(port, "/readyz")), 60, "/readyz 503: join refused")
    assert "has not left the group" in body["sinks"]["postgres"]["reason"]
    assert get(port, "/healthz")[0] == 200  # alive: it tries again
    wait_caught_up(pipeline.group, [pipeline.topic], timeout_s=150)
    assert restarted.alive, restarted.log()[-3000:]
    actual, expected = all_tables_state(pg, pipeline.schema), oracle(messages)
    assert actual == expected, diff(actual, expected)


def _refused(answer: tuple[int, dict[str, Any]]) -> dict[str, Any] | None:
    status, body = answer
    return body if status == 503 and body["sinks"]["postgres"]["group_error"] else None
