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

from bench import drains, env, latency, limits, machine, peer, report, stream, trees

CONFIGS = (
    "raw",
    "direct",
    "postgres",
    "elasticsearch",
    "clickhouse",
    "all3",
    "all",
    "snapshot",
    "connect",
    "latency",
)
LIMITS = ("raw", "direct", "connect")  # measured once a round, whatever the variants
Variants = dict[str, drains.Variant]  # "" = the product's defaults, this checkout
RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parents[1]
PEER_FAILURES: list[str] = []
VARIANT_SYNTAX = "NAME:PATH=VALUE|@TREE[;...]"  # items: settings overrides, at most one tree
PLACEHOLDERS = "stream.placeholders"  # a variant item that changes the stream, not settings


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
    variants = parse_variants(args.variant or [])
    for tree in {variant.tree for variant in variants.values()}:
        trees.compile_tree(tree)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "runs": args.runs,
        "variants": {name or "defaults": _described(v) for name, v in variants.items()},
        "trees": {name or "defaults": trees.facts(v.tree) for name, v in variants.items()},
        "machine": machine.facts(),
    }
    started = time.monotonic()
    print(f"generating {args.events} events over {args.keys} keys ...", flush=True)
    messages = stream.generate(args.events, args.keys, args.seed)
    the_stream = stream.produce_once(f"bench_{env.new_id()}.inventory", messages)
    streams = {"churn": the_stream}
    for share in sorted({v.placeholders for v in variants.values() if v.placeholders}):
        marked = stream.with_placeholders(messages, share, args.seed)
        name_ = f"churn@{share}"
        streams[name_] = stream.produce_once(f"{the_stream.topic}.placeholders{share}", marked)
        result[f"stream_{name_}"] = {
            **_facts(streams[name_], args.keys),
            "updates_with_placeholders": stream.placeholder_share(marked),
        }
        del marked
    if "snapshot" in only:
        snapshot = stream.snapshot_of(messages)
        streams["snapshot"] = stream.produce_once(f"{the_stream.topic}.snapshot", snapshot)
        del snapshot
    del messages
    result["stream"] = _facts(the_stream, args.keys)
    if "snapshot" in streams:
        result["snapshot_stream"] = _facts(streams["snapshot"], args.keys)
    print(f"produced: {json.dumps(result['stream'])}", flush=True)
    samples: dict[str, list[dict[str, Any]]] = {}
    for round_no in range(1, args.runs + 1):
        for config in only:
            if (config == "connect" and PEER_FAILURES) or config == "latency":
                continue
            for variant_name, variant in variants.items():
                if variant_name and config in LIMITS:
                    continue
                _measure(config, streams, samples, round_no, (variant_name, variant))
        _write(name, result, samples, the_stream.events)
    if "latency" in only:
        result["latency"] = _latency(args, variants)
    _write(name, result, samples, the_stream.events)
    print(f"done in {time.monotonic() - started:.0f}s: bench/results/{name}.{{json,md,png}}")
    return 0


def parse_variants(specs: list[str]) -> Variants:
    """``NAME:PATH=VALUE[;PATH=VALUE...]`` -> overrides (VALUE is JSON, else a string); an item
    ``@TREE`` starts the variant's workers from that checkout instead (``bench/trees.py``). The
    defaults ("") always come first so every variant has its A/B partner in the same round."""
    variants: Variants = {"": drains.DEFAULTS}
    for spec in specs:
        name, sep, items = spec.partition(":")
        if not sep or not name or name in variants or "@" in name:
            raise SystemExit(f"--variant: want {VARIANT_SYNTAX}, got {spec!r}")
        variants[name] = _variant([item for item in items.split(";") if item])
    return variants


def _variant(items: list[str]) -> drains.Variant:
    named = [item.removeprefix("@") for item in items if item.startswith("@")]
    if len(named) > 1:
        raise SystemExit(f"--variant: one @TREE a variant, got {named}")
    overrides = dict(_assignment(item) for item in items if not item.startswith("@"))
    placeholders = float(overrides.pop(PLACEHOLDERS, 0.0))
    if not 0.0 <= placeholders <= 1.0:
        raise SystemExit(f"--variant: {PLACEHOLDERS} is a share of the updates, 0 to 1")
    tree = trees.resolve(named[0]) if named else trees.REPO
    return drains.Variant(overrides, tree, placeholders)


