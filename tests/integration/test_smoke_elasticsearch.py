"""Elasticsearch smoke test: index a document (version-guarded) and find it by search."""

from __future__ import annotations

import pytest
from elasticsearch import ConflictError, Elasticsearch

from tests.support.pipeline import unique


def test_index_and_search(es: Elasticsearch) -> None:
    index = unique("smoke_es")
    es.indices.create(
        index=index, mappings={"properties": {"name": {"type": "text"}, "sku": {"type": "keyword"}}}
    )
    try:
        es.index(
            index=index,
            id="1",
            document={"name": "blue widget", "sku": "W-1"},
            version=2,
            version_type="external_gte",
            refresh="wait_for",
        )
        with pytest.raises(ConflictError):  # an older version never overwrites a newer one
            es.index(
                index=index,
                id="1",
                document={"name": "stale", "sku": "W-0"},
                version=1,
                version_type="external_gte",
            )

        hits = es.search(index=index, query={"match": {"name": "widget"}})["hits"]
        assert hits["total"]["value"] == 1
        assert hits["hits"][0]["_source"] == {"name": "blue widget", "sku": "W-1"}
        assert es.get(index=index, id="1")["_version"] == 2
    finally:
        es.indices.delete(index=index)
