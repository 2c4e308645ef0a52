"""The contract every sink implements, and nothing else.

Delivery guarantee: the runtime delivers every event at least once. ``write`` may be called
again with the same batch (after a crash, a rebalance, a retry or a backfill) and with batches
older than ones already written; a sink must converge to the newest version per key anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

from fanout.events import ChangeEvent, Failure


@runtime_checkable
class Sink(Protocol):
    name: ClassVar[str]

    def open(self) -> None:
        """Connect and create or verify targets. Raises RetryableError if the store is down."""

    def write(self, batch: Sequence[ChangeEvent]) -> Sequence[Failure]:
        """Apply the batch idempotently, guarded by version.

        Returns the per-record failures it could isolate (they go to the DLQ). Raises
        RetryableError when the whole batch failed for a passing reason, PermanentError when the
        whole batch failed for a lasting one (the runtime bisects it to find the poison records).
        """

    def close(self) -> None:
        """Release connections. Safe to call twice."""
