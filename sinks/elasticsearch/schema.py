"""Indices, aliases and the meta index of the Elasticsearch sink.

Package-private helper of ``sinks.elasticsearch.sink``. For a target ``T`` and prefix ``P``:

* ``P T.fanout`` is the physical index. It holds live documents and tombstones (deletes).
* ``P T`` is an alias of it with the filter ``must_not term _fanout_deleted: true``: searches
  through it never see tombstones. The sink writes through the alias too (``require_alias``),
  so a deleted index is never auto-created without its alias.
* ``P fanout.meta`` holds one document per truncated target, id = target,
  ``truncate_version`` written with ``external_gte``: events older than it are dropped.

Mappings: the bookkeeping fields explicitly; JSON columns explicitly too, as each first shows up
(:meth:`Indices.map_json`, ``json_mapping`` / ``json_column_mappings``: by default an object
with ``enabled: false``, kept in ``_source`` and never indexed, so no row's shape can conflict
with another's); everything else dynamically, with two dynamic templates (after any of the
settings' own) so that no number is refused for its size: integers as ``long`` with
``ignore_malformed`` (one beyond 64 bits is kept in ``_source``, left out of the index and named
in ``_ignored``), fractions as ``double`` (Elasticsearch's default ``float`` refuses a double
beyond 3.4e38).

Index names: Elasticsearch refuses uppercase, spaces and ``\\ / * ? " < > | , # :`` anywhere, a
leading ``_ - +`` (and ``.``, which marks hidden and system indices), and names over 255 bytes;
``T.fanout`` and ``fanout.meta`` are the sink's own. A target it would refuse is not refused
but renamed by one documented rule (:func:`index_name`, ``NameRules.derive``): lowercased,
refused characters replaced by ``_``, leading ``_ - + .`` dropped (without a prefix), a name too
long cut and ended with a hash. The rules that do not depend on the prefix are :data:`NAMES`.

Callers wrap these calls in ``sinks.elasticsearch.errors.mapped_errors``.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Iterable
from typing import Any

from elasticsearch import BadRequestError, Elasticsearch

from fanout.settings import ElasticsearchSettings
from sinks.base.names import NameRules
from sinks.elasticsearch.cleanup import delete_matching
from sinks.elasticsearch.types import (
    DELETED_AT_FIELD,
    DELETED_FIELD,
    SOURCE_TS_FIELD,
    VERSION_FIELD,
)

PHYSICAL_SUFFIX = ".fanout"
META_INDEX = "fanout.meta"
MAX_INDEX_NAME_BYTES = 255
FANOUT_PROPERTIES: dict[str, Any] = {
    VERSION_FIELD: {"type": "long"},
    SOURCE_TS_FIELD: {"type": "long"},
    DELETED_FIELD: {"type": "boolean"},
    DELETED_AT_FIELD: {"type": "date"},
}
HIDE_TOMBSTONES: dict[str, Any] = {"bool": {"must_not": {"term": {DELETED_FIELD: True}}}}
_META_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {"truncate_version": {"type": "long"}, "truncated_at": {"type": "date"}},
}
NAMES = NameRules(
    what="Elasticsearch index",
    invalid=re.compile(r'[\\/*?"<>| ,#:A-Z]'),
    invalid_hint='lowercase, no spaces and none of \\ / * ? " < > | , # : '
    "(set routing.tables.<table>.target)",
    reserved_prefixes=(),  # only the names below are fanout's own
    reserved_suffixes=(PHYSICAL_SUFFIX,),
    reserved_names=frozenset({META_INDEX}),
    lowercase=True,
)
_LEADING = ("_", "-", "+", ".")
JSON_MAPPINGS: dict[str, dict[str, Any] | None] = {
    "stored": {"type": "object", "enabled": False},
    "flattened": {"type": "flattened"},
    "dynamic": None,  # no explicit mapping: Elasticsearch's dynamic mapping decides
}
DYNAMIC_TEMPLATES: list[dict[str, Any]] = [
    {
        "fanout_integers": {
            "match_mapping_type": "long",
            "mapping": {"type": "long", "ignore_malformed": True},
        }
    },
    {"fanout_fractions": {"match_mapping_type": "double", "mapping": {"type": "double"}}},
]
log = logging.getLogger(__name__)


def index_rules(prefix: str) -> NameRules:
    """The rules for a target's name under ``prefix``: alias ``prefix + name``, index
    ``prefix + name + .fanout``; a leading ``_ - + .`` only matters without a prefix."""
    room = MAX_INDEX_NAME_BYTES - len((prefix + PHYSICAL_SUFFIX).encode())
    return dataclasses.replace(NAMES, max_bytes=room, invalid_leading=() if prefix else _LEADING)


def index_name(prefix: str, target: str) -> str:
    """The name ``target``'s alias and index are made of (without the prefix): ``target``
    itself when Elasticsearch takes it, else derived from it (MappingError when nothing valid
    is left). Deterministic: a restart, another process or a backfill derive the same name."""
    return index_rules(prefix).derive(target)


class Indices:
    """Creates and verifies each target's index + alias once per process; truncates; purges."""

    def __init__(self, client: Elasticsearch, settings: ElasticsearchSettings) -> None:
        self._client = client
        self._settings = settings
        self._prefix = settings.index_prefix
        self._ready: set[str] = set()
        self._fields: dict[str, set[str]] = {}  # per target: fields whose mapping is settled
        self._json: dict[str, set[str]] = {}  # per target: its JSON columns (mapped on re-creation)

    def alias(self, target: str) -> str:
        return self._prefix + target

    def physical(self, target: str) -> str:
        return self._prefix + target + PHYSICAL_SUFFIX

    @property
    def meta(self) -> str:
        return self._prefix + META_INDEX

    @property
    def known_targets(self) -> list[str]:
        return sorted(self._ready)

    def ensure(self, target: str) -> None:
        """Create the index with its alias, or make sure an existing one has both."""
        if target in self._ready:
            return
        mappings = self.mappings()
        try:
            self._client.indices.create(
                index=self.physical(target),
                settings=self._settings.index_settings or None,
                mappings=mappings,
                aliases={self.alias(target): {"filter": HIDE_TOMBSTONES}},
            )
        except BadRequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
            self._fields[target] = self._complete_existing(target)
        else:
            self._fields[target] = set(mappings["properties"])
        self._ready.add(target)
        known = self._json.get(target)
        if known:  # an index deleted behind the sink's back: its JSON columns before documents
            self.map_json(target, set(known))

    def forget(self, target: str) -> None:
        """Verify ``target`` again on next use (its alias or index went missing)."""
        self._ready.discard(target)
        self._fields.pop(target, None)

    def mappings(self) -> dict[str, Any]:
        mappings = copy.deepcopy(self._settings.mappings)
        mappings["properties"] = {**mappings.get("properties", {}), **FANOUT_PROPERTIES}
        mappings["dynamic_templates"] = [
            *mappings.get("dynamic_templates", []),
            *copy.deepcopy(DYNAMIC_TEMPLATES),
        ]
        return mappings

    def _complete_existing(self, target: str) -> set[str]:
        """Add the bookkeeping fields and the alias; the fields the index maps already."""
        index = self.physical(target)
        self._client.indices.put_mapping(index=index, properties=FANOUT_PROPERTIES)
        self._client.indices.put_alias(index=index, name=self.alias(target), filter=HIDE_TOMBSTONES)
        found = self._client.indices.get_mapping(index=index)
        return {
            name
            for mapping in found.body.values()
            for name in mapping.get("mappings", {}).get("properties", {})
        }

    def map_json(self, target: str, columns: Iterable[str]) -> None:
        """Map the JSON columns the target's index does not map yet (once per process each),
        before a document carrying them is written. A field mapped otherwise meanwhile (by
        hand, or dynamically by another writer) keeps its mapping; that is logged."""
        columns = set(columns)
        self._json.setdefault(target, set()).update(columns)
        settled = self._fields.setdefault(target, set())
        for column in sorted(columns - settled):
            settled.add(column)
            mapping = self.json_mapping(target, column)
            if mapping is None:
                continue
            try:
                self._client.indices.put_mapping(
                    index=self.physical(target), properties={column: mapping}
                )
            except BadRequestError as exc:
                log.warning(
                    "JSON column keeps the mapping its index has",
                    extra={"index": self.physical(target), "column": column, "error": str(exc)},
                )

    def json_mapping(self, target: str, column: str) -> dict[str, Any] | None:
        """The mapping of a JSON column (None: dynamic), per column, else the sink's default."""
        chosen = self._settings.json_column_mappings.get(target, {}).get(column)
        if chosen is None:
            chosen = self._settings.json_mapping
        return copy.deepcopy(chosen) if isinstance(chosen, dict) else JSON_MAPPINGS[chosen]

    def ensure_meta(self) -> None:
        try:
            self._client.indices.create(
                index=self.meta,
                settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"},
                mappings=_META_MAPPINGS,
            )
        except BadRequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise

    def truncate_watermarks(self, targets: list[str]) -> dict[str, int]:
        """The recorded truncate version per target (targets never truncated are absent)."""
        if not targets:
            return {}
        response = self._client.mget(index=self.meta, ids=targets, realtime=True)
        return {
            doc["_id"]: int(doc["_source"]["truncate_version"])
            for doc in response["docs"]
            if doc.get("found")
        }

    def record_truncate(self, target: str, version: int) -> None:
        """Remember the truncate; an older one (a replay) does not lower it."""
        self._client.options(ignore_status=409).index(
            index=self.meta,
            id=target,
            document={"truncate_version": version, "truncated_at": _now_iso()},
            version=version,
            version_type="external_gte",
            refresh=False,
        )

    def delete_older_than(self, target: str, version: int) -> int:
        """Delete documents and tombstones older than ``version`` (a truncate); newer stay."""
        index = self.physical(target)
        self._client.indices.refresh(index=index)  # the scroll sees only refreshed documents
        query = {"range": {VERSION_FIELD: {"lt": version}}}
        deleted = delete_matching(self._client, index, query)
        self._client.indices.refresh(index=index)
        return deleted

    def purge_tombstones(
        self, targets: list[str], older_than: dt.timedelta, limit: int | None = None
    ) -> int:
        """Delete up to ``limit`` tombstones written more than ``older_than`` ago."""
        if not targets:
            return 0
        cutoff = (dt.datetime.now(dt.UTC) - older_than).isoformat()
        indices = ",".join(self.physical(target) for target in targets)
        self._client.indices.refresh(index=indices, ignore_unavailable=True)
        query = {
            "bool": {
                "filter": [
                    {"term": {DELETED_FIELD: True}},
                    {"range": {DELETED_AT_FIELD: {"lt": cutoff}}},
                ]
            }
        }
        return delete_matching(self._client, indices, query, limit)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
