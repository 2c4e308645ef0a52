"""End-to-end latency of the PostgreSQL sink at a steady produce rate.

Records are produced at a fixed rate with the current time as their Kafka timestamp. Two
measures, both reported:

* ``visible``: a poller queries the sink's tables (live rows and delete tombstones) every
  ``POLL_S`` for ``_fanout_version``; a change counts as visible at the start of the first query
  that sees its key at its version or newer. Resolution: the poll interval.
* ``metric``: the worker's own ``fanout_end_to_end_latency_seconds`` histogram (Kafka timestamp
  to batch committed), scraped before and after the steady phase, quantiles interpolated within
  its buckets (coarse: 0.25, 0.5, 1, 2.5 s ...).

A warm-up (tables created, group joined) is produced and drained before the clock starts.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import Producer
from psycopg import sql

from bench import env
from bench.drains import DEFAULTS, WORKDIR, Variant, names, worker_config
from bench.probes import LagWatcher, TreeSampler
from bench.stream import PARTITIONS, TABLES, end_offsets
from bench.trees import TreeWorker
from tests.support.debezium import Message
from tests.support.pipeline import create_topic

POLL_S = 0.05
WARMUP = 2000
TOMBSTONES = "__fanout_tombstones"
VERSION = "_fanout_version"


@dataclass
class Pending:
    """Produced changes not yet seen in the sink: table -> key -> [(version, produced_at)]."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    by_table: dict[str, dict[tuple[Any, ...], list[tuple[int, float]]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    latencies: list[float] = field(default_factory=list)
    count: int = 0

    def add(self, table: str, key: tuple[Any, ...], version: int, at: float) -> None:
        with self.lock:
            self.by_table[table].setdefault(key, []).append((version, at))
            self.count += 1

    def floor(self, table: str) -> int | None:
        with self.lock:
            versions = [v for entries in self.by_table[table].values() for v, _ in entries]
        return min(versions) if versions else None

    def seen(self, table: str, key: tuple[Any, ...], version: int, at: float) -> None:
        with self.lock:
            entries = self.by_table[table].get(key)
            if not entries:
                return
            left = [(v, t) for v, t in entries if v > version]
            self.latencies.extend(at - t for v, t in entries if v <= version)
            if left:
                self.by_table[table][key] = left
            else:
                del self.by_table[table][key]

    def outstanding(self) -> int:
        with self.lock:
            return sum(len(e) for t in self.by_table.values() for e in t.values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _producer() -> Producer:
    return Producer(
        {
            "bootstrap.servers": env.bootstrap(),
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "compression.type": "lz4",
            "enable.idempotence": True,
        }
    )


def _produce(producer: Producer, topic: str, message: Message) -> float:
    now = time.time()
    producer.produce(topic, key=message.key, value=message.value, timestamp=int(now * 1000))
    producer.poll(0)
    return now


def measure(
    messages: list[Message], rate: int, seconds: int, variant: Variant = DEFAULTS
) -> dict[str, Any]:
    """One steady-rate run on a fresh topic and schema; ``messages`` must hold enough records."""
    env.apply_devstack_defaults()
    run = env.new_id()
    topic = create_topic(f"bench_latency_{run}", partitions=PARTITIONS)
    port = _free_port()
    config = worker_config(topic, run, ("postgres",), port, variant.overrides)
    worker = TreeWorker("postgres", config, WORKDIR, tree=variant.tree).start()
    assert worker.process is not None
    sampler = TreeSampler(worker.process.pid).start()
    try:
        producer = _producer()
        for message in messages[:WARMUP]:
            _produce(producer, topic, message)
        producer.flush(30)
        watcher = LagWatcher(env.bootstrap(), topic, end_offsets(topic))
        watcher.wait_drained(
            f"{names(run)['prefix']}-postgres", time.monotonic(), lambda: worker.alive, 120
        )
        before = _scrape(port)
        steady = messages[WARMUP : WARMUP + rate * seconds]
        pending = Pending()
        stop = threading.Event()
        poller = threading.Thread(
            target=_poll, args=(names(run)["schema"], pending, stop), daemon=True
        )
        poller.start()
        produced_s = _steady(producer, topic, steady, rate, pending)
        deadline = time.monotonic() + 60
        while pending.outstanding() and time.monotonic() < deadline:
            time.sleep(POLL_S)  # polling interval of a deadline-bounded wait
        stop.set()
        poller.join(timeout=5)
        after = _scrape(port)
        rss, cpu = sampler.stop()
        worker.verify()
    finally:
        worker.stop()
    return {
        "rate": rate,
        "seconds": seconds,
        "achieved_rate": round(len(steady) / produced_s, 1),
        "changes": pending.count,
        "unseen": pending.outstanding(),
        "visible": _quantiles(pending.latencies),
        "metric": _histogram_quantiles(before, after),
        "peak_rss_mib": round(rss, 1),
        "cpu_s": round(cpu, 2),
    }


def _steady(
    producer: Producer, topic: str, messages: list[Message], rate: int, pending: Pending
) -> float:
    started = time.monotonic()
    for i, message in enumerate(messages):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the producer, not synchronisation
        at = _produce(producer, topic, message)
        if message.value is not None:
            spec = message.event.spec
            pending.add(spec.table, spec.key_tuple(message.event.key), message.version, at)
    producer.flush(30)
    return time.monotonic() - started


def _poll(schema: str, pending: Pending, stop: threading.Event) -> None:
    with psycopg.connect(**env.settings().sinks.postgres.conninfo(), autocommit=True) as conn:
        while not stop.is_set():
            for table in list(pending.by_table):
                floor = pending.floor(table)
                if floor is None:
                    continue
                at = time.time()
                try:
                    rows = conn.execute(_visible_query(schema, table), (floor, floor)).fetchall()
                except psycopg.Error:
                    continue
                for *key, version in rows:
                    pending.seen(table, tuple(key), version, at)
            stop.wait(POLL_S)


def _visible_query(schema: str, table: str) -> sql.Composed:
    """Key and version of live rows and tombstones at or above a version floor."""
    spec = next(s for s in TABLES if s.table == table)
    return sql.SQL(
        "SELECT {keys}, {v} FROM {t} WHERE {v} >= %s"
        " UNION ALL SELECT {keys}, {v} FROM {tb} WHERE {v} >= %s"
    ).format(
        keys=sql.SQL(", ").join(map(sql.Identifier, spec.primary_key)),
        v=sql.Identifier(VERSION),
        t=sql.Identifier(schema, table),
        tb=sql.Identifier(schema, table + TOMBSTONES),
    )


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": round(ordered[-1], 3)}


def _scrape(port: int) -> dict[float, float]:
    """Cumulative bucket counts of the postgres sink's end-to-end latency histogram."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if (
            line.startswith("fanout_end_to_end_latency_seconds_bucket")
            and 'sink="postgres"' in line
        ):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return buckets


def _histogram_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    result: dict[str, float] = {}
    for name, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        rank, lower, below = p * total, 0.0, 0.0
        for bound, cumulative in zip(bounds, counts, strict=True):
            if cumulative >= rank and total:
                upper = bound if bound != float("inf") else lower
                share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
                result[name] = round(lower + (upper - lower) * share, 3)
                break
            lower, below = bound, cumulative
    return result
