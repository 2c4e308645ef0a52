"""A collapsed batch into PostgreSQL: staged by ``COPY``, applied by set-based statements.

All targets of a batch are written in ONE transaction, committed once. Per target: take the
target's advisory lock (a concurrent backfill cannot slip an old upsert between a delete and
its tombstone), apply the truncate, ``COPY`` the rows into the session's staging table (binary
where every value has its column's exact type), then one statement each for deletes,
tombstones and upserts, every one guarded by version (see ``sinks.postgres.sql``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Op
from fanout.runtime.metrics import COLUMNS_UNKNOWN
from sinks.base.batch import TargetBatch
from sinks.postgres import sql as q
from sinks.postgres.check import Layout, Staged


def write_batch(
    conn: psycopg.Connection,
    schema: str,
    batches: Sequence[TargetBatch[Layout, Any]],
    refs: Sequence[q.TableRef | None],
) -> list[Counter[Op]]:
    """Apply every target's share in one transaction; what each target applied, by op."""
    with conn.transaction(), conn.cursor() as cur:
        return [
            _write_target(cur, schema, batch, ref) for batch, ref in zip(batches, refs, strict=True)
        ]


def _write_target(
    cur: psycopg.Cursor, schema: str, batch: TargetBatch[Layout, Any], ref: q.TableRef | None
) -> Counter[Op]:
    cur.execute(q.LOCK_TARGET, (f"fanout:{schema}.{batch.target}",))
    applied: Counter[Op] = Counter()
    if batch.truncate is not None:
        _truncate(cur, schema, batch.target, ref, batch.truncate.version)
    if ref is None or not batch.newest:
        return applied
    by_layout: dict[Layout, list[ChangeEvent]] = {}
    for event, layout in batch.newest:
        by_layout.setdefault(layout, []).append(event)
    deletes: dict[Layout, list[ChangeEvent]] = {}
    upserts: dict[frozenset[str], dict[Layout, list[ChangeEvent]]] = {}  # by columns carried
    for layout, events in by_layout.items():
        if layout.is_delete:
            deletes[layout] = events
        else:
            upserts.setdefault(frozenset(layout.columns), {})[layout] = events
    if deletes:
        _stage(cur, ref, deletes)
        cur.execute(q.apply_deletes(ref))
        applied[Op.DELETE] = cur.execute(q.remember_deletes(ref), (batch.target,)).rowcount
    for i, layouts in enumerate(upserts.values()):
        if i:  # events carrying other columns: the staging table holds one set at a time
            cur.execute(q.clear_staging(ref))
        _stage(cur, ref, layouts)
        columns = next(iter(layouts)).columns[:-1]  # the version comes last
        applied[Op.UPSERT] += _upsert(cur, batch.target, ref, columns)
        cur.execute(q.forget_tombstones(ref))
    return applied


def _stage(cur: psycopg.Cursor, ref: q.TableRef, layouts: dict[Layout, list[ChangeEvent]]) -> None:
    for layout, events in layouts.items():
        staged = layout.stage(events)
        binary = staged.types is not None
        _copy(cur, q.copy_into_staging(ref, layout.columns, binary=binary), staged)


def _upsert(cur: psycopg.Cursor, target: str, ref: q.TableRef, columns: tuple[str, ...]) -> int:
    """Apply the staged upserts, which carry ``columns``; the count applied. Rows inserted
    without some of the table's columns had no stored value to keep: counted as unknown."""
    missing = len(set(ref.writable) - set(columns))
    if not missing:
        return cur.execute(q.apply_upserts(ref, columns), (target,)).rowcount
    inserted = cur.execute(q.apply_upserts(ref, columns, report_inserts=True), (target,))
    flags = [row[0] for row in inserted.fetchall()]
    if any(flags):
        COLUMNS_UNKNOWN.labels("postgres", target).inc(missing * sum(flags))
    return len(flags)


def _truncate(
    cur: psycopg.Cursor, schema: str, target: str, ref: q.TableRef | None, version: int
) -> None:
    cur.execute(q.record_truncation(schema), (target, version))
    if ref is None:
        return
    newer = cur.execute(q.has_rows_newer_than(ref), (version,)).fetchone()
    if newer is not None and newer[0]:
        cur.execute(q.delete_rows_up_to(ref), (version,))
    else:
        cur.execute(q.truncate_table(ref))
    if ref.key:  # without a key there is no tombstone table
        cur.execute(q.delete_rows_up_to(ref, tombstones=True), (version,))


def _copy(cur: psycopg.Cursor, statement: sql.Composed, staged: Staged) -> None:
    try:
        with cur.copy(statement) as copy:
            if staged.types is not None:
                copy.set_types(staged.types)
            for row in staged.rows:
                copy.write_row(row)
    except (TypeError, ValueError, OverflowError) as exc:
        if staged.types is None:
            raise
        # A binary dumper refused a value (an int8 out of range, a lone surrogate): in text
        # format PostgreSQL would have rejected it, so the batch fails the same way, in the data
        # class (bisected; the record alone is dead-lettered as MappingError, like the others).
        raise MappingError(f"postgres rejected the batch: {type(exc).__name__}: {exc}") from exc
