"""Draining the topic with ``fanout run``: one sink alone, every sink in one process, or every
sink in its own process at the same time (the production layout: one Deployment per sink).

Each configuration gets fresh consumer groups and fresh target names (PostgreSQL schema,
Elasticsearch index prefix, ClickHouse table prefix), so nothing is left from a previous one.
The worker runs this checkout with the product's defaults unless a variant overrides settings
or names another code tree (``--variant``, ``bench/trees.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import clickhouse_connect
import psycopg
from elasticsearch import Elasticsearch
from psycopg import sql

from bench import env, trees
from bench.probes import Drain, LagWatcher, TreeSampler
from bench.stream import Stream, spec_of
from bench.trees import TreeWorker

SINKS = ("postgres", "elasticsearch", "clickhouse")
WORKDIR = Path(__file__).resolve().parent / "results" / "tmp"
DRAIN_TIMEOUT_S = 1800


def names(run: str) -> dict[str, str]:
    return {
        "prefix": f"bench-{run}",
        "schema": f"bench_{run}",
        "index_prefix": f"bench_{run}_",
        "ch_prefix": f"bench_{run}_",
    }


Overrides = dict[str, Any]  # dotted settings path -> value, see apply_overrides


@dataclass(frozen=True)
class Variant:
    """What a ``--variant`` changes: worker settings, the code tree workers start from, and the
    stream: ``placeholders`` is the share of updates carrying Debezium's unavailable-value
    placeholder (``stream.with_placeholders``; the same changes, another topic)."""

    overrides: Overrides = field(default_factory=dict)
    tree: Path = trees.REPO
    placeholders: float = 0.0


DEFAULTS = Variant()


def worker_config(
    topic: str, run: str, sinks: tuple[str, ...], port: int = 0, overrides: Overrides | None = None
) -> dict[str, Any]:
    n = names(run)
    section: dict[str, dict[str, Any]] = {
        "postgres": {"schema": n["schema"]},
        "elasticsearch": {"index_prefix": n["index_prefix"]},
        "clickhouse": {"mode": "server", "routing": {"target_format": n["ch_prefix"] + "{table}"}},
    }
    config: dict[str, Any] = {
        "kafka": {
            "topics": [topic],
            "group_prefix": n["prefix"],
            "dlq_prefix": f"{n['prefix']}.dlq",
        },
        "metrics": {"port": port},
        "logging": {"format": "text", "level": "WARNING"},
        "sinks": {name: {"enabled": True, **section[name]} for name in sinks},
    }
    return apply_overrides(config, overrides or {})


def apply_overrides(config: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """Set dotted paths in the worker's YAML config: ``sinks.*.batch.max_wait_ms`` sets it for
    every enabled sink; after ``kafka.extra.`` the rest is one librdkafka key."""
    for path, value in overrides.items():
        if path.startswith("kafka.extra."):
            config["kafka"].setdefault("extra", {})[path.removeprefix("kafka.extra.")] = value
            continue
        head, _, rest = path.partition(".*.")
        if rest:
            for section in _at(config, head).values():
                _set(section, rest, value)
        else:
            _set(config, path, value)
    return config


def _at(config: dict[str, Any], path: str) -> dict[str, Any]:
    node = config
    for part in path.split("."):
        node = node.setdefault(part, {})
    return node


def _set(config: dict[str, Any], path: str, value: Any) -> None:
    parent, _, leaf = path.rpartition(".")
    (_at(config, parent) if parent else config)[leaf] = value


def drain(
    stream: Stream, sinks: tuple[str, ...], variant: Variant = DEFAULTS
) -> tuple[Drain, dict[str, bool]]:
    """Start ``fanout run`` with ``sinks`` enabled and wait until every sink's group is at lag 0."""
    env.apply_devstack_defaults()
    run = env.new_id()
    config = worker_config(stream.topic, run, sinks, overrides=variant.overrides)
    sink = sinks[0] if len(sinks) == 1 else None
    worker = TreeWorker(sink, config, WORKDIR, tree=variant.tree)
    watcher = LagWatcher(env.bootstrap(), stream.topic, stream.ends)
    started = time.monotonic()
    worker.start()
    assert worker.process is not None
    sampler = TreeSampler(worker.process.pid).start()
    try:
        first, seconds = watcher.wait_all_drained(
            _groups(run, sinks), started, lambda: worker.alive, DRAIN_TIMEOUT_S
        )
        rss, cpu = sampler.stop()
        worker.verify()
    except Exception:
        print(worker.log()[-3000:])
        raise
    finally:
        worker.stop()
    return Drain(seconds, first, rss, cpu, watcher.errors), converged(stream, run, sinks)


