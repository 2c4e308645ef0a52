"""``fanout verify`` on a large table, side by side with a plain count-and-hash of it.

A table of ``--rows`` rows (bigint key, text, numeric, float8, jsonb, timestamptz) is made in
the source PostgreSQL with generate_series and copied as it is into a schema of the sink
PostgreSQL (as the postgres sink would hold it); then, alternated ``--runs`` times:

* baseline: ``SELECT count(*), sum(hashtext(t::text)) FROM t`` on each side (one scan each,
  the hashing inside the server: the cheapest whole-table comparison there is, which says
  *whether* the tables differ but not where, and only under PostgreSQL's own text forms);
* ``fanout verify --sink postgres --tables public.<t> --json`` in a subprocess: its wall time and
  peak RSS (``ru_maxrss`` of the child).

Run by hand on the local stack: ``python -m bench.verify_million --rows 1000000 --runs 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
SOURCE = {
    "host": "127.0.0.1",
    "port": 5433,
    "user": "debezium",
    "password": "debezium",
    "dbname": "source",
}
SINK = {
    "host": "127.0.0.1",
    "port": 5432,
    "user": "fanout",
    "password": "fanout",
    "dbname": "fanout",
}
COLUMNS = (
    "id bigint PRIMARY KEY, name text, amount numeric(12,2), score float8, doc jsonb, "
    "at timestamptz"
)
FILL = """
INSERT INTO {} SELECT i, 'name ' || i, (i %% 100000) / 100.0, i / 7.0,
  jsonb_build_object('n', i, 'tags', jsonb_build_array('a', i %% 13), 'x', 1.25),
  timestamptz '2024-01-01' + i * interval '1 second'
FROM generate_series(1, %s) AS i
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=2000)
    args = parser.parse_args()
    name = f"bench_verify_{uuid.uuid4().hex[:8]}"
    with (
        psycopg.connect(**SOURCE, autocommit=True) as source,
        psycopg.connect(**SINK, autocommit=True) as sink,
    ):
        try:
            prepare(source, sink, name, args.rows)
            results = [measure(source, sink, name, args.page_size) for _ in range(args.runs)]
        finally:
            source.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            sink.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    print(json.dumps({"rows": args.rows, "runs": results}, indent=2))


def prepare(
    source: psycopg.Connection[Any], sink: psycopg.Connection[Any], name: str, rows: int
) -> None:
    table = sql.Identifier(name)
    source.execute(sql.SQL(f"CREATE TABLE {{}} ({COLUMNS})").format(table))
    source.execute(sql.SQL(FILL).format(table), (rows,))
    source.execute(sql.SQL("ANALYZE {}").format(table))
    target = sql.Identifier(name, name)
    sink.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    sink.execute(sql.SQL(f"CREATE TABLE {{}} ({COLUMNS})").format(target))
    copy_out = sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(table)
    copy_in = sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(target)
    with source.cursor().copy(copy_out) as out, sink.cursor().copy(copy_in) as into:
        for chunk in out:
            into.write(chunk)
    sink.execute(sql.SQL("ANALYZE {}").format(target))


def measure(
    source: psycopg.Connection[Any], sink: psycopg.Connection[Any], name: str, page: int
) -> dict[str, Any]:
    started = time.monotonic()
    plain = [
        conn.execute(
            sql.SQL("SELECT count(*), sum(hashtext(t::text)) FROM {} AS t").format(ident)
        ).fetchone()
        for conn, ident in ((source, sql.Identifier(name)), (sink, sql.Identifier(name, name)))
    ]
    baseline_s = time.monotonic() - started
    assert plain[0] == plain[1], plain
    verify_s, rss_mib, report = run_verify(name, page)
    return {
        "baseline_count_and_hash_s": round(baseline_s, 2),
        "verify_s": round(verify_s, 2),
        "verify_peak_rss_mib": rss_mib,
        "verify_equal": report["equal"],
    }


def run_verify(name: str, page: int) -> tuple[float, float, dict[str, Any]]:
    config = {
        "kafka": {"topics": []},
        "source": {k: v for k, v in SOURCE.items()},
        "sinks": {"postgres": {"enabled": True, "schema": name, **SINK}},
        "logging": {"format": "text"},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        json.dump(config, file)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    env["PYTHONPATH"] = str(REPO)
    command = [sys.executable, "-m", "fanout.cli", "--config", file.name, "verify"]
    command += ["--sink", "postgres", "--tables", f"public.{name}", "--page-size", str(page)]
    command += ["--json"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    elapsed = time.monotonic() - started
    os.unlink(file.name)
    if done.returncode != 0:
        raise SystemExit(f"verify exited {done.returncode}: {done.stderr[-2000:]}")
    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far
    return elapsed, round(rss_kib / 1024, 1), json.loads(done.stdout)


if __name__ == "__main__":
    main()
