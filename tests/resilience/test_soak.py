"""The soak (slow): bad input mixed into a valid stream while faults hit every sink.

On a private Kafka broker (tests/resilience/private_kafka.py, so restarting it disturbs no one
else), two `fanout run --sink X` workers of one group per sink, every store behind a TcpProxy.
Five phases, each a chunk of the valid stream with every kind of bad record mixed in, each
produced while a fault is under way:

1. a second worker joins each group mid-stream (a rebalance);
2. one worker of each group is SIGKILLed mid-stream and started again;
3. every store is down (connections refused and cut) for ``OUTAGE_S``;
4. every store hangs (connections open, no answer) for ``OUTAGE_S``;
5. the broker restarts.

Afterwards, per sink: no crash, committed to the end, every bad record in the DLQ with its
reason, the newest valid event of every key and nothing else (harness.check_sink). Recovery
times (fault over -> committed to the end) are measured and printed, never asserted;
docs/RELIABILITY.md reports them.

    python -m pytest -m slow tests/resilience -s
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from clickhouse_connect.driver.client import Client as ClickHouseClient
from elasticsearch import Elasticsearch

from tests.integration.conftest import Endpoints
from tests.resilience.harness import (
    Run,
    check_sink,
    committed_to_end,
    produce_records,
    summary,
)
from tests.resilience.private_kafka import PrivateKafka, java, kafka_libs
from tests.support.bad_input import FRESH_ID, SINKS, BadRecord, bad_records, interleave
from tests.support.debezium import DEFAULT_TABLES, PRODUCTS, Message, generate_stream
from tests.support.pipeline import wait_for
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

TABLES = (*DEFAULT_TABLES, PRODUCTS)
EVENTS = 20_000
PHASES = ("rebalance", "sigkill", "stores down", "stores hung", "broker restart")
OUTAGE_S = 15
CATCH_UP_S = 300


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateKafka]:
    libs, java_bin = kafka_libs(), java()
    if libs is None or java_bin is None:
        pytest.fail("no Kafka jars or java: run `scripts/devstack up` once", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="fanout-private-kafka-") as home:
        kafka = PrivateKafka(Path(home), libs, java_bin)
        kafka.format()
        kafka.start()
        # This test's topics, groups and DLQs live on the private broker: the helpers of
        # tests/support/pipeline.py and the workers (their config) are pointed at it.
        monkeypatch.setenv("FANOUT_KAFKA__BOOTSTRAP_SERVERS", kafka.bootstrap)
        try:
            yield kafka
        finally:
            kafka.stop()


@pytest.fixture
def proxies(endpoints: Endpoints) -> Iterator[dict[str, TcpProxy]]:
    """One TCP proxy per store, in front of the stack's PostgreSQL, Elasticsearch, ClickHouse."""
    es = urlsplit(endpoints.es_hosts[0])
    started = {
        "postgres": TcpProxy((endpoints.pg["host"], endpoints.pg["port"])),
        "elasticsearch": TcpProxy((es.hostname or "127.0.0.1", es.port or 9200)),
        "clickhouse": TcpProxy((endpoints.ch_host, endpoints.ch_port)),
    }
    for proxy in started.values():
        proxy.up()
    yield started
    for proxy in started.values():
        proxy.resume()
        proxy.down()


def through(proxy: TcpProxy, sink: str) -> dict[str, Any]:
    """The sink settings that send its store's traffic through ``proxy``."""
    if sink == "elasticsearch":
        return {"hosts": [proxy.url]}
    return {"host": "127.0.0.1", "port": proxy.port}


def chunks(messages: list[Message], n: int) -> list[list[Message]]:
    """``messages`` in ``n`` consecutive parts, never splitting a delete from its tombstone."""
    size, parts, start = len(messages) // n, [], 0
    for index in range(n):
        end = len(messages) if index == n - 1 else start + size
        while end < len(messages) and messages[end].value is None:
            end += 1
        parts.append(messages[start:end])
        start = end
    return parts


