"""How long a worker restarted after SIGKILL takes to commit again: ``python -m bench.rejoin``.

A SIGKILLed consumer never leaves its group: the broker holds its partitions until its session
times out, and a new member gets nothing before. For each consumer-group configuration, and
``--runs`` times:

1. a fresh 6-partition topic and group; ``fanout run --sink postgres`` drains the first half of
   a stream (``fresh``: start to first commit, a new member in an empty group);
2. SIGKILL, the second half produced, the same worker started again at once;
3. ``rejoin``: from that start to the first commit past the offsets committed before the kill;
   ``caught up``: to the end of the topic. ``gap`` is kill to restart.

Configurations: the defaults (``kafka.session_timeout_ms`` 10 s), Kafka's 45 s, 6 s (the
brokers' minimum), static membership (``kafka.group_instance_id``, the same id after the
restart, as a StatefulSet pod has) and the KIP-848 consumer protocol (``group.protocol=consumer``,
with and without static membership).
Results: a table on stdout and ``bench/results/rejoin-<date>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import drains, env, trees
from bench.trees import TreeWorker
from tests.support.debezium import generate_stream, produce_stream
from tests.support.pipeline import (
    WorkerProcess,
    committed_offsets,
    create_topic,
    end_offsets,
    wait_for,
)

RESULTS = Path(__file__).resolve().parent / "results"
WORKDIR = RESULTS / "tmp" / "rejoin"
# What each configuration sets on top of the worker defaults ("{run}" is the trial's id).
CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},  # session_timeout_ms 10 s
    "session45s": {"kafka.session_timeout_ms": 45_000},  # Kafka's default, fanout's until 2026-12
    "static": {"kafka.group_instance_id": "rejoin-{run}"},
    "session6s": {"kafka.session_timeout_ms": 6_000},
    "kip848": {"kafka.extra.group.protocol": "consumer"},
    "kip848+static": {
        "kafka.extra.group.protocol": "consumer",
        "kafka.group_instance_id": "rejoin-{run}",
    },
}
TIMEOUT_S = 120


def trial(name: str, events: int, tree: Path = trees.REPO) -> dict[str, Any]:
    run = env.new_id()
    overrides = {
        k: v.format(run=run) if isinstance(v, str) else v for k, v in CONFIGS[name].items()
    }
    topic = create_topic(f"bench_rejoin_{run}", partitions=6)
    messages = list(generate_stream(events, n_keys=max(50, events // 10), seed=7))
    half = len(messages) // 2
    produce_stream(topic, messages[:half])
    config = drains.worker_config(topic, run, ("postgres",), overrides=overrides)
    group = f"{drains.names(run)['prefix']}-postgres"
    worker = TreeWorker("postgres", config, WORKDIR, {"PYTHONFAULTHANDLER": "1"}, tree=tree)
    try:
        started = time.monotonic()
        worker.start()
        fresh = _until(lambda: _moved(group, topic, {}), worker, "first commit") - started
        _until(lambda: _at_end(group, topic), worker, "first half drained")
        before = committed_offsets(group, [topic])
        worker.signal(signal.SIGKILL)
        worker.wait(30)
        killed = time.monotonic()
        produce_stream(topic, messages[half:])
        restarted = time.monotonic()
        worker.start()
        try:
            rejoin = _until(lambda: _moved(group, topic, before), worker, "commit after restart")
            caught_up = _until(lambda: _at_end(group, topic), worker, "second half drained")
        except AssertionError as exc:  # measured as "never" (within TIMEOUT_S), with the reason
            return {"fresh_s": fresh, "gap_s": restarted - killed, "failed": _why(exc, worker)}
    except Exception:
        print(worker.log()[-3000:], file=sys.stderr)
        raise
    finally:
        worker.stop()
        _drop_schema(drains.names(run)["schema"])
    return {
        "fresh_s": fresh,
        "gap_s": restarted - killed,
        "rejoin_s": rejoin - restarted,
        "caught_up_s": caught_up - restarted,
    }


def _why(exc: AssertionError, worker: WorkerProcess) -> str:
    """The assertion, and the worker's first error or fatal log line if it has one."""
    lines = [x for x in worker.log().splitlines() if " ERROR " in x or " CRITICAL " in x]
    code = worker.process.poll() if worker.process else None
    said = lines[0][24:300] if lines else "-"
    return f"{str(exc).splitlines()[0][:120]}; worker exit code {code}, its first error: {said}"


def _until(condition: Callable[[], bool], worker: WorkerProcess, what: str) -> float:
    def check() -> bool:
        if not worker.alive:
            raise AssertionError(f"worker exited while waiting for {what}")
        return condition()

    wait_for(check, TIMEOUT_S, what, interval_s=0.1)
    return time.monotonic()


def _moved(group: str, topic: str, before: dict[tuple[str, int], int]) -> bool:
    now = committed_offsets(group, [topic])
    return any(offset >= 0 and offset > before.get(tp, -1) for tp, offset in now.items())


def _at_end(group: str, topic: str) -> bool:
    ends, now = end_offsets([topic]), committed_offsets(group, [topic])
    return all(now.get(tp, -1) >= end for tp, end in ends.items() if end > 0)


def _drop_schema(schema: str) -> None:
    with psycopg.connect(**env.settings().sinks.postgres.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def summarise(results: dict[str, list[dict[str, Any]]]) -> str:
    head = (
        "| configuration | settings | rejoin s: median (min-max) | caught up s | fresh start s "
        "| gap s |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for name, trials in results.items():
        settings = ", ".join(f"{k}={v}" for k, v in CONFIGS[name].items()) or "(defaults)"

        def col(key: str, trials: list[dict[str, Any]] = trials) -> str:
            values = [t[key] for t in trials if key in t]
            failed = len(trials) - len(values)
            never = f"{failed} of {len(trials)} none within {TIMEOUT_S} s" if failed else ""
            if not values:
                return never
            text = f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"
            return f"{text}; {never}" if never else text

        lines.append(
            f"| {name} | {settings} | {col('rejoin_s')} | {col('caught_up_s')} | "
            f"{col('fresh_s')} | {col('gap_s')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rejoin", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--only", default=",".join(CONFIGS), help="comma-separated configurations")
    parser.add_argument(
        "--tree",
        type=trees.resolve,
        default=trees.REPO,
        help="start the workers from this checkout (default: this one)",
    )
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configuration(s) {sorted(unknown)}; known: {', '.join(CONFIGS)}")
    env.apply_devstack_defaults()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_ in range(args.runs):  # interleaved: every configuration once per round
        for name in names:
            measured = trial(name, args.events, args.tree)
            results[name].append(measured)
            figures = ", ".join(
                f"{k} {v:.1f}" if isinstance(v, float) else f"{k}: {v}" for k, v in measured.items()
            )
            print(f"round {round_ + 1} {name}: {figures}", flush=True)
    table = summarise(results)
    print(table)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"rejoin-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"rejoin-{stamp}.md").write_text(
        f"`python -m bench.rejoin {' '.join(argv or sys.argv[1:])}`\n\n{table}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
