"""The benchmark run: one stream produced once, each configuration measured ``--runs`` times.

Configurations are interleaved (run 1 of everything, then run 2, ...) so drift on a shared
machine spreads over all of them. A drain during which Kafka stopped answering is measured
again once. Partial results are written after every round.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import drains, env, latency, limits, machine, peer, report, stream

CONFIGS = ("raw", "direct", "postgres", "elasticsearch", "clickhouse", "all", "connect", "latency")
RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parents[1]
PEER_FAILURES: list[str] = []


def wait_stack(timeout_s: float = 600) -> None:
    """Other engineers' tests stop and start services; measure only with all four up."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = subprocess.run(["scripts/devstack", "status"], cwd=REPO, capture_output=True)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"local stack not up:\n{done.stdout.decode()}")
        print("  waiting for the local stack ...", flush=True)
        time.sleep(5)  # polling interval of a deadline-bounded wait


def run(args: argparse.Namespace, command: str) -> int:
    env.apply_devstack_defaults()
    wait_stack()
    only = [c for c in args.only.split(",") if c]
    unknown = set(only) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"--only: unknown {sorted(unknown)}; known: {','.join(CONFIGS)}")
    name = args.out or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "runs": args.runs,
        "machine": machine.facts(),
    }
    started = time.monotonic()
    print(f"generating {args.events} events over {args.keys} keys ...", flush=True)
    messages = stream.generate(args.events, args.keys, args.seed)
    the_stream = stream.produce_once(f"bench_{env.new_id()}.inventory", messages)
    del messages
    result["stream"] = {
        **the_stream.facts,
        "topic": the_stream.topic,
        "keys": args.keys,
        "partitions": stream.PARTITIONS,
        "final_rows": {t: len(rows) for t, rows in the_stream.final.items()},
    }
    print(f"produced: {json.dumps(result['stream'])}", flush=True)
    samples: dict[str, list[dict[str, Any]]] = {}
    for round_no in range(1, args.runs + 1):
        for config in only:
            if config == "connect" and PEER_FAILURES:
                continue
            if config != "latency":
                _measure(config, the_stream, samples, round_no)
        _write(name, result, samples, the_stream.events)
    if "latency" in only:
        result["latency"] = _latency(args)
    _write(name, result, samples, the_stream.events)
    print(f"done in {time.monotonic() - started:.0f}s: bench/results/{name}.{{json,md,png}}")
    return 0


def _measure(
    config: str, the_stream: stream.Stream, samples: dict[str, list[dict[str, Any]]], n: int
) -> None:
    for attempt in (1, 2):
        wait_stack()
        print(f"[run {n}] {config} ...", flush=True)
        measured = _once(config, the_stream)
        disturbed = any(sample.get("disturbed") for sample in measured.values())
        if not disturbed or attempt == 2:
            break
        print(f"  Kafka stopped answering during {config}; measuring again", flush=True)
    for key, sample in measured.items():
        samples.setdefault(key, []).append(sample)
        print(f"  {key}: {json.dumps(sample)}", flush=True)


def _once(config: str, the_stream: stream.Stream) -> dict[str, dict[str, Any]]:
    if config == "raw":
        return {"raw_consume": {"seconds": limits.raw_consume(the_stream)}}
    if config == "direct":
        final = the_stream.final
        return {
            "direct_postgres": {"seconds": limits.postgres_copy(final)},
            "direct_es_parallel": {"seconds": limits.elasticsearch_load(final, parallel=True)},
            "direct_es_bulk": {"seconds": limits.elasticsearch_load(final, parallel=False)},
            "direct_clickhouse": {"seconds": limits.clickhouse_insert(final)},
        }
    if config == "connect":
        try:
            drained, prefix = peer.drain(the_stream)
        except (RuntimeError, TimeoutError) as exc:  # recorded, not fatal: the rest goes on
            print(f"  the peer failed: {exc}; not measured again in this run", flush=True)
            PEER_FAILURES.append(str(exc))
            return {}
        ok = peer.converged(the_stream, prefix)
        return {"kafka_connect_jdbc": _drain_sample(drained, ok)}
    sinks = drains.SINKS if config == "all" else (config,)
    drained, converged = drains.drain(the_stream, sinks)
    return {config: _drain_sample(drained, all(converged.values()))}


def _drain_sample(drained: Any, ok: bool) -> dict[str, Any]:
    sample = asdict(drained)
    sample["converged"] = ok
    for key in ("seconds", "first_commit_s", "peak_rss_mib", "cpu_s"):
        sample[key] = round(sample[key], 3)
    return sample


def _latency(args: argparse.Namespace) -> dict[str, Any]:
    needed = latency.WARMUP + args.latency_rate * args.latency_seconds
    print(f"generating {needed} events for the latency runs ...", flush=True)
    messages = stream.generate(needed, args.keys, args.seed + 1)
    runs = []
    for n in range(1, args.runs + 1):
        wait_stack()
        print(f"[run {n}] latency at {args.latency_rate}/s for {args.latency_seconds}s ...")
        measured = latency.measure(messages, args.latency_rate, args.latency_seconds)
        print(f"  {json.dumps(measured)}", flush=True)
        runs.append(measured)
    return {
        "rate": args.latency_rate,
        "seconds": args.latency_seconds,
        "runs": len(runs),
        "samples": runs,
        "summary": _latency_summary(runs),
    }


def _latency_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for measure in ("visible", "metric"):
        summary[measure] = {
            p: report.spread([r[measure][p] for r in runs if p in r[measure]])
            for p in ("p50", "p95", "p99")
            if any(p in r[measure] for r in runs)
        }
    for key in ("peak_rss_mib", "achieved_rate", "unseen"):
        summary[key] = report.spread([float(r[key]) for r in runs])
    return summary


def _write(
    name: str, result: dict[str, Any], samples: dict[str, list[dict[str, Any]]], events: int
) -> None:
    result["samples"] = samples
    result["peer_failures"] = PEER_FAILURES
    result["summary"] = report.summarise(samples, events)
    result["ratios"] = report.ratios(result["summary"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text(report.markdown(result))
    if result["summary"]:
        report.chart(result, RESULTS / f"{name}.png")


def profile(args: argparse.Namespace) -> int:
    from bench import profiling

    return profiling.profile(args)
