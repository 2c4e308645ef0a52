"""Hashes over key ranges, narrowed where they differ, down to the keys that differ.

Each side of a range is a key-sorted list of ``(key, digest)`` (one digest per row,
``canonical.row_digest``). A range's hash is its row count and the sum of its digests (mod
2^64), the same whichever order the rows came in. Equal hashes: the range is equal and nothing
more is looked at. Different: the range is cut in two at the middle key of both sides and each
half compared again, until a half holds one key: missing (source only), extra (target only) or
different (both, other digests). Work and memory are bounded by one page of each side.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

Key = Any  # a tuple of canonical key values: hashable and ordered
Entry = tuple[Key, int]
_MASK = (1 << 64) - 1


@dataclass(slots=True)
class RangeDiff:
    missing: list[Key] = field(default_factory=list)  # in the source, not in the target
    extra: list[Key] = field(default_factory=list)  # in the target, not in the source
    different: list[Key] = field(default_factory=list)  # in both, other values
    ranges_compared: int = 0

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)


def range_hash(entries: Sequence[Entry]) -> tuple[int, int]:
    return len(entries), sum(digest for _, digest in entries) & _MASK


def narrow(source: Sequence[Entry], target: Sequence[Entry]) -> RangeDiff:
    """The keys that differ between two key-sorted sides of one range."""
    diff = RangeDiff()
    _walk(source, target, diff)
    return diff


def _walk(source: Sequence[Entry], target: Sequence[Entry], diff: RangeDiff) -> None:
    diff.ranges_compared += 1
    if range_hash(source) == range_hash(target):
        return
    keys = sorted({key for key, _ in source} | {key for key, _ in target})
    if len(keys) == 1:
        _classify(keys[0], source, target, diff)
        return
    pivot = keys[len(keys) // 2 - 1]
    s_cut, t_cut = _cut(source, pivot), _cut(target, pivot)
    _walk(source[:s_cut], target[:t_cut], diff)
    _walk(source[s_cut:], target[t_cut:], diff)


def _cut(entries: Sequence[Entry], pivot: Key) -> int:
    """Index of the first entry whose key is after ``pivot``."""
    return bisect_right([key for key, _ in entries], pivot)


def _classify(
    key: Hashable, source: Sequence[Entry], target: Sequence[Entry], diff: RangeDiff
) -> None:
    if not target:
        diff.missing.append(key)
    elif not source:
        diff.extra.append(key)
    else:
        diff.different.append(key)
