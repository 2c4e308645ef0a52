"""Collapse: one target's valid events reduced to the newest state per key.

Within a batch, only the newest event of a key matters to the target; the older ones are
superseded (counted as stale) and never sent. Of equal versions the later one in the batch
wins, as it would if the two came in separate batches. An event a sink rejected takes no part,
so an older valid event of its key is still applied.

This is the one place the batch's events of a key meet, so it is where column-level merging
belongs: ``Newest.merge`` is called with each older event of the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fanout.errors import MappingError
from fanout.events import ChangeEvent

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
    for event, payload in zip(events, payloads, strict=True):
        if payload is None:
            continue
        ident = _identity(event.key, key, width)
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
