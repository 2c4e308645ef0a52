"""The fast subset: every kind of bad record (tests/support/bad_input.py) mixed into a valid
Debezium stream, one `fanout run --sink X` worker per sink, no fault. Each sink must stay up,
commit to the end, dead-letter exactly the records it must refuse (with their reasons and
headers: stage, class, origin; one too large for the DLQ topic stored truncated, saying so),
take the odd but valid ones, and hold the newest valid event of every key (PostgreSQL's rows
compared value by value).

The soak tests (test_soak.py, marked slow) run the same checks under faults.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from clickhouse_connect.driver.client import Client as ClickHouseClient
from elasticsearch import Elasticsearch

from tests.integration.conftest import Endpoints
from tests.integration.runtime_support import all_tables_state, diff, oracle
from tests.resilience.harness import Run, check_sink, own_keys, produce_records, summary
from tests.support.bad_input import SINKS, bad_records, interleave
from tests.support.debezium import DEFAULT_TABLES, PRODUCTS, generate_stream

TABLES = (*DEFAULT_TABLES, PRODUCTS)


@pytest.fixture
def run(endpoints: Endpoints, kafka_bootstrap: str, tmp_path: Path) -> Iterator[Run]:
    line = Run(endpoints, tmp_path)
    line.create()
    yield line
    line.stop_all()


def test_every_kind_of_bad_record_in_every_sink(
    run: Run, pg: psycopg.Connection[Any], clickhouse: ClickHouseClient, es: Elasticsearch
) -> None:
    valid = list(generate_stream(600, n_keys=150, seed=31))
    product = next(m for m in generate_stream(5, n_keys=10, tables=(PRODUCTS,), seed=32) if m.value)
    bad = bad_records(valid, product)
    produce_records(run.topic, interleave(valid, bad, seed=33))
    for sink in SINKS:
        run.start(sink)
    for sink in SINKS:
        run.wait_caught_up(sink, timeout_s=120)

    verdicts = [check_sink(run, sink, valid, bad, TABLES, (pg, clickhouse, es)) for sink in SINKS]
    for verdict in verdicts:
        print(summary({"test": "fast", "kinds": len(bad), **verdict.figures}))
    problems = [f"{v.sink}: {problem}" for v in verdicts for problem in v.problems]
    problems += [f"{v.sink}: DLQ duplicates" for v in verdicts if v.figures["dlq_duplicates"]]
    # PostgreSQL's rows value by value too (the others are compared by key and version)
    own = own_keys(bad)
    rows = all_tables_state(pg, run.prefix)
    rows = {
        t: {k: v for k, v in r.items() if (t.split(".")[-1], k[0]) not in own}
        for t, r in rows.items()
    }
    if rows != oracle(valid):
        problems.append(f"postgres rows: {diff(rows, oracle(valid))}")
    if not any("DLQ record truncated" in w.log() for w in run.workers["postgres"]):
        problems.append("postgres: no log line says a DLQ record was truncated")
    assert not problems, "\n".join(problems)
