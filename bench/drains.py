"""Draining the topic with ``fanout run``: one sink alone, or every sink in one process.

Each configuration gets fresh consumer groups and fresh target names (PostgreSQL schema,
Elasticsearch index prefix, ClickHouse table prefix), so nothing is left from a previous one.
The worker runs with the product's default batch settings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import clickhouse_connect
import psycopg
from elasticsearch import Elasticsearch
from psycopg import sql

from bench import env
from bench.probes import Drain, LagWatcher, TreeSampler
from bench.stream import Stream, spec_of
from tests.support.pipeline import WorkerProcess

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


def worker_config(topic: str, run: str, sinks: tuple[str, ...], port: int = 0) -> dict[str, Any]:
    n = names(run)
    section: dict[str, dict[str, Any]] = {
        "postgres": {"schema": n["schema"]},
        "elasticsearch": {"index_prefix": n["index_prefix"]},
        "clickhouse": {"mode": "server", "routing": {"target_format": n["ch_prefix"] + "{table}"}},
    }
    return {
        "kafka": {
            "topics": [topic],
            "group_prefix": n["prefix"],
            "dlq_prefix": f"{n['prefix']}.dlq",
        },
        "metrics": {"port": port},
        "logging": {"format": "text", "level": "WARNING"},
        "sinks": {name: {"enabled": True, **section[name]} for name in sinks},
    }


def drain(stream: Stream, sinks: tuple[str, ...]) -> tuple[Drain, dict[str, bool]]:
    """Start ``fanout run`` with ``sinks`` enabled and wait until every sink's group is at lag 0."""
    env.apply_devstack_defaults()
    run = env.new_id()
    config = worker_config(stream.topic, run, sinks)
    worker = WorkerProcess(sinks[0] if len(sinks) == 1 else None, config, WORKDIR)
    watcher = LagWatcher(env.bootstrap(), stream.topic, stream.ends)
    started = time.monotonic()
    worker.start()
    assert worker.process is not None
    sampler = TreeSampler(worker.process.pid).start()
    try:
        first, seconds = 0.0, 0.0
        for sink in sinks:  # each group's drain time is measured from the same start
            f, s = watcher.wait_drained(
                f"{names(run)['prefix']}-{sink}", started, lambda: worker.alive, DRAIN_TIMEOUT_S
            )
            first, seconds = max(first, f), max(seconds, s)
        rss, cpu = sampler.stop()
    except Exception:
        print(worker.log()[-3000:])
        raise
    finally:
        worker.stop()
    return Drain(seconds, first, rss, cpu, watcher.errors), converged(stream, run, sinks)


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
    with Elasticsearch(env.settings().sinks.elasticsearch.hosts) as es:
        es.indices.refresh(index=f"{prefix}*")
        return {t: int(es.count(index=prefix + t)["count"]) for t in tables}


def _ch_counts(run: str, tables: list[str]) -> dict[str, int]:
    ch = env.settings().sinks.clickhouse
    client = clickhouse_connect.get_client(host=ch.host or "127.0.0.1", port=ch.port)
    prefix = names(run)["ch_prefix"]
    return {t: int(client.command(f"SELECT count() FROM `{prefix}{t}_current`")) for t in tables}
