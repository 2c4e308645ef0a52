"""The bulk writer against a scripted client: requests, verdicts, item retries (no services)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Op, Origin
from fanout.settings import ElasticsearchSettings
from sinks.elasticsearch.types import bulk_lines
from sinks.elasticsearch.write import BulkWriter, Entry, chunks

Answer = Callable[[dict[str, Any]], dict[str, Any]]  # bulk header -> response item


def entry(key: int, target: str = "t") -> Entry:
    origin = Origin("tp", 0, key)
    event = ChangeEvent(Op.UPSERT, "s.t", {"id": key}, {"id": key}, 1, 1, origin, (), target)
    return Entry(target, event, bulk_lines(target, str(key), event, "now"))


@dataclass
class Response:
    body: dict[str, Any]


@dataclass
class ScriptedClient:
    """Answers each bulk request item by item; raises ``refuse`` for a whole request."""

    answer: Answer
    refuse: ApiError | None = None
    requests: list[list[dict[str, Any]]] = field(default_factory=list)

    def bulk(self, *, operations: bytes, **params: Any) -> Response:
        assert params["require_alias"] is True
        lines = [json.loads(line) for line in operations.splitlines()]
        headers = [line["index"] for line in lines[::2]]
        self.requests.append(headers)
        if self.refuse is not None:
            raise self.refuse
        return Response({"items": [{"index": self.answer(h)} for h in headers]})


def api_error(status: int) -> ApiError:
    meta = ApiResponseMeta(status, "1.1", HttpHeaders(), 0.0, NodeConfig("http", "h", 9200))
    return ApiError("refused", meta, {"error": {"type": "x", "reason": "y"}, "status": status})


def writer(client: ScriptedClient, **settings: Any) -> tuple[BulkWriter, list[str]]:
    recreated: list[str] = []
    bulk = BulkWriter(
        client,  # type: ignore[arg-type]
        ElasticsearchSettings(**settings),
        recreated.append,
        sleep=lambda _: None,
    )
    return bulk, recreated


def test_chunks_are_bounded_by_count_and_bytes() -> None:
    entries = [entry(key) for key in range(5)]
    size = len(entries[0].lines)
    assert [len(c) for c in chunks(entries, 2, 10**6)] == [2, 2, 1]
    assert [len(c) for c in chunks(entries, 100, 2 * size)] == [2, 2, 1]
    assert [len(c) for c in chunks(entries, 100, 1)] == [1, 1, 1, 1, 1]  # too big: alone


def test_each_item_gets_its_verdict_and_only_passing_failures_are_sent_again() -> None:
    statuses = {"1": [201], "2": [409], "3": [400], "4": [429, 201], "5": [404, 200]}

    def answer(header: dict[str, Any]) -> dict[str, Any]:
        status = statuses[header["_id"]].pop(0)
        kind = {409: "version_conflict_engine_exception", 404: "index_not_found_exception"}
        error = {"type": kind.get(status, "some_exception"), "reason": "r"}
        return {"status": status} if status < 300 else {"status": status, "error": error}

    client = ScriptedClient(answer)
    bulk, recreated = writer(client, bulk_max_actions=2)
    report = bulk.write([entry(key, "t5" if key == 5 else "t") for key in range(1, 6)])

    assert [e.event.key["id"] for e in report.applied] == [1, 4, 5]
    assert [e.event.key["id"] for e in report.stale] == [2]
    assert [(e.event.key["id"], str(error)) for e, error in report.rejected] == [
        (3, "HTTP 400 some_exception: r")
    ]
    assert recreated == ["t5"]
    assert [[h["_id"] for h in r] for r in client.requests] == [
        ["1", "2"],
        ["3", "4"],
        ["5"],
        ["4", "5"],
    ]
    assert all(h["version_type"] == "external_gte" for r in client.requests for h in r)


def test_a_whole_request_refused_as_malformed_is_a_permanent_error() -> None:
    client = ScriptedClient(lambda _: {"status": 201}, refuse=api_error(413))
    bulk, _ = writer(client)
    with pytest.raises(MappingError, match="bulk request refused: HTTP 413"):
        bulk.write([entry(1), entry(2)])


def test_a_whole_request_refused_while_overloaded_is_retried() -> None:
    client = ScriptedClient(lambda _: {"status": 201}, refuse=api_error(503))
    bulk, _ = writer(client)
    with pytest.raises(Exception, match="still failing after 4 attempts: HTTP 503"):
        bulk.write([entry(1)])
    assert len(client.requests) == 4
