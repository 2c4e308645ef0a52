"""Deleting the documents a query matches, without ``_delete_by_query``.

Package-private helper of ``sinks.elasticsearch.sink``, used by truncates and tombstone purges.
``_delete_by_query`` lives in Elasticsearch's ``reindex`` module, which minimal distributions
(the integration-test zip the devstack runs) do not ship; a scroll plus bulk deletes works on
every distribution. Each delete is guarded by the ``_seq_no``/``_primary_term`` the scroll
saw, so a document rewritten in the meantime is left alone (like ``conflicts=proceed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from elasticsearch import Elasticsearch, helpers

from sinks.elasticsearch.errors import item_failure

_SCROLL_SIZE = 1000
_GONE_OR_CHANGED = frozenset({404, 409})  # deleted meanwhile / rewritten since the scroll


def delete_matching(
    client: Elasticsearch, index: str, query: dict[str, Any], limit: int | None = None
) -> int:
    """Delete (at most ``limit``) documents of ``index`` that ``query`` matches now; returns the
    number deleted. Only refreshed documents are seen: refresh first if that matters."""
    hits = _scan(client, index, query)
    if limit is not None:
        hits = islice(hits, limit)
    deleted = 0
    for ok, result in helpers.streaming_bulk(
        client,
        (_delete_action(hit) for hit in hits),
        chunk_size=_SCROLL_SIZE,
        raise_on_error=False,
        raise_on_exception=False,
        max_retries=0,
    ):
        item = next(iter(result.values()))
        if ok:
            deleted += 1
        elif int(item.get("status") or 500) not in _GONE_OR_CHANGED:
            raise item_failure(f"delete in {index}", item)
    return deleted


def _scan(client: Elasticsearch, index: str, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
    body = {"query": query, "_source": False, "seq_no_primary_term": True}
    yield from helpers.scan(
        client, index=index, query=body, size=_SCROLL_SIZE, scroll="5m", ignore_unavailable=True
    )


def _delete_action(hit: dict[str, Any]) -> dict[str, Any]:
    return {
        "_op_type": "delete",
        "_index": hit["_index"],
        "_id": hit["_id"],
        "if_seq_no": hit["_seq_no"],
        "if_primary_term": hit["_primary_term"],
    }
