"""The Elasticsearch sink's targets as ``verify`` reads them: documents by ``_id`` (the sink's
own id rule, ``sinks.elasticsearch.types.document_id``) with a realtime ``mget``, tombstones
left out; keys by ``search_after`` through the alias (which hides tombstones) in a point in
time. ``_source`` is parsed with every digit kept (``exactjson``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from fanout.errors import MappingError
from fanout.ops.verify.exactjson import EXACT_SERIALIZERS
from fanout.ops.verify.targets import Names, TargetReader, TargetRow, TargetTable
from fanout.settings import ElasticsearchSettings
from sinks.elasticsearch.schema import index_name
from sinks.elasticsearch.sink import client_options
from sinks.elasticsearch.types import DELETED_FIELD, document_id

_KEEP_ALIVE = "5m"


class ElasticsearchReader(TargetReader):
    sink = "elasticsearch"

    def __init__(self, settings: ElasticsearchSettings) -> None:
        self._prefix = settings.index_prefix
        self._es = Elasticsearch(**client_options(settings), serializers=EXACT_SERIALIZERS)

    def describe(self, target: str) -> TargetTable | None:
        try:  # the name the sink derives for a target Elasticsearch would refuse
            alias = self._prefix + index_name(self._prefix, target)
        except MappingError:
            return None  # no index can hold it: the sink dead-letters its events
        try:
            mapping = self._es.indices.get_mapping(index=alias)
        except NotFoundError:
            return None
        fields: set[str] = set()
        for index in mapping.body.values():
            fields.update(index.get("mappings", {}).get("properties", {}))
        # Fields appear in the mapping as documents bring them; a column every row holds NULL
        # of may be unmapped, so every column is read from _source (absent = NULL).
        self._es.indices.refresh(index=alias)
        return TargetTable(alias, frozenset(fields), parsed_json=True, nonfinite_null=True)

    def count(self, table: TargetTable) -> int:
        return int(self._es.count(index=table.name)["count"])

    def _fetch(
        self, table: TargetTable, key: Names, keys: Sequence[TargetRow], columns: Names
    ) -> list[TargetRow]:
        ids = [document_id({name: k[name] for name in key}) for k in keys]
        answer = self._es.mget(index=table.name, ids=ids, realtime=True)
        rows = []
        for doc in answer["docs"]:
            source = doc.get("_source") if doc.get("found") else None
            if source is not None and not source.get(DELETED_FIELD):
                rows.append({name: source[name] for name in columns if name in source})
        return rows

    def scan_keys(self, table: TargetTable, key: Names, size: int) -> Iterator[list[TargetRow]]:
        pit = self._es.open_point_in_time(index=table.name, keep_alive=_KEEP_ALIVE)["id"]
        try:
            after: list[Any] | None = None
            while True:
                body: dict[str, Any] = {
                    "size": size,
                    "pit": {"id": pit, "keep_alive": _KEEP_ALIVE},
                    "sort": ["_shard_doc"],
                    "query": {"bool": {"must_not": {"term": {DELETED_FIELD: True}}}},
                    "_source": list(key),
                }
                if after is not None:
                    body["search_after"] = after
                hits = self._es.search(**body)["hits"]["hits"]
                page = [{name: hit["_source"].get(name) for name in key} for hit in hits]
                if page:
                    yield page
                if len(hits) < size:
                    return
                after = hits[-1]["sort"]
        finally:
            self._es.close_point_in_time(id=pit)

    def close(self) -> None:
        self._es.close()
