"""The Elasticsearch sink: one index per routed table, kept at the newest event per key.

Delivery guarantee: at-least-once in, effectively-once state out. ``write`` may be called again
with the same batch, or with older batches, in any order: every document is written with
``version_type=external_gte`` and the event's version, so an older event never replaces a newer
one, and a delete is a *tombstone document* (not an Elasticsearch delete, whose version is
forgotten after ``index.gc_deletes``), so an older upsert arriving after a delete stays out.
Searches go through an alias that hides tombstones. Tombstones are purged after
``tombstone_retention_hours``; an upsert older than a purged delete would resurrect the row.
A truncate deletes what is older than it and is remembered in the meta index, so older events
replayed later are dropped. Design and caveats: ``docs/sinks/elasticsearch.md``.

Errors (mapped in ``sinks.elasticsearch.errors``): store unreachable / overloaded -> RetryableError
(after retrying only the failed bulk items a few times); a document Elasticsearch refuses
(mapping, parse, size) -> a Failure with Elasticsearch's type and reason; version conflicts are
stale writes, counted in ``fanout_stale_events_total``, not errors.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

from elasticsearch import Elasticsearch

from fanout.errors import FanoutError, MappingError
from fanout.events import ChangeEvent, Failure, Op
from fanout.runtime.metrics import EVENTS_WRITTEN, STALE_SKIPPED
from fanout.settings import ElasticsearchSettings
from sinks.elasticsearch.errors import es_errors
from sinks.elasticsearch.schema import Indices, check_target
from sinks.elasticsearch.types import Collapsed, bulk_lines, collapse
from sinks.elasticsearch.write import BulkReport, BulkWriter, Entry

log = logging.getLogger(__name__)
PURGE_STEP = 5000  # tombstones deleted per write() at most


def client_options(settings: ElasticsearchSettings) -> dict[str, Any]:
    """Keyword arguments for ``Elasticsearch(...)`` (the only place secrets are unwrapped)."""
    options: dict[str, Any] = {
        "hosts": settings.hosts,
        "request_timeout": settings.request_timeout_s,
        "verify_certs": settings.verify_certs,
        "retry_on_timeout": False,
    }
    if settings.ca_certs:
        options["ca_certs"] = settings.ca_certs
    if settings.api_key is not None:
        options["api_key"] = settings.api_key.get_secret_value()
    elif settings.username:
        password = settings.password.get_secret_value() if settings.password else ""
        options["basic_auth"] = (settings.username, password)
    return options


class ElasticsearchSink:
    name: ClassVar[str] = "elasticsearch"

    def __init__(self, settings: ElasticsearchSettings) -> None:
        self._settings = settings
        self._client: Elasticsearch | None = None
        self._indices: Indices | None = None
        self._bulk: BulkWriter | None = None
        self._checked_targets: dict[str, str | MappingError] = {}
        self._next_purge = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, create the meta index and the indices of explicitly routed tables."""
        if self._client is None:
            self._client = Elasticsearch(**client_options(self._settings))
            self._indices = Indices(self._client, self._settings)
            self._bulk = BulkWriter(self._client, self._settings, self._recreate)
        with es_errors("open"):
            self._client.cluster.health()
            self._require_indices().ensure_meta()
        for target in self._routed_targets():
            try:
                self._ensure(check_target(self._settings.index_prefix, target))
            except MappingError as exc:  # its events will fail one by one, with this reason
                log.warning("cannot create index", extra={"target": target, "error": str(exc)})
        self._next_purge = time.monotonic()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._indices = self._bulk = None

    # -- writing -----------------------------------------------------------------------------

    def write(self, batch: Sequence[ChangeEvent]) -> Sequence[Failure]:
        indices = self._require_indices()
        collapsed = collapse(batch, self._target_of)
        with es_errors("write"):
            self._ensure_targets(collapsed)
            truncated = self._apply_truncates(collapsed)
            floors = indices.truncate_floors(collapsed.targets)
            entries = self._entries(collapsed, floors)
            report = self._require_bulk().write(entries)
            self._catch_up_truncates(collapsed.targets, floors)
        self._count(report, truncated)
        self._maybe_purge()
        return [*collapsed.failures, *report.failures]

    def purge_tombstones(
        self, older_than: dt.timedelta | None = None, limit: int | None = None
    ) -> int:
        """Delete up to ``limit`` tombstones older than ``older_than`` (default: the retention)
        in every index this process has used; returns how many were deleted."""
        retention = older_than
        if retention is None:
            retention = dt.timedelta(hours=self._settings.tombstone_retention_hours)
        indices = self._require_indices()
        with es_errors("purge tombstones"):
            return indices.purge_tombstones(indices.known_targets, retention, limit)

    def _target_of(self, event: ChangeEvent) -> str:
        # Without routing (direct use) the target defaults like routing's "{table}".
        target = event.target or event.table.rpartition(".")[2]
        checked = self._checked_targets.get(target)
        if checked is None:
            try:
                checked = check_target(self._settings.index_prefix, target)
            except MappingError as exc:
                checked = exc
            self._checked_targets[target] = checked
        if isinstance(checked, MappingError):
            raise MappingError(str(checked))
        return checked

    def _ensure_targets(self, collapsed: Collapsed) -> None:
        for target in collapsed.targets:
            try:
                self._ensure(target)
            except MappingError as exc:  # e.g. a name taken by an index, a bad mapping
                collapsed.drop_target(target, exc)

    def _ensure(self, target: str) -> None:
        with es_errors(f"create index for {target!r}"):
            self._require_indices().ensure(target)

    def _apply_truncates(self, collapsed: Collapsed) -> dict[str, int]:
        indices = self._require_indices()
        versions = collapsed.truncate_versions()
        for target, version in versions.items():
            indices.record_truncate(target, version)
            deleted = indices.delete_older_than(target, version)
            log.info("truncated", extra={"index": target, "version": version, "deleted": deleted})
        return {target: len(collapsed.truncates[target]) for target in versions}

    def _entries(self, collapsed: Collapsed, floors: dict[str, int]) -> list[Entry]:
        indices = self._require_indices()
        now_iso = dt.datetime.now(dt.UTC).isoformat()
        entries: list[Entry] = []
        for (target, doc_id), event in collapsed.latest.items():
            if event.version < floors.get(target, 0):
                STALE_SKIPPED.labels(self.name, target).inc()
                continue
            try:
                lines = bulk_lines(indices.alias(target), doc_id, event, now_iso)
            except MappingError as exc:
                collapsed.failures.append(Failure(event.origin, "write", exc, event))
                continue
            entries.append(Entry(target, event, lines))
        return entries

    def _catch_up_truncates(self, targets: list[str], before: dict[str, int]) -> None:
        """A truncate recorded by another process while this batch was in flight: delete what
        this batch wrote below it."""
        indices = self._require_indices()
        for target, version in indices.truncate_floors(targets).items():
            if version > before.get(target, 0):
                indices.delete_older_than(target, version)

    def _count(self, report: BulkReport, truncated: dict[str, int]) -> None:
        written = Counter((entry.target, entry.event.op.value) for entry in report.applied)
        for target, count in truncated.items():
            written[(target, Op.TRUNCATE.value)] = count
        for (target, op), count in written.items():
            EVENTS_WRITTEN.labels(self.name, target, op).inc(count)
        for target, count in Counter(entry.target for entry in report.stale).items():
            STALE_SKIPPED.labels(self.name, target).inc(count)

    def _maybe_purge(self) -> None:
        """One bounded purge step per interval; a step that hit its limit continues with the
        next batch, so a large backlog is spread over many writes."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + self._settings.tombstone_purge_interval_minutes * 60
        try:
            deleted = self.purge_tombstones(limit=PURGE_STEP)
        except FanoutError as exc:  # best effort: the next interval tries again
            log.warning("tombstone purge failed", extra={"error": str(exc)})
            return
        if deleted:
            log.info("purged tombstones", extra={"deleted": deleted})
        if deleted >= PURGE_STEP:
            self._next_purge = now

    def _recreate(self, target: str) -> None:
        self._require_indices().forget(target)
        self._ensure(target)

    # -- plumbing ----------------------------------------------------------------------------

    def _routed_targets(self) -> list[str]:
        tables = self._settings.routing.tables
        return sorted({route.target for route in tables.values() if route.target})

    def _require_indices(self) -> Indices:
        if self._indices is None:
            raise RuntimeError("ElasticsearchSink.write/purge called before open()")
        return self._indices

    def _require_bulk(self) -> BulkWriter:
        if self._bulk is None:
            raise RuntimeError("ElasticsearchSink.write called before open()")
        return self._bulk