def _described(variant: drains.Variant) -> dict[str, Any]:
    """A variant's items as given: settings overrides, and the stream's placeholders."""
    if not variant.placeholders:
        return variant.overrides
    return {**variant.overrides, PLACEHOLDERS: variant.placeholders}


def _assignment(text: str) -> tuple[str, Any]:
    path, sep, raw = text.partition("=")
    if not sep:
        raise SystemExit(f"--variant: {text!r} is not PATH=VALUE")
    try:
        return path, json.loads(raw)
    except json.JSONDecodeError:
        return path, raw


def _facts(the_stream: stream.Stream, keys: int) -> dict[str, Any]:
    return {
        **the_stream.facts,
        "topic": the_stream.topic,
        "keys": keys,
        "partitions": stream.PARTITIONS,
        "final_rows": {t: len(rows) for t, rows in the_stream.final.items()},
    }


def _measure(
    config: str,
    streams: dict[str, stream.Stream],
    samples: dict[str, list[dict[str, Any]]],
    n: int,
    named: tuple[str, drains.Variant],
) -> None:
    name, variant = named
    for attempt in (1, 2):
        wait_stack()
        print(f"[run {n}] {config}{' @' + name if name else ''} ...", flush=True)
        measured = _once(config, streams, variant)
        disturbed = any(sample.get("disturbed") for sample in measured.values())
        if not disturbed or attempt == 2:
            break
        print(f"  Kafka stopped answering during {config}; measuring again", flush=True)
    for key, sample in measured.items():
        key = f"{key}@{name}" if name else key
        samples.setdefault(key, []).append(sample)
        print(f"  {key}: {json.dumps(sample)}", flush=True)


def _once(
    config: str, streams: dict[str, stream.Stream], variant: drains.Variant
) -> dict[str, dict[str, Any]]:
    the_stream = streams[churn_of(variant)]
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
    if config == "snapshot":
        return {
            f"snapshot_{sink}": _drain_one(streams["snapshot"], sink, variant)
            for sink in drains.SINKS
        }
    if config == "all3":
        drained, converged = drains.drain_separately(the_stream, drains.SINKS, variant)
        return {config: _drain_sample(drained, all(converged.values()))}
    sinks = drains.SINKS if config == "all" else (config,)
    drained, converged = drains.drain(the_stream, sinks, variant)
    return {config: _drain_sample(drained, all(converged.values()))}


def churn_of(variant: drains.Variant) -> str:
    """The change stream a variant drains: the plain one, or the one with placeholders."""
    return f"churn@{variant.placeholders}" if variant.placeholders else "churn"


def _drain_one(the_stream: stream.Stream, sink: str, variant: drains.Variant) -> dict[str, Any]:
    drained, converged = drains.drain(the_stream, (sink,), variant)
    sample = _drain_sample(drained, converged[sink])
    sample["items"] = the_stream.events  # rows of the snapshot, for its rows/s
    return sample


def _drain_sample(drained: Any, ok: bool) -> dict[str, Any]:
    sample = asdict(drained)
    sample["converged"] = ok
    for key in ("seconds", "first_commit_s", "peak_rss_mib", "cpu_s", "peak_rss_sum_mib"):
        if sample[key] is not None:
            sample[key] = round(sample[key], 3)
    if sample["peak_rss_sum_mib"] is None:
        del sample["peak_rss_sum_mib"]
    return sample


def _latency(args: argparse.Namespace, variants: Variants) -> dict[str, Any]:
    """Steady-rate runs, variants interleaved; ``by_variant[""]`` holds the defaults'."""
    needed = latency.WARMUP + args.latency_rate * args.latency_seconds
    print(f"generating {needed} events for the latency runs ...", flush=True)
    messages = stream.generate(needed, args.keys, args.seed + 1)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for n in range(1, args.runs + 1):
        for name, variant in variants.items():
            wait_stack()
            label = f" @{name}" if name else ""
            print(f"[run {n}] latency{label} at {args.latency_rate}/s ...", flush=True)
            steady = (
                stream.with_placeholders(messages, variant.placeholders, args.seed)
                if variant.placeholders
                else messages
            )
            measured = latency.measure(steady, args.latency_rate, args.latency_seconds, variant)
            print(f"  {json.dumps(measured)}", flush=True)
            runs[name].append(measured)
    return {
        "rate": args.latency_rate,
        "seconds": args.latency_seconds,
        "runs": args.runs,
        "by_variant": {
            name: {"samples": r, "summary": _latency_summary(r)} for name, r in runs.items()
        },
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
