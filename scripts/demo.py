"""The main job on the local stack, end to end, in one command (`make demo`).

``--debezium`` (`make demo-debezium`): the same from a real Debezium connector capturing a
real database instead of a generated stream (``scripts/demo_debezium.py``). Without it:

1. creates a topic and produces a realistic Debezium stream to it (inserts, updates, deletes
   and re-inserts over several tables, one a composite-key table);
2. runs `fanout run` with every sink enabled, each its own consumer group;
3. waits until every sink has caught up, checks each holds exactly the newest row per key,
   prints what each holds, and stops the service with SIGTERM;
4. prints where the data went (schema, indices, tables, with a command each), the config it
   saved (``.devstack/demo/demo-<id>.yaml``, copied to ``latest.yaml``) and the commands for
   its lag and its DLQ.

Every run uses fresh names (topic, groups, schema, index prefix, table prefix), so it can be
run again and again on the same stack. The worker gets the stack's connection settings
(``scripts/devstack env``, unless the shell exported them) and no other ``FANOUT_*`` variable.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
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
DEMO_DIR = REPO / ".devstack" / "demo"


def main() -> int:
    args = _parse()
    stack = _use_devstack_connection_settings()
    if args.debezium:
        import demo_debezium  # scripts/, beside this file

        return demo_debezium.main(args, stack, DEMO_DIR)
    run_id = uuid.uuid4().hex[:6]
    topic, prefix = f"demo_{run_id}.inventory", f"demo-{run_id}"
    print(f"demo {run_id}: topic {topic}, consumer groups {prefix}-<sink>")
    messages = list(generate_stream(args.events or 20_000, n_keys=args.keys, seed=args.seed))
    create_topic(topic, partitions=6)
    started = time.monotonic()
    produce(topic, ((m.key, m.value) for m in messages))
    print(f"produced {len(messages)} Debezium messages in {time.monotonic() - started:.1f}s")

    config = _config(topic, prefix, run_id)
    worker = WorkerProcess(None, config, DEMO_DIR, extra_env=stack, name=f"demo-{run_id}")
    worker.start()
    assert worker.config_path is not None
    shutil.copyfile(worker.config_path, DEMO_DIR / "latest.yaml")
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
    ok = _report(messages, run_id)
    _where(topic, prefix, run_id, worker.config_path)
    return ok


def _use_devstack_connection_settings() -> dict[str, str]:
    """Connection settings of the local stack, as `scripts/devstack env` prints them (a value
    the shell exported wins), for this process (the stores' and the CDC source's) and the
    worker (``FANOUT_*`` only)."""
    printed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "devstack"), "env"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = []
    for line in printed.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name.startswith(("FANOUT_", "DEVSTACK_")):
            os.environ.setdefault(name, shlex.split(value)[0] if value else "")
        if name.startswith("FANOUT_"):
            names.append(name)
    return {name: os.environ[name] for name in names}


def _caught_up_or_dead(worker: WorkerProcess, group: str, topic: str) -> bool:
    return not worker.alive or caught_up(group, [topic])


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help="changes to produce (default 20,000), or with --debezium to make at the source "
        "(default 3,000)",
    )
    parser.add_argument("--keys", type=int, default=500, help="distinct keys per table")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--debezium",
        action="store_true",
        help="from a real Debezium connector capturing tables it creates in the source "
        "PostgreSQL (127.0.0.1:5433), every sink then compared with them column by column",
    )
    args = parser.parse_args()
    if args.debezium and args.events is None:
        args.events = 3_000
    return args


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


def _where(topic: str, prefix: str, run_id: str, config: Path | None) -> None:
    """Where the demo's data went, and the command that shows each part of it."""
    settings = load_settings()
    pg, es, ch = settings.sinks.postgres, settings.sinks.elasticsearch, settings.sinks.clickhouse
    es_url = re.sub(r"//[^/@]*@", "//", es.hosts[0]).rstrip("/")
    ch_url = f"http://{ch.host or '127.0.0.1'}:{ch.port}"
    saved = config.relative_to(REPO) if config else "?"
    table = DEFAULT_TABLES[0].table
    rows = [
        ("topic", f"{topic} (6 partitions, all three tables)", ""),
        ("groups", f"{prefix}-postgres, {prefix}-elasticsearch, {prefix}-clickhouse", ""),
        ("config", f"{saved} (also .devstack/demo/latest.yaml)", ""),
        (
            "postgres",
            f"schema demo_{run_id} in database {pg.dbname}",
            f'PGPASSWORD="$FANOUT_SINKS__POSTGRES__PASSWORD" psql -h {pg.host} -p {pg.port} '
            f"-U {pg.user} {pg.dbname} -c 'SELECT count(*) FROM demo_{run_id}.{table}'",
        ),
        (
            "elasticsearch",
            f"aliases demo_{run_id}_<table>",
            f"curl -s '{es_url}/demo_{run_id}_{table}/_count'",
        ),
        (
            "clickhouse",
            f"tables demo_{run_id}_<table>, views demo_{run_id}_<table>_current",
            f"curl -s '{ch_url}/' --data-binary "
            f"'SELECT count() FROM demo_{run_id}_{table}_current'",
        ),
        ("lag", "every sink's group, per partition", f"fanout --config {saved} lag"),
        ("DLQ", f"{prefix}.dlq.<sink> (empty)", f"fanout --config {saved} dlq ls --sink postgres"),
    ]
    print('\nwhere the demo\'s data is (first: eval "$(python3 scripts/devstack env)"):')
    for what, where, command in rows:
        print(f"  {what:<14} {where}")
        if command:
            print(f"  {'':<14} $ {command}")


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
