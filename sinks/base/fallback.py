"""The next-newest event of a key, for when the store refused the newest one as it applied it.

Collapse offers a sink the newest valid event per key; the older ones are superseded. Some
stores refuse a single change only when they write it (Elasticsearch parses a document as it
indexes it and may refuse it for its mapping); the sink reports that from ``apply`` through
``Failures.reject``. The superseded events of that key were then superseded by a change that
never happened: a delete among them would be lost, and what the store holds would depend on
where the stream was cut into batches. So the template offers each such key's next-newest valid
event in another ``apply`` round (``BatchSink.write``), and so on until the store takes one or
none is left. Each refused event goes to the DLQ. A batch the store took whole pays nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from fanout.events import ChangeEvent
from sinks.base.collapse import collapse

P = TypeVar("P")


@dataclass(slots=True)
class Candidates(Generic[P]):
    """What collapse chose one target's newest events from (the template's own record)."""

    changes: list[ChangeEvent]  # as collapsed (columns merged), truncates apart
    payloads: list[P | None]  # None: the sink rejected the change in prepare
    key: tuple[str, ...]
    watermark: int  # changes older than this truncate version are dropped
    offered: set[int] | None = None  # id() of every change offered to apply so far

    def next_newest(
        self,
        offered_now: list[tuple[ChangeEvent, P]],
        refused: list[tuple[ChangeEvent, P]],
    ) -> list[tuple[ChangeEvent, P]]:
        """For each key of ``refused`` (some of ``offered_now``, the changes just offered): its
        newest valid change not offered yet, if any; ties go to the later one, as in collapse.
        """
        offered = self.offered
        if offered is None:
            offered = self.offered = set()
        offered.update(id(event) for event, _ in offered_now)
        events: list[ChangeEvent] = []
        payloads: list[P] = []
        for event, payload in zip(self.changes, self.payloads, strict=True):
            if payload is None or id(event) in offered or event.version < self.watermark:
                continue
            events.append(event)
            payloads.append(payload)
        # collapse builds identities: the refused keys' and the remaining changes' compare.
        keys = collapse([event for event, _ in refused], [p for _, p in refused], self.key)
        following = collapse(events, payloads, self.key).newest
        return [following[ident] for ident in keys.newest if ident in following]
