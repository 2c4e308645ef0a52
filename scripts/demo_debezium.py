"""The demo from a real Debezium connector (`make demo-debezium`, `scripts/demo.py --debezium`).

1. creates schema ``demo_<id>`` in the source PostgreSQL (127.0.0.1:5433) with two tables,
   ``customers`` (a large, TOASTed ``notes`` text) and ``orders`` (a jsonb ``items`` column
   with numbers beyond float64, JSON nulls, shapes that vary, some large enough to be
   TOASTed), and fills them;
2. registers a Debezium PostgreSQL connector for them (the snapshot sends those rows);
3. runs `fanout run` with every sink while a workload of inserts, updates (many leaving the
   TOASTed columns alone, so Debezium sends its placeholder for them), deletes and
   re-inserts runs on the source;
4. waits until every sink equals the source, column by column, and every consumer group
   has reached the end; stops fanout with SIGTERM; deletes the connector, its replication slot
   and publication (the source tables stay, to look at).
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import clickhouse_connect
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from fanout.settings import Settings, load_settings
from sinks.clickhouse.types import quote_identifier
from tests.support.debezium_connector import SourceDb, debezium_connector
from tests.support.pipeline import WorkerProcess, caught_up, create_topic, read_topic, wait_for

SINKS = ("postgres", "elasticsearch", "clickhouse")
PLACEHOLDER = b"__debezium_unavailable_value"  # the connector's unavailable.value.placeholder
# table -> (column, kind, SQL type); kind says how values compare across the stores
TABLES: dict[str, list[tuple[str, str, str]]] = {
    "customers": [
        ("id", "int", "int PRIMARY KEY"),
        ("name", "text", "text NOT NULL"),
        ("email", "text", "text"),
        ("active", "bool", "boolean"),
        ("balance", "numeric", "numeric(12,2)"),
        ("notes", "text", "text"),
    ],
    "orders": [
        ("id", "int", "bigint PRIMARY KEY"),
        ("customer_id", "int", "int NOT NULL"),
        ("status", "text", "text"),
        ("total", "numeric", "numeric(14,4)"),
        ("items", "json", "jsonb"),
    ],
}
Rows = dict[Any, dict[str, Any]]


@dataclass
class Demo:
    run_id: str
    source: psycopg.Connection[Any]
    rng: random.Random

    @property
    def schema(self) -> str:
        return f"demo_{self.run_id}"

    def table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def execute(self, statement: str, *params: Any) -> None:
        query = sql.SQL(statement).format(c=self.table("customers"), o=self.table("orders"))
        self.source.execute(query, params)


def main(args: argparse.Namespace, stack: dict[str, str], demo_dir: Path) -> int:
    run_id = f"{random.randrange(16**6):06x}"
    source_db = SourceDb.from_env()
    settings = load_settings()
    with source_db.connect() as conn:
        demo = Demo(run_id, conn, random.Random(args.seed))
        create_tables(demo)
        fill(demo, customers=200, orders=300)
        tables = [f"{demo.schema}.{name}" for name in TABLES]
        prefix = f"demo-{run_id}"
        topics = [f"{prefix}.{table}" for table in tables]
        for topic in topics:
            create_topic(topic, partitions=1)  # as Connect makes them: source order per table
        print(f"demo {run_id}: source schema {demo.schema} at {source_db.host}:{source_db.port}")
        with debezium_connector(prefix, tables, source=source_db) as connector:
            print(f"connector {connector.name}: snapshot done, streaming to {', '.join(topics)}")
            config = worker_config(topics, prefix, run_id)
            worker = WorkerProcess(None, config, demo_dir, extra_env=stack, name=f"demo-{run_id}")
            worker.start()
            try:
                started = time.monotonic()
                changes = workload(demo, args.events)
                print(f"{changes} changes made at the source in {time.monotonic() - started:.1f}s")
                wait_equal(demo, settings, worker, timeout_s=600)
                for sink in SINKS:
                    group = f"{prefix}-{sink}"
                    wait_for(partial(at_end, worker, group, topics), 120, f"{sink} at the end")
                print(f"every sink caught up {time.monotonic() - started:.1f}s after the start")
                print(placeholders_sent(topics))
            finally:
                code = worker.stop()
            print(f"fanout stopped on SIGTERM with exit code {code}; connector removed\n")
        ok = report(demo, settings)
    where(run_id, prefix, worker.config_path)
    return 0 if ok else 1


def at_end(worker: WorkerProcess, group: str, topics: list[str]) -> bool:
    return not worker.alive or caught_up(group, topics)


def placeholders_sent(topics: list[str]) -> str:
    """How many of the connector's records carried its placeholder for a TOASTed value."""
    records = [m for topic in topics for m in read_topic(topic, timeout_s=60)]
    marked = sum(PLACEHOLDER in (m.value() or b"") for m in records)
    return f"{marked} of {len(records)} records carried Debezium's placeholder for TOASTed values"