def _groups(run: str, sinks: tuple[str, ...]) -> list[str]:
    return [f"{names(run)['prefix']}-{sink}" for sink in sinks]


def drain_separately(
    stream: Stream, sinks: tuple[str, ...], variant: Variant = DEFAULTS
) -> tuple[Drain, dict[str, bool]]:
    """``fanout run --sink X`` for each sink, all started at once, until every group is at lag 0.

    Drain and first-commit times are the slowest sink's; CPU seconds are summed; peak RSS is the
    highest single process's, ``peak_rss_sum_mib`` the sum of each process's peak.
    """
    env.apply_devstack_defaults()
    run = env.new_id()
    config = worker_config(stream.topic, run, sinks, overrides=variant.overrides)
    workers = [TreeWorker(sink, config, WORKDIR, tree=variant.tree) for sink in sinks]
    watcher = LagWatcher(env.bootstrap(), stream.topic, stream.ends)
    started = time.monotonic()
    samplers = [TreeSampler(_pid(worker.start())).start() for worker in workers]
    try:
        first, seconds = watcher.wait_all_drained(
            _groups(run, sinks), started, lambda: all(w.alive for w in workers), DRAIN_TIMEOUT_S
        )
        used = [sampler.stop() for sampler in samplers]
        for worker in workers:
            worker.verify()
    except Exception:
        for worker in workers:
            print(worker.log()[-2000:])
        raise
    finally:
        for worker in workers:
            worker.stop()
    rss = [r for r, _ in used]
    drained = Drain(seconds, first, max(rss), sum(c for _, c in used), watcher.errors, sum(rss))
    return drained, converged(stream, run, sinks)


def _pid(worker: TreeWorker) -> int:
    assert worker.process is not None
    return worker.process.pid


def converged(stream: Stream, run: str, sinks: tuple[str, ...]) -> dict[str, bool]:
    """Whether each sink holds as many live rows per table as the final state has."""
    expected = {spec_of(t).table: len(rows) for t, rows in stream.final.items()}
    counters = {"postgres": _pg_counts, "elasticsearch": _es_counts, "clickhouse": _ch_counts}
    result = {}
    for sink in sinks:
        try:
            result[sink] = counters[sink](run, list(expected)) == expected
        except Exception as exc:  # a count that fails is reported, not fatal
            print(f"  count check of {sink} failed: {exc}")
            result[sink] = False
    return result


def _pg_counts(run: str, tables: list[str]) -> dict[str, int]:
    schema = names(run)["schema"]
    with psycopg.connect(**env.settings().sinks.postgres.conninfo()) as conn:
        return {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, t))
            ).fetchone()[0]  # type: ignore[index]
            for t in tables
        }


def _es_counts(run: str, tables: list[str]) -> dict[str, int]:
    prefix = names(run)["index_prefix"]
    # A loaded machine answers slowly; a timeout here would report a converged drain as "NO".
    with Elasticsearch(env.settings().sinks.elasticsearch.hosts, request_timeout=60) as es:
        es.indices.refresh(index=f"{prefix}*")
        return {t: int(es.count(index=prefix + t)["count"]) for t in tables}


def _ch_counts(run: str, tables: list[str]) -> dict[str, int]:
    ch = env.settings().sinks.clickhouse
    client = clickhouse_connect.get_client(host=ch.host or "127.0.0.1", port=ch.port)
    prefix = names(run)["ch_prefix"]
    return {
        t: int(str(client.command(f"SELECT count() FROM `{prefix}{t}_current`"))) for t in tables
    }
