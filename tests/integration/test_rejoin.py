"""A worker restarted after SIGKILL with the default settings takes its partitions back,
commits again and writes what arrived meanwhile.

A SIGKILLed consumer never leaves its group: the broker keeps its partitions until its session
times out, and the restarted worker gets none before. How long that takes is measured, not
asserted here: ``python -m bench.rejoin`` (docs/OPERATIONS.md "Start-up, restart and rejoin").
The deadline below only stops a hung test.
"""

from __future__ import annotations

import signal
from typing import Any

import psycopg

from tests.integration.runtime_support import Pipeline, all_tables_state, diff, oracle, stream
from tests.support.debezium import produce_stream
from tests.support.pipeline import WorkerProcess, committed_offsets, wait_caught_up, wait_for

HANG_GUARD_S = 180  # far above any session timeout: only a worker that never rejoins hits it


def test_a_worker_restarted_after_sigkill_commits_again_and_writes_the_rest(
    pipeline: Pipeline, pg: psycopg.Connection[Any], workers: list[Any]
) -> None:
    messages = stream(3000, seed=11)
    half = len(messages) // 2
    produce_stream(pipeline.topic, messages[:half])
    config = pipeline.config()
    del config["kafka"]["session_timeout_ms"]  # the default is what is tested
    worker = WorkerProcess("postgres", config, pipeline.workdir).start()
    workers.append(worker)
    wait_caught_up(pipeline.group, [pipeline.topic])
    before = committed_offsets(pipeline.group, [pipeline.topic])
    worker.signal(signal.SIGKILL)
    worker.wait(30)
    produce_stream(pipeline.topic, messages[half:])
    worker.start()

    def committed_again() -> bool:
        assert worker.alive, worker.log()[-2000:]
        now = committed_offsets(pipeline.group, [pipeline.topic])
        return any(offset > before.get(tp, -1) for tp, offset in now.items())

    wait_for(committed_again, HANG_GUARD_S, "a commit after the restart")
    wait_caught_up(pipeline.group, [pipeline.topic], timeout_s=HANG_GUARD_S)
    actual, expected = all_tables_state(pg, pipeline.schema), oracle(messages)
    assert actual == expected, diff(actual, expected)