def worker_config(topics: list[str], prefix: str, run_id: str) -> dict[str, Any]:
    return {
        "kafka": {"topics": topics, "group_prefix": prefix, "dlq_prefix": f"{prefix}.dlq"},
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


# ---- the source and its workload ----------------------------------------------------------


def create_tables(demo: Demo) -> None:
    demo.source.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(demo.schema)))
    for name, columns in TABLES.items():
        spec = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(sql_type))
            for column, _, sql_type in columns
        )
        demo.source.execute(sql.SQL("CREATE TABLE {} ({})").format(demo.table(name), spec))


def big_text(rng: random.Random, size: int) -> str:
    """Random letters: PostgreSQL cannot compress them below its TOAST threshold."""
    return "".join(rng.choices(string.ascii_letters, k=size))


def items(rng: random.Random) -> str:
    """A jsonb document whose shape varies; some large (TOASTed), some exact beyond float64."""
    shapes: list[Callable[[], Any]] = [
        lambda: [{"sku": f"S{rng.randint(1, 99)}", "qty": rng.randint(1, 5)} for _ in range(3)],
        lambda: {"gift": True, "note": None, "lines": []},
        lambda: {"blob": big_text(rng, 4000)},
        lambda: "a plain string",
    ]
    document = json.dumps(rng.choice(shapes)())
    if rng.random() < 0.3:  # a number a float64 would round, kept by its digits
        document = f'{{"exact": 1234567890.1234567890123456789, "doc": {document}}}'
    return document


def insert_customer(demo: Demo, key: int) -> None:
    rng = demo.rng
    notes = big_text(rng, 6000) if rng.random() < 0.4 else "short note"
    demo.execute(
        "INSERT INTO {c} VALUES (%s, %s, %s, %s, %s, %s)",
        key,
        f"customer {key}",
        f"c{key}@example.com",
        rng.random() < 0.8,
        Decimal(rng.randint(-10_000, 1_000_000)) / 100,
        notes,
    )


def insert_order(demo: Demo, key: int, customer: int) -> None:
    total = Decimal(demo.rng.randint(0, 10**9)) / 10_000
    demo.execute(
        "INSERT INTO {o} VALUES (%s, %s, 'new', %s, %s::jsonb)",
        key,
        customer,
        total,
        items(demo.rng),
    )


def fill(demo: Demo, customers: int, orders: int) -> None:
    with demo.source.transaction():
        for key in range(1, customers + 1):
            insert_customer(demo, key)
        for key in range(1, orders + 1):
            insert_order(demo, key, demo.rng.randint(1, customers))


def workload(demo: Demo, changes: int) -> int:
    """``changes`` random statements, in transactions of up to 25."""
    rng = demo.rng
    done = 0
    while done < changes:
        with demo.source.transaction():
            for _ in range(min(25, changes - done)):
                rng.choice(CHANGES)(demo)
                done += 1
    return done


