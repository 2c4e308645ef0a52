"""``fanout repair --sink NAME``: make a sink equal to the source again, key by key.

A verify finds the differing keys (``fanout.ops.verify``). Keys the sink lacks or holds with
other values are re-emitted by the connector itself: one Debezium ``execute-snapshot`` signal
per table (an incremental snapshot whose ``additional-conditions`` filter selects exactly those
keys), inserted into the connector's signal table (``source.signal_table``, its
``signal.data.collection``); the rows come back through Kafka as read events and every sink
applies them through its usual version-guarded path. Keys only the sink holds cannot be
re-emitted (the source has no row): they are deleted in that sink through its own write path,
as a delete at the source position read when the repair started, so a later insert of the key
(a higher position) still applies. Then the keys are compared again until they are equal or
the time is up. ``--dry-run`` prints the signals and deletes and changes nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from fanout.errors import ConfigError, FanoutError
from fanout.events import ChangeEvent, Op, Origin
from fanout.ops.verify.report import VerifyReport
from fanout.ops.verify.run import Verification
from fanout.ops.verify.settle import wait_caught_up
from fanout.ops.verify.source import SourceTable

SIGNAL_TYPE = "execute-snapshot"
MAX_FILTER_CHARS = 1500  # one signal's filter; Debezium's example signal table: varchar(2048)
POLL_S = 1.0
ORIGIN_TOPIC = "fanout.repair"


@dataclass(frozen=True, slots=True)
class Signal:
    table: str
    keys: int
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"table": self.table, "keys": self.keys, "type": SIGNAL_TYPE, "data": self.data}


@dataclass(frozen=True, slots=True)
class Deletion:
    table: str
    target: str
    keys: tuple[dict[str, Any], ...]  # target key columns -> values

    def as_json(self) -> dict[str, Any]:
        keys = [{k: _jsonable(v) for k, v in key.items()} for key in self.keys]
        return {"table": self.table, "target": self.target, "keys": keys}


@dataclass(slots=True)
class RepairPlan:
    signal_table: str
    version: int  # the source position deletes are written at
    signals: list[Signal] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.signals or self.deletions)

    def as_json(self) -> dict[str, Any]:
        return {
            "signal_table": self.signal_table,
            "signals": [s.as_json() for s in self.signals],
            "deletes": [d.as_json() for d in self.deletions],
        }

    def render_text(self) -> str:
        lines = []
        for signal in self.signals:
            lines.append(
                f"signal into {self.signal_table} ({signal.keys} keys of {signal.table}): "
                f"INSERT (id, type, data) VALUES ('<uuid>', '{SIGNAL_TYPE}', "
                f"'{json.dumps(signal.data)}')"
            )
        for deletion in self.deletions:
            keys = json.dumps(deletion.as_json()["keys"])
            lines.append(f"delete in {deletion.target} (only the sink holds them): {keys}")
        return "\n".join(lines) or "nothing to repair"


def signal_table(verification: Verification) -> str:
    source = verification.settings.source
    if source is None or not source.signal_table:
        raise ConfigError(
            "source.signal_table: repair asks the connector for an incremental snapshot through "
            "its signal table; set it to the connector's signal.data.collection"
        )
    return source.signal_table


def plan_repair(verification: Verification) -> RepairPlan:
    plan = RepairPlan(signal_table(verification), verification.position)
    for comparison, result in zip(
        verification.comparisons, verification.report.tables, strict=True
    ):
        listed = sorted(result.listed, key=lambda d: d.key)
        again = [d.native for d in listed if d.kind != "extra"]
        extra = [d.native for d in listed if d.kind == "extra"]
        table = comparison.plan.source
        for chunk in _chunks(verification.conn, table, again):
            plan.signals.append(
                Signal(table.qualified, len(chunk), _snapshot(verification.conn, table, chunk))
            )
        if extra:
            key = comparison.plan.target_key
            keys = tuple(dict(zip(key, native, strict=True)) for native in extra)
            plan.deletions.append(Deletion(table.qualified, comparison.plan.route.target, keys))
    return plan


def key_filter(
    conn: psycopg.Connection[Any], table: SourceTable, keys: Sequence[tuple[Any, ...]]
) -> str:
    """``("id") IN ((3), (4))``: exactly these keys, every value a quoted literal."""
    columns = sql.SQL(", ").join(map(sql.Identifier, table.key))
    values = sql.SQL(", ").join(
        sql.SQL("({})").format(sql.SQL(", ").join(map(sql.Literal, key))) for key in keys
    )
    return sql.SQL("({}) IN ({})").format(columns, values).as_string(conn)


def _snapshot(
    conn: psycopg.Connection[Any], table: SourceTable, keys: Sequence[tuple[Any, ...]]
) -> dict[str, Any]:
    return {
        "data-collections": [table.qualified],
        "type": "incremental",
        "additional-conditions": [
            {"data-collection": table.qualified, "filter": key_filter(conn, table, keys)}
        ],
    }


def _chunks(
    conn: psycopg.Connection[Any], table: SourceTable, keys: Sequence[tuple[Any, ...]]
) -> list[list[tuple[Any, ...]]]:
    """``keys`` in groups whose filter fits one signal row."""
    chunks: list[list[tuple[Any, ...]]] = []
    current: list[tuple[Any, ...]] = []
    for key in keys:
        if current and len(key_filter(conn, table, [*current, key])) > MAX_FILTER_CHARS:
            chunks.append(current)
            current = []
        current.append(key)
    if current:
        chunks.append(current)
    return chunks


def apply_repair(verification: Verification, plan: RepairPlan) -> None:
    schema, _, name = plan.signal_table.partition(".")
    insert = sql.SQL("INSERT INTO {} (id, type, data) VALUES (%s, %s, %s)").format(
        sql.Identifier(schema, name)
    )
    for signal in plan.signals:
        verification.conn.execute(insert, (str(uuid.uuid4()), SIGNAL_TYPE, json.dumps(signal.data)))
    if plan.deletions:
        _delete_in_sink(verification, plan)


def _delete_in_sink(verification: Verification, plan: RepairPlan) -> None:
    from sinks import create_sink

    name = verification.request.sink
    sink = create_sink(name, verification.settings.sinks.get(name))
    sink.open()
    try:
        now_ms = int(time.time() * 1000)
        origin = Origin(ORIGIN_TOPIC, 0, plan.version)
        events = [
            ChangeEvent(
                Op.DELETE, d.table, dict(key), None, plan.version, now_ms, origin, (), d.target
            )
            for d in plan.deletions
            for key in d.keys
        ]
        failures = sink.write(events)
    finally:
        sink.close()
    if failures:
        raise FanoutError(f"the {name} sink refused {len(failures)} delete(s): {failures[0]}")


def wait_repaired(verification: Verification, timeout_s: float) -> VerifyReport:
    """The differing keys compared again until equal or ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        wait_caught_up(verification.settings, verification.request.sink, remaining)
        report = verification.recheck()
        if report.equal or time.monotonic() >= deadline:
            return report
        time.sleep(POLL_S)  # polling interval of a deadline-bounded wait


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, int | str | float | bool) or value is None else str(value)
