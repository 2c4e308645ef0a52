"""Bulk writes with per-item verdicts; only the items that failed for a passing reason are retried.

Package-private helper of ``sinks.elasticsearch.sink``. Requests are bounded by count
(``bulk_max_actions``) and bytes (``bulk_max_bytes``), cut the way ``helpers.streaming_bulk``
cuts them. Each entry arrives encoded (its two NDJSON lines), so a request body is one join and
an item retried is sent again without encoding it again; the response carries only each item's
status and error (``filter_path``). Every action is version-guarded (``external_gte``), so
sending an item again (after a 429, a 5xx, a timeout, or a retried batch) can never make a
document older.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from fanout.errors import MappingError, RetryableError
from fanout.events import ChangeEvent
from fanout.settings import ElasticsearchSettings
from sinks.elasticsearch.errors import (
    ItemVerdict,
    bisect_error,
    denied_error,
    describe_error,
    item_error,
    item_verdict,
)

log = logging.getLogger(__name__)
_MAX_ITEM_BACKOFF_S = 5.0  # in-sink waits stay short: the runtime's retry takes over after
_ITEM_FIELDS = "items.*.status,items.*.error"  # all the verdicts need from a bulk response


@dataclass(slots=True)
class Entry:
    """One collapsed event and the bulk action that writes it, as two NDJSON lines."""

    target: str
    event: ChangeEvent
    lines: bytes


@dataclass(slots=True)
class BulkReport:
    """What became of each entry: applied, stale (the index holds a newer version), rejected."""

    applied: list[Entry] = field(default_factory=list)
    stale: list[Entry] = field(default_factory=list)
    rejected: list[tuple[Entry, MappingError]] = field(default_factory=list)
    retried_items: int = 0


class BulkWriter:
    """Sends entries, classifies each result, retries RETRY / NO_INDEX items a few times."""

    def __init__(
        self,
        client: Elasticsearch,
        settings: ElasticsearchSettings,
        recreate: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._settings = settings
        self._recreate = recreate  # called with a target whose alias went missing
        self._sleep = sleep

    def write(self, entries: list[Entry]) -> BulkReport:
        """Raises RetryableError when items still fail after the retries (the runtime retries
        the batch), PermanentError when a whole request was refused as malformed."""
        report = BulkReport()
        pending = entries
        last_reason = ""
        attempts = self._settings.bulk_item_retries + 1
        for attempt in range(attempts):
            if attempt:
                delay = self._backoff(attempt)
                log.info(
                    "retrying bulk items",
                    extra={"items": len(pending), "reason": last_reason, "delay_s": delay},
                )
                self._sleep(delay)
                report.retried_items += len(pending)
            pending, last_reason = self._send(pending, report)
            if not pending:
                return report
        raise RetryableError(
            f"{len(pending)} bulk item(s) still failing after {attempts} attempts: {last_reason}"
        )

    def _send(self, entries: list[Entry], report: BulkReport) -> tuple[list[Entry], str]:
        retry: list[Entry] = []
        reason = ""
        missing: set[str] = set()
        for entry, (ok, item) in zip(entries, self._results(entries), strict=True):
            verdict = item_verdict(ok, item)
            if verdict is ItemVerdict.APPLIED:
                report.applied.append(entry)
            elif verdict is ItemVerdict.STALE:
                report.stale.append(entry)
            elif verdict is ItemVerdict.REJECTED:
                report.rejected.append((entry, item_error(item)))
            elif verdict is ItemVerdict.BISECT:
                raise bisect_error(item)
            elif verdict is ItemVerdict.DENIED:
                raise denied_error(item)
            else:
                if verdict is ItemVerdict.NO_INDEX:
                    missing.add(entry.target)
                retry.append(entry)
                reason = f"HTTP {item.get('status')} {describe_error(item.get('error'))}"
        for target in sorted(missing):
            self._recreate(target)
        return retry, reason

    def _results(self, entries: list[Entry]) -> Iterator[tuple[bool, dict[str, Any]]]:
        """(ok, item) per entry, in order, one bulk request per chunk."""
        limits = (self._settings.bulk_max_actions, self._settings.bulk_max_bytes)
        for chunk in chunks(entries, *limits):
            yield from self._request(chunk)

    def _request(self, chunk: list[Entry]) -> list[tuple[bool, dict[str, Any]]]:
        try:
            response = self._client.bulk(
                # NDJSON bytes go through the client's serializer as they are (as in helpers)
                operations=b"".join(entry.lines for entry in chunk),  # type: ignore[arg-type]
                refresh=self._settings.refresh,
                require_alias=True,
                filter_path=_ITEM_FIELDS,
            )
        except ApiError as exc:
            # The whole request was refused: every item carries the error, marked the way
            # streaming_bulk marks it ("exception"), for item_verdict.
            failed = {"error": str(exc), "status": exc.status_code, "exception": exc}
            return [(False, failed)] * len(chunk)
        results = []
        for result in response.body["items"]:
            item = next(iter(result.values()))
            results.append((200 <= item.get("status", 500) < 300, item))
        return results

    def _backoff(self, attempt: int) -> float:
        retry = self._settings.retry
        cap_ms = min(
            retry.max_backoff_ms, retry.initial_backoff_ms * retry.multiplier ** (attempt - 1)
        )
        cap = min(_MAX_ITEM_BACKOFF_S, cap_ms / 1000)
        return cap / 2 + random.uniform(0, cap / 2)


def chunks(entries: list[Entry], max_actions: int, max_bytes: int) -> Iterator[list[Entry]]:
    """Consecutive runs of at most ``max_actions`` entries and ``max_bytes`` bytes (an entry
    larger than ``max_bytes`` goes alone)."""
    chunk: list[Entry] = []
    size = 0
    for entry in entries:
        if chunk and (len(chunk) == max_actions or size + len(entry.lines) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += len(entry.lines)
    if chunk:
        yield chunk
