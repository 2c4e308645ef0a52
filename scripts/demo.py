"""The main job on the local stack, end to end, in one command (`make demo`).

1. creates a topic and produces a realistic Debezium stream to it (inserts, updates, deletes
   and re-inserts over several tables, one a composite-key table);
2. runs `fanout run` with every sink enabled, each its own consumer group;
3. waits until every sink has caught up, checks each holds exactly the newest row per key,
   prints what each holds, and stops the service with SIGTERM.

Every run uses fresh names (topic, groups, schema, index prefix, table prefix), so it can be
run again and again on the same stack.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import clickhouse_connect  # noqa: E402
import psycopg  # noqa: E402
from elasticsearch import Elasticsearch  # noqa: E402
from psycopg import sql  # noqa: E402

from fanout.settings import load_settings  # noqa: E402
from tests.support.debezium import DEFAULT_TABLES, expected_state, generate_stream  # noqa: E402
from tests.support.pipeline import (  # noqa: E402
    WorkerProcess,
    caught_up,
    create_topic,
    produce,
    wait_for,
)

SINKS = ("postgres", "elasticsearch", "clickhouse")


def main() -> int:
    args = _parse()
    _use_devstack_connection_settings()
    run_id = uuid.uuid4().hex[:6]
    topic, prefix = f"demo_{run_id}.inventory", f"demo-{run_id}"
    print(f"demo {run_id}: topic {topic}, consumer groups {prefix}-<sink>")
    messages = list(generate_stream(args.events, n_keys=args.keys, seed=args.seed))
    create_topic(topic, partitions=6)
    started = time.monotonic()
    produce(topic, ((m.key, m.value) for m in messages))
    print(f"produced {len(messages)} Debezium messages in {time.monotonic() - started:.1f}s")

    worker = WorkerProcess(None, _config(topic, prefix, run_id), REPO / ".devstack" / "demo")
    worker.start()
    try:
        started = time.monotonic()
        for sink in SINKS:
            wait_for(
                lambda sink=sink: _caught_up_or_dead(worker, f"{prefix}-{sink}", topic),
                600,
                f"{sink} to catch up",
            )
            if not worker.alive:
                print(worker.log()[-3000:], file=sys.stderr)
                raise SystemExit(f"fanout exited early with code {worker.process.returncode}")
            print(f"{sink:<14} caught up after {time.monotonic() - started:.1f}s")
    finally:
        code = worker.stop()
    print(f"fanout stopped on SIGTERM with exit code {code}\n")
    return _report(messages, run_id)


def _use_devstack_connection_settings() -> None:
    """Connection settings of the local stack, as `scripts/devstack env` prints them."""
    printed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "devstack"), "env"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in printed.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name.startswith("FANOUT_"):
            os.environ.setdefault(name, shlex.split(value)[0] if value else "")


def _caught_up_or_dead(worker: WorkerProcess, group: str, topic: str) -> bool:
    return not worker.alive or caught_up(group, [topic])


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="changes to produce")
    parser.add_argument("--keys", type=int, default=500, help="distinct keys per table")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def _config(topic: str, prefix: str, run_id: str) -> dict[str, Any]:
    return {
        "kafka": {"topics": [topic], "group_prefix": prefix, "dlq_prefix": f"{prefix}.dlq"},
        "metrics": {"port": 0},
        "logging": {"format": "text", "level": "WARNING"},
        "sinks": {
            "postgres": {"enabled": True, "schema": f"demo_{run_id}"},
            "elasticsearch": {"enabled": True, "index_prefix": f"demo_{run_id}_"},
            "clickhouse": {
                "enabled": True,
                "routing": {"target_format": f"demo_{run_id}_{{table}}"},
            },
        },
    }


def _report(messages: list[Any], run_id: str) -> int:
    expected = expected_state(messages)
    settings = load_settings()
    holdings = {
        "postgres": _postgres_counts(settings, f"demo_{run_id}"),
        "elasticsearch": _elasticsearch_counts(settings, f"demo_{run_id}_"),
        "clickhouse": _clickhouse_counts(settings, f"demo_{run_id}_"),
    }
    width = max(len(spec.table) for spec in DEFAULT_TABLES)
    print(f"{'table':<{width}}  {'expected':>8}  " + "  ".join(f"{s:>13}" for s in SINKS))
    ok = True
    for spec in DEFAULT_TABLES:
        want = len(expected.get(spec.name, {}))
        got = [holdings[sink].get(spec.table, 0) for sink in SINKS]
        ok &= all(count == want for count in got)
        print(f"{spec.table:<{width}}  {want:>8}  " + "  ".join(f"{c:>13}" for c in got))
    print("\nevery sink holds exactly the newest row per key" if ok else "\nMISMATCH")
    return 0 if ok else 1


def _postgres_counts(settings: Any, schema: str) -> dict[str, int]:
    with psycopg.connect(**settings.sinks.postgres.conninfo()) as conn:
        return {
            spec.table: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, spec.table))
            ).fetchone()[0]
            for spec in DEFAULT_TABLES
        }


def _elasticsearch_counts(settings: Any, prefix: str) -> dict[str, int]:
    es_settings = settings.sinks.elasticsearch
    with Elasticsearch(es_settings.hosts) as es:
        es.indices.refresh(index=f"{prefix}*")
        return {
            spec.table: es.count(index=f"{prefix}{spec.table}")["count"] for spec in DEFAULT_TABLES
        }


def _clickhouse_counts(settings: Any, prefix: str) -> dict[str, int]:
    ch = settings.sinks.clickhouse
    client = clickhouse_connect.get_client(host=ch.host or "127.0.0.1", port=ch.port)
    return {
        spec.table: int(client.command(f"SELECT count() FROM `{prefix}{spec.table}_current`"))
        for spec in DEFAULT_TABLES
    }


if __name__ == "__main__":
    sys.exit(main())
