"""Collapse: one target's valid events reduced to the newest state per key.

Within a batch, only the newest event of a key matters to the target; the older ones are
superseded (counted as stale) and never sent. Of equal versions the later one in the batch
wins, as it would if the two came in separate batches. An event a sink rejected takes no part,
so an older valid event of its key is still applied.

Columns merge per key before that (:func:`fill_missing_columns`): an upsert that lacks a
column its schema declares (Debezium's placeholder for an unchanged TOASTed value, removed by
the decoder) takes it from the newest older upsert of its key in the batch, unless a delete of
the key came in between. What no event in the batch carries is kept from the target by the
sink (its apply step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Op

P = TypeVar("P")
Identity = tuple[Any, ...]


@dataclass(slots=True)
class Collapsed(Generic[P]):
    """The newest valid event per key with its payload, in the order keys were first seen."""

    newest: dict[Identity, tuple[ChangeEvent, P]] = field(default_factory=dict)
    superseded: int = 0
    rejected: list[tuple[ChangeEvent, MappingError]] = field(default_factory=list)


def collapse(
    events: Sequence[ChangeEvent], payloads: Sequence[P | None], key: tuple[str, ...]
) -> Collapsed[P]:
    """The newest event per key among ``events`` whose payload is not None.

    ``key`` names the target's key columns in the order identities are built. An event whose
    key columns are not exactly ``key`` (in any order) is rejected: its target is keyed
    differently.
    """
    out: Collapsed[P] = Collapsed()
    newest = out.newest
    considered = 0
    width = len(key)
    single = key[0] if width == 1 else None
    for event, payload in zip(events, payloads, strict=True):
        if payload is None:
            continue
        keys = event.key
        if single is not None and len(keys) == 1 and single in keys:  # most tables: inlined
            value = keys[single]
            ident: Identity | None = (tuple(value),) if type(value) is list else (value,)
        else:
            ident = _identity(keys, key, width)
        if ident is None:
            out.rejected.append((event, _key_mismatch(event, key)))
            continue
        considered += 1
        kept = newest.get(ident)
        if kept is None or event.version >= kept[0].version:
            newest[ident] = (event, payload)
    out.superseded = considered - len(newest)
    return out


def _identity(keys: dict[str, Any], key: tuple[str, ...], width: int) -> Identity | None:
    if len(keys) != width:
        return None
    if tuple(keys) == key:
        values = tuple(keys.values())
    else:
        try:
            values = tuple(keys[name] for name in key)
        except KeyError:
            return None
    if list in map(type, values):  # array key columns: hashable as tuples
        values = tuple(tuple(value) if type(value) is list else value for value in values)
    return values


def _key_mismatch(event: ChangeEvent, key: tuple[str, ...]) -> MappingError:
    return MappingError(
        f"key columns ({', '.join(event.key)}) do not match the target's key ({', '.join(key)})"
    )


def has_missing_columns(event: ChangeEvent) -> bool:
    """An upsert whose row lacks a column its schema declares (cheap: compares two lengths)."""
    row = event.row
    return row is not None and len(row) < len(event.columns)


def fill_missing_columns(changes: list[ChangeEvent]) -> list[ChangeEvent]:
    """``changes`` with each upsert that lacks declared columns completed, where it can be,
    from the newest older upsert of its key earlier in the batch (stream order)."""
    last: dict[tuple[Any, ...], ChangeEvent | None] = {}  # key -> its newest upsert so far
    filled: list[ChangeEvent] = []
    for event in changes:
        ident = _loose_identity(event.key)
        previous = last.get(ident)
        if event.op is Op.DELETE:
            if previous is None or event.version >= previous.version:
                last[ident] = None
        elif previous is None or event.version >= previous.version:
            if previous is not None and has_missing_columns(event):
                event = _completed(event, previous)
            last[ident] = event
        filled.append(event)
    return filled


def _completed(event: ChangeEvent, older: ChangeEvent) -> ChangeEvent:
    row = event.row or {}
    missing = {name: value for name, value in (older.row or {}).items() if name not in row}
    if not missing:
        return event
    return ChangeEvent(
        event.op, event.table, event.key, {**row, **missing}, event.version,
        event.source_ts_ms, event.origin, event.columns, event.target,
    )  # fmt: skip


def _loose_identity(keys: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((name, tuple(v) if type(v) is list else v) for name, v in keys.items())
