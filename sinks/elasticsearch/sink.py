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

What this sink adds to the batch template (``sinks.base.batch``): index and alias names
(``check_target``), the truncate versions of the meta index (``truncate_watermarks``, one
``mget``), the index and alias of each target, created once per process, and each change's
``_id`` (``prepare``), and truncates followed by one stream of bulk requests for every target of
the batch (``apply``). Its error table is ``sinks.elasticsearch.errors``: store unreachable or
overloaded -> TRANSIENT (after retrying only the failed bulk items a few times); a document
Elasticsearch refuses (mapping, parse, size) -> a Failure with Elasticsearch's type and reason;
a version conflict is a stale write, not an error.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from elasticsearch import Elasticsearch

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Column, Op
from fanout.redact import mask_text
from fanout.settings import ElasticsearchSettings
from sinks.base.batch import BatchSink, Failures, Prepared, TargetBatch
from sinks.base.errors import Verdict
from sinks.elasticsearch.carry import SOURCE_SERIALIZERS, carry_forward
from sinks.elasticsearch.errors import classify, mapped_errors
from sinks.elasticsearch.schema import Indices, index_name
from sinks.elasticsearch.types import NO_JSON, JsonColumnCache, bulk_lines, document_id
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


@dataclass(slots=True)
class Index:
    """A target's index as one batch writes it."""

    alias: str  # the name bulk actions write to: the alias (``require_alias``)
    refused: MappingError | None = None  # why the index cannot be used: all its events fail