@pytest.mark.timeout(1800)  # five phases on a shared machine; each wait has its own deadline
def test_bad_input_under_faults_every_sink_converges(
    broker: PrivateKafka,
    proxies: dict[str, TcpProxy],
    endpoints: Endpoints,
    tmp_path: Path,
    pg_conninfo: dict[str, Any],
    clickhouse: ClickHouseClient,
    es: Elasticsearch,
) -> None:
    run = Run(endpoints, tmp_path)
    run.create()
    valid = list(generate_stream(EVENTS, n_keys=2000, seed=41))
    products = [
        m
        for m in generate_stream(50, n_keys=50, tables=(PRODUCTS,), seed=42)
        if m.event.kind == "insert"
    ]
    parts = chunks(valid, len(PHASES))
    bad: list[BadRecord] = []
    phase_bad: list[list[BadRecord]] = []
    for index, (name, part) in enumerate(zip(PHASES, parts, strict=True)):
        records = bad_records(part, products[index], first_id=FRESH_ID + 1000 * index)
        records = [dataclasses.replace(r, kind=f"{r.kind} [{name}]") for r in records]
        phase_bad.append(records)
        bad += records
    configs = {sink: run.config(sink, **through(proxies[sink], sink)) for sink in SINKS}
    recovery: dict[str, dict[str, float]] = {}
    started = time.monotonic()

    def produce(index: int) -> None:
        produce_records(run.topic, interleave(parts[index], phase_bad[index], seed=43 + index))

    def recovered(fault: str, since: float) -> None:
        """Wait until every sink committed to the end; note how long after ``since``."""
        pending = set(SINKS)

        def all_caught_up() -> bool:
            for sink in sorted(pending):
                if committed_to_end(run, sink):
                    recovery.setdefault(fault, {})[sink] = round(time.monotonic() - since, 1)
                    pending.discard(sink)
            return not pending

        wait_for(all_caught_up, CATCH_UP_S, f"every sink to catch up after {fault}", 0.5)

    # 1. a rebalance mid-stream: the second worker of each group joins while the first drains
    produce(0)
    first = {sink: run.start(sink, configs[sink]) for sink in SINKS}
    wait_for(lambda: all(committed_to_end(run, s, partly=True) for s in SINKS), 120, "progress")
    for sink in SINKS:
        run.start(sink, configs[sink])
    recovered("rebalance", time.monotonic())

    # 2. SIGKILL of one worker per group mid-stream, started again
    produce(1)
    for sink in SINKS:
        run.kill(first[sink])
    killed_at = time.monotonic()
    for sink in SINKS:
        first[sink] = run.start(sink, configs[sink])
    recovered("sigkill", killed_at)

    # 3. every store down
    with_outage(proxies, "down", lambda: produce(2))
    recovered("stores down", time.monotonic())

    # 4. every store hung
    with_outage(proxies, "hang", lambda: produce(3))
    recovered("stores hung", time.monotonic())

    # 5. the broker restarts while records are pending
    produce(4)
    broker.restart()
    recovered("broker restart", time.monotonic())

    # A connection of its own for the checks: the test's would not outlive a PostgreSQL restart
    # made by someone else on the shared stack meanwhile.
    with psycopg.connect(**endpoints.pg, autocommit=True) as pg:
        clients = (pg, clickhouse, es)
        verdicts = [check_sink(run, sink, valid, bad, TABLES, clients) for sink in SINKS]
    exits = run.stop_all()
    figures = {
        "test": "soak",
        "records": run.records(),
        "valid_records": len(valid),
        "bad_records": len(bad),
        "kinds": len(phase_bad[0]),
        "faults": list(PHASES),
        "outage_s": OUTAGE_S,
        "recovery_s": recovery,
        "exit_codes_on_sigterm": exits,
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(summary(figures))
    for verdict in verdicts:
        print(summary({"test": "soak", **verdict.figures}))
    problems = [f"{v.sink}: {problem}" for v in verdicts for problem in v.problems]
    problems += [
        f"{sink}: exit {code} on SIGTERM"
        for sink, codes in exits.items()
        for code in codes
        if code not in (0, None)
    ]
    assert not problems, "\n".join(problems)


def with_outage(proxies: dict[str, TcpProxy], how: str, during: Callable[[], None]) -> None:
    """Every store ``down`` (refused, connections cut) or ``hang`` (open, silent) for
    ``OUTAGE_S``, running ``during()`` meanwhile; then back."""
    for proxy in proxies.values():
        proxy.down() if how == "down" else proxy.hang()
    began = time.monotonic()
    during()
    wait_for(lambda: time.monotonic() - began >= OUTAGE_S, OUTAGE_S + 5, "the outage's length")
    for proxy in proxies.values():
        proxy.up() if how == "down" else proxy.resume()