def _new_customer(demo: Demo) -> None:
    key = demo.rng.randint(1, 400)
    demo.execute("DELETE FROM {c} WHERE id = %s", key)  # re-inserted: a delete first if it exists
    insert_customer(demo, key)


def _touch_customer(demo: Demo) -> None:  # leaves notes: the placeholder if TOASTed
    demo.execute(
        "UPDATE {c} SET email = %s, balance = balance + 1.25 WHERE id = %s",
        f"changed{demo.rng.randint(1, 999)}@example.com",
        demo.rng.randint(1, 400),
    )


def _rewrite_notes(demo: Demo) -> None:
    notes = None if demo.rng.random() < 0.2 else big_text(demo.rng, 5000)
    demo.execute("UPDATE {c} SET notes = %s WHERE id = %s", notes, demo.rng.randint(1, 400))


def _new_order(demo: Demo) -> None:
    insert_order(demo, demo.rng.randint(1_000, 10**12), demo.rng.randint(1, 400))


def _order_status(demo: Demo) -> None:  # leaves items: the placeholder if TOASTed
    status = demo.rng.choice(["paid", "shipped", "returned"])
    demo.execute(
        "UPDATE {o} SET status = %s WHERE id IN (SELECT id FROM {o} ORDER BY random() LIMIT 2)",
        status,
    )


def _order_items(demo: Demo) -> None:
    demo.execute(
        "UPDATE {o} SET items = %s::jsonb"
        " WHERE id = (SELECT id FROM {o} ORDER BY random() LIMIT 1)",
        items(demo.rng),
    )


def _delete_order(demo: Demo) -> None:
    demo.execute("DELETE FROM {o} WHERE id = (SELECT id FROM {o} ORDER BY random() LIMIT 1)")


CHANGES: list[Callable[[Demo], None]] = [
    _new_customer,
    _touch_customer,
    _touch_customer,
    _rewrite_notes,
    _new_order,
    _new_order,
    _order_status,
    _order_status,
    _order_items,
    _delete_order,
]


# ---- every store read in one form ---------------------------------------------------------


def normal(kind: str, value: Any, json_text: bool) -> Any:
    """A value as every store must hold it: numerics by value, JSON parsed with every digit
    (``json_text``: the store gives JSON as its text; else already parsed, with every digit)."""
    if value is None:
        return None
    if kind == "numeric":
        return Decimal(str(value))
    if kind == "bool":
        return bool(value)
    if kind == "json" and json_text:
        return json.loads(value, parse_float=Decimal)
    return value


def as_rows(table: str, rows: list[dict[str, Any]], json_text: bool = True) -> Rows:
    kinds = {column: kind for column, kind, _ in TABLES[table]}
    return {
        row["id"]: {c: normal(kind, row.get(c), json_text) for c, kind in kinds.items()}
        for row in rows
    }


def select_list(table: str) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{}::text AS {}").format(sql.Identifier(c), sql.Identifier(c))
        if kind == "json"
        else sql.Identifier(c)
        for c, kind, _ in TABLES[table]
    )


def source_rows(demo: Demo, table: str) -> Rows:
    query = sql.SQL("SELECT {} FROM {}").format(select_list(table), demo.table(table))
    with demo.source.cursor(row_factory=dict_row) as cur:
        return as_rows(table, cur.execute(query).fetchall())


def postgres_rows(settings: Settings, schema: str, table: str) -> Rows:
    with psycopg.connect(**settings.sinks.postgres.conninfo(), row_factory=dict_row) as conn:
        query = sql.SQL("SELECT {} FROM {}").format(
            select_list(table), sql.Identifier(schema, table)
        )
        return as_rows(table, conn.execute(query).fetchall())


def elasticsearch_rows(settings: Settings, alias: str, table: str) -> Rows:
    host = settings.sinks.elasticsearch.hosts[0].rstrip("/")
    urllib.request.urlopen(
        urllib.request.Request(f"{host}/{alias}/_refresh", method="POST")
    ).close()
    with urllib.request.urlopen(f"{host}/{alias}/_search?size=10000", timeout=60) as answer:
        hits = json.loads(answer.read(), parse_float=Decimal)["hits"]["hits"]
    return as_rows(table, [hit["_source"] for hit in hits], json_text=False)


