"""``python -m bench profile --sink NAME``: where one sink's worker spends its time.

Produces a fresh stream, starts ``fanout run --sink NAME`` and records it with py-spy (all
threads, idle frames left out) until the group is at lag 0. Writes the collapsed stacks
(``bench/results/profile-<sink>.txt``, loadable in speedscope or flamegraph.pl) and prints the
top frames by own time and by inclusive time.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench import drains, env, stream
from bench.probes import LagWatcher
from tests.support.pipeline import WorkerProcess

RESULTS = Path(__file__).resolve().parent / "results"


def profile(args: argparse.Namespace) -> int:
    env.apply_devstack_defaults()
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy not found: pip install py-spy")
    messages = stream.generate(args.events, args.keys, args.seed)
    the_stream = stream.produce_once(f"bench_profile_{env.new_id()}.inventory", messages)
    del messages
    run = env.new_id()
    config = drains.worker_config(the_stream.topic, run, (args.sink,))
    worker = WorkerProcess(args.sink, config, drains.WORKDIR, env.connection_env()).start()
    assert worker.process is not None
    out = RESULTS / f"profile-{args.sink}.txt"
    spy = subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(worker.process.pid),
            "--format",
            "raw",
            "--rate",
            "100",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watcher = LagWatcher(env.bootstrap(), the_stream.topic, the_stream.ends)
    started = time.monotonic()
    try:
        _, seconds = watcher.wait_drained(
            f"{drains.names(run)['prefix']}-{args.sink}", started, lambda: worker.alive, 1800
        )
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        spy.wait(timeout=60)
        worker.stop()
    print(
        f"{args.sink}: {the_stream.events} events drained in {seconds:.1f}s "
        f"({the_stream.events / seconds:,.0f}/s); stacks in {out}"
    )
    print(summary(out))
    return 0


def summary(path: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in inclusive.most_common(top * 2)]
    return "\n".join(lines)
