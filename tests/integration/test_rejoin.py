"""A worker restarted after SIGKILL commits again within seconds with the default settings.

A SIGKILLed consumer never leaves its group: the broker keeps its partitions until its session
times out, and the restarted worker gets none before. With Kafka's 45 s that was ~45 s of
nothing after every crash; the default is now 10 s (bench/rejoin.py measured the options,
docs/OPERATIONS.md "Start-up, restart and rejoin").
"""

from __future__ import annotations

import signal
import time
from typing import Any

import psycopg

from tests.integration.runtime_support import Pipeline, all_tables_state, diff, oracle, stream
from tests.support.debezium import produce_stream
from tests.support.pipeline import WorkerProcess, committed_offsets, wait_caught_up, wait_for

REJOIN_BOUND_S = 20  # measured 9.6-12.9 s on the local stack; with a 45 s session: ~45 s


def test_a_worker_restarted_after_sigkill_commits_again_within_20_s(
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

    restarted = time.monotonic()
    worker.start()

    def committed_again() -> bool:
        assert worker.alive, worker.log()[-2000:]
        now = committed_offsets(pipeline.group, [pipeline.topic])
        return any(offset > before.get(tp, -1) for tp, offset in now.items())

    wait_for(committed_again, REJOIN_BOUND_S, "a commit after the restart", interval_s=0.1)
    assert time.monotonic() - restarted < REJOIN_BOUND_S
    wait_caught_up(pipeline.group, [pipeline.topic])
    actual, expected = all_tables_state(pg, pipeline.schema), oracle(messages)
    assert actual == expected, diff(actual, expected)