def clickhouse_rows(settings: Settings, view: str, table: str) -> Rows:
    ch = settings.sinks.clickhouse
    client = clickhouse_connect.get_client(host=ch.host or "127.0.0.1", port=ch.port)
    columns = [column for column, _, _ in TABLES[table]]
    names = ", ".join(map(quote_identifier, columns))
    result = client.query(f"SELECT {names} FROM {quote_identifier(view)}")
    return as_rows(table, [dict(zip(columns, row, strict=True)) for row in result.result_rows])


def sink_rows(demo: Demo, settings: Settings, sink: str, table: str) -> Rows:
    if sink == "postgres":
        return postgres_rows(settings, demo.schema, table)
    if sink == "elasticsearch":
        return elasticsearch_rows(settings, f"{demo.schema}_{table}", table)
    return clickhouse_rows(settings, f"{demo.schema}_{table}_current", table)


def differing(demo: Demo, settings: Settings) -> dict[tuple[str, str], int]:
    """(sink, table) -> rows that differ from the source (absent, extra or another value)."""
    found = {}
    for table in TABLES:
        want = source_rows(demo, table)
        for sink in SINKS:
            try:
                got = sink_rows(demo, settings, sink, table)
            except Exception:  # not created yet
                found[(sink, table)] = len(want)
                continue
            wrong = sum(got.get(key) != want.get(key) for key in set(got) | set(want))
            if wrong:
                found[(sink, table)] = wrong
    return found


def wait_equal(demo: Demo, settings: Settings, worker: WorkerProcess, timeout_s: float) -> None:
    last: dict[tuple[str, str], int] = {}

    def equal() -> bool:
        nonlocal last
        if not worker.alive:
            return True
        last = differing(demo, settings)
        return not last

    try:
        wait_for(equal, timeout_s, "every sink to equal the source", interval_s=1.0)
    except AssertionError:
        print(f"not equal after {timeout_s}s: {last}", file=sys.stderr)
    if not worker.alive:
        print(worker.log()[-3000:], file=sys.stderr)
        raise SystemExit(f"fanout exited early with code {worker.process.returncode}")  # type: ignore[union-attr]


def report(demo: Demo, settings: Settings) -> bool:
    wrong = differing(demo, settings)
    print(f"{'table':<10} {'source':>7}  " + "  ".join(f"{s:>13}" for s in SINKS))
    for table in TABLES:
        count = len(source_rows(demo, table))
        cells = [
            f"{'DIFFERS ' + str(wrong[(s, table)]) if (s, table) in wrong else 'equal':>13}"
            for s in SINKS
        ]
        print(f"{table:<10} {count:>7}  " + "  ".join(cells))
    if wrong:
        print("\nMISMATCH: rows differ from the source (see above)")
        return False
    print("\nevery sink equals the source, column by column (TOASTed values and jsonb included)")
    return True


def where(run_id: str, prefix: str, config: Path | None) -> None:
    saved = (
        config.relative_to(Path.cwd()) if config and config.is_relative_to(Path.cwd()) else config
    )
    print('\nwhere the demo\'s data is (first: eval "$(python3 scripts/devstack env)"):')
    for what, place in [
        ("source", f"schema demo_{run_id} in $DEVSTACK_SOURCE_PG_DSN (tables customers, orders)"),
        ("topics", f"{prefix}.demo_{run_id}.customers, {prefix}.demo_{run_id}.orders"),
        ("postgres", f"schema demo_{run_id} in database fanout"),
        ("elasticsearch", f"aliases demo_{run_id}_customers, demo_{run_id}_orders"),
        ("clickhouse", f"views demo_{run_id}_customers_current, demo_{run_id}_orders_current"),
        ("config", f"{saved}: fanout --config {saved} lag"),
    ]:
        print(f"  {what:<14} {place}")