class ElasticsearchSink(BatchSink[str, Index]):
    """Keeps ``<prefix><target>`` aliases at the newest event per key; the payload of a change
    is its document ``_id``."""

    name: ClassVar[str] = "elasticsearch"

    def __init__(self, settings: ElasticsearchSettings) -> None:
        super().__init__()
        self._settings = settings
        self._client: Elasticsearch | None = None
        self._indices: Indices | None = None
        self._bulk: BulkWriter | None = None
        self._watermarks: dict[str, int] = {}  # the stored truncate versions, read this write
        self._json_columns = JsonColumnCache()
        self.purge_interval_s = 60.0 * settings.tombstone_purge_interval_minutes

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, create the meta index and the indices of explicitly routed tables."""
        if self._client is None:
            self._client = Elasticsearch(
                **client_options(self._settings), serializers=SOURCE_SERIALIZERS
            )
            self._indices = Indices(self._client, self._settings)
            self._bulk = BulkWriter(self._client, self._settings, self._recreate)
        # Named with its hosts: a refusal at start (credentials, a certificate) says where.
        with mapped_errors(f"open at {self._where()}"):
            self._client.cluster.health()
            self.indices.ensure_meta()
        for target in self._routed_targets():
            try:
                self._ensure(self.check_target(target))
            except MappingError as exc:  # its events will fail one by one, with this reason
                log.warning("cannot create index", extra={"target": target, "error": str(exc)})

    def _where(self) -> str:
        return ", ".join(mask_text(host) for host in self._settings.hosts)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._indices = self._bulk = None

    # -- the template's hooks ----------------------------------------------------------------

    def check_target(self, target: str) -> str:
        return index_name(self._settings.index_prefix, target)

    def classify(self, exc: BaseException) -> Verdict | None:
        return classify(exc)

    def truncate_watermarks(self, targets: list[str]) -> dict[str, int]:
        self._watermarks = self.indices.truncate_watermarks(targets)
        return self._watermarks

    def prepare(
        self, target: str, changes: list[ChangeEvent], failures: Failures
    ) -> Prepared[str, Index]:
        alias = self.indices.alias(target)
        try:
            self._ensure(target)
        except MappingError as exc:  # e.g. a name taken by an index, mappings ES refuses
            for event in changes:
                failures.reject(event, exc)
            return Prepared(Index(alias, exc), [None] * len(changes))
        ids: list[str | None] = []
        append = ids.append
        for event in changes:
            try:
                append(document_id(event.key))
            except MappingError as exc:  # no key: the template refuses those first
                failures.reject(event, exc)
                append(None)
        return Prepared(Index(alias), ids)

    def apply(self, batches: list[TargetBatch[str, Index]], failures: Failures) -> None:
        for batch in batches:
            if batch.truncate is not None:
                self._truncate(batch, failures)
        entries = self._entries(batches, failures)
        if not entries:
            return
        carried = carry_forward(self._client, self.indices.physical, entries)
        report = self.bulk.write(entries)
        carried.count(report.applied)
        self._catch_up_truncates(batches)
        for entry, error in report.rejected:
            failures.reject(entry.event, error)
        _record(batches, report)

    def purge_tombstones(self) -> bool:
        """One step of the periodic purge: at most ``PURGE_STEP`` tombstones older than the
        retention; a step that hit the limit continues with the next write."""
        deleted = self.delete_tombstones(limit=PURGE_STEP)
        if deleted:
            log.info("purged tombstones", extra={"deleted": deleted})
        return deleted >= PURGE_STEP

    def delete_tombstones(
        self, older_than: dt.timedelta | None = None, limit: int | None = None
    ) -> int:
        """Delete up to ``limit`` tombstones older than ``older_than`` (default: the retention)
        in every index this process has used; returns how many were deleted."""
        retention = older_than
        if retention is None:
            retention = dt.timedelta(hours=self._settings.tombstone_retention_hours)
        indices = self.indices
        with mapped_errors("purge tombstones"):
            return indices.purge_tombstones(indices.known_targets, retention, limit)

    # -- steps -------------------------------------------------------------------------------

    def _ensure(self, target: str) -> None:
        with mapped_errors(f"create index for {target!r}"):
            self.indices.ensure(target)

    def _truncate(self, batch: TargetBatch[str, Index], failures: Failures) -> None:
        """Record the truncate, then delete what is older (newer documents stay, so replaying
        an old truncate never wipes rows written after it)."""
        refused = batch.context.refused
        if refused is not None:  # no index to truncate: the truncates fail like the changes
            for event in batch.events:
                if event.op is Op.TRUNCATE:
                    failures.reject(event, refused)
            batch.truncate, batch.truncates = None, 0  # nothing of the target was applied
            return
        version = batch.truncate_version
        assert version is not None
        indices = self.indices
        indices.record_truncate(batch.target, version)
        deleted = indices.delete_older_than(batch.target, version)
        log.info("truncated", extra={"index": batch.target, "version": version, "deleted": deleted})

    def _entries(self, batches: list[TargetBatch[str, Index]], failures: Failures) -> list[Entry]:
        """The bulk lines of every target's newest events, encoded once."""
        now_iso = dt.datetime.now(dt.UTC).isoformat()
        entries: list[Entry] = []
        append = entries.append
        json_columns = self._json_columns.of
        for batch in batches:
            target, alias = batch.target, batch.context.alias
            mapped: set[str] = set()
            schema: tuple[Column, ...] | None = None
            found = NO_JSON
            for event, doc_id in batch.newest:
                if event.columns is not schema or not schema:  # schemaless: per row
                    schema, found = event.columns, json_columns(event)
                if found.mapped:
                    mapped.update(found.mapped)
                try:
                    lines = bulk_lines(alias, doc_id, event, now_iso, found.nullable)
                except MappingError as exc:  # a value without a JSON form
                    failures.reject(event, exc)
                else:
                    append(Entry(target, event, lines))
            if mapped:  # JSON columns mapped before a document carries them
                self.indices.map_json(target, mapped)
        return entries

    def _catch_up_truncates(self, batches: list[TargetBatch[str, Index]]) -> None:
        """A truncate recorded by another process while this batch was in flight: delete what
        this batch wrote below it."""
        written = [batch for batch in batches if batch.newest]
        indices = self.indices
        recorded = indices.truncate_watermarks([batch.target for batch in written])
        for batch in written:
            version = recorded.get(batch.target, 0)
            known = max(self._watermarks.get(batch.target, 0), batch.truncate_version or 0)
            if version > known:
                indices.delete_older_than(batch.target, version)

    def _recreate(self, target: str) -> None:
        self.indices.forget(target)
        self._ensure(target)

    # -- plumbing ----------------------------------------------------------------------------

    def _routed_targets(self) -> list[str]:
        tables = self._settings.routing.tables
        return sorted({route.target for route in tables.values() if route.target})

    @property
    def indices(self) -> Indices:
        if self._indices is None:
            raise RuntimeError("ElasticsearchSink used before open()")
        return self._indices

    @property
    def bulk(self) -> BulkWriter:
        if self._bulk is None:
            raise RuntimeError("ElasticsearchSink used before open()")
        return self._bulk


def _record(batches: list[TargetBatch[str, Index]], report: BulkReport) -> None:
    """What the bulk requests did, per target: applied, or stale (a version conflict: the index
    holds a newer version). Rejected items are failures, neither applied nor stale."""
    by_target = {batch.target: batch for batch in batches}
    for (target, op), count in Counter(
        [(entry.target, entry.event.op) for entry in report.applied]
    ).items():
        by_target[target].applied[op] += count
    for target, count in Counter([entry.target for entry in report.stale]).items():
        by_target[target].stale += count
