"""The Elasticsearch error table: requests and bulk items in the three classes, and connection
options (no services)."""

from __future__ import annotations

from typing import Any

import pytest
from elastic_transport import (
    ApiResponseMeta,
    ConnectionError,
    ConnectionTimeout,
    HttpHeaders,
    NodeConfig,
    SerializationError,
)
from elasticsearch import ApiError

from fanout.errors import MappingError, RetryableError
from fanout.settings import ElasticsearchSettings
from sinks.base.errors import ErrorClass
from sinks.elasticsearch.errors import (
    ItemVerdict,
    classify,
    describe_error,
    item_error,
    item_verdict,
    mapped_errors,
)
from sinks.elasticsearch.sink import client_options


def api_error(status: int, kind: str = "some_exception", reason: str = "why") -> ApiError:
    meta = ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=HttpHeaders(),
        duration=0.0,
        node=NodeConfig("http", "127.0.0.1", 9200),
    )
    return ApiError(kind, meta, {"error": {"type": kind, "reason": reason}, "status": status})


def item(status: int, kind: str | None = None, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"_index": "i", "_id": "1", "status": status, **extra}
    if kind:
        result["error"] = {"type": kind, "reason": f"{kind} reason"}
    return result


@pytest.mark.parametrize(
    ("status", "kind", "verdict"),
    [
        (409, "version_conflict_engine_exception", ItemVerdict.STALE),
        (400, "mapper_parsing_exception", ItemVerdict.REJECTED),
        (400, "document_parsing_exception", ItemVerdict.REJECTED),
        (400, "strict_dynamic_mapping_exception", ItemVerdict.REJECTED),
        (400, "illegal_argument_exception", ItemVerdict.REJECTED),
        (413, "max_bytes_length_exceeded_exception", ItemVerdict.REJECTED),
        (429, "es_rejected_execution_exception", ItemVerdict.RETRY),
        (503, "unavailable_shards_exception", ItemVerdict.RETRY),
        (500, "internal_server_error", ItemVerdict.RETRY),
        (403, "cluster_block_exception", ItemVerdict.RETRY),
        (404, "index_not_found_exception", ItemVerdict.NO_INDEX),
    ],
)
def test_bulk_items_are_classified(status: int, kind: str, verdict: ItemVerdict) -> None:
    assert item_verdict(False, item(status, kind)) is verdict


def test_successful_items_are_applied() -> None:
    assert item_verdict(True, item(201)) is ItemVerdict.APPLIED


def test_a_whole_chunk_that_failed_is_retried_or_bisected_by_status() -> None:
    # the bulk writer marks every item of a refused request with the exception it got
    chunk = {"error": "ApiError(503, ...)", "exception": api_error(503)}
    assert item_verdict(False, item(503, **chunk)) is ItemVerdict.RETRY
    assert item_verdict(False, item(429, **chunk)) is ItemVerdict.RETRY
    assert item_verdict(False, item(413, **chunk)) is ItemVerdict.BISECT
    assert item_verdict(False, item(400, **chunk)) is ItemVerdict.BISECT


def test_a_rejected_item_carries_the_type_and_reason_from_elasticsearch() -> None:
    rejected = item(400, "document_parsing_exception")
    rejected["error"]["caused_by"] = {"type": "illegal_argument_exception", "reason": "abc"}
    message = str(item_error(rejected))
    assert "document_parsing_exception: document_parsing_exception reason" in message
    assert "caused by illegal_argument_exception: abc" in message


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        *((api_error(status), ErrorClass.TRANSIENT) for status in (401, 403, 408, 429, 500, 503)),
        *((api_error(status), ErrorClass.DATA) for status in (400, 404, 409, 413, 422)),
        (ConnectionError("refused"), ErrorClass.TRANSIENT),
        (ConnectionTimeout("timed out"), ErrorClass.TRANSIENT),
        (SerializationError("no JSON form"), ErrorClass.DATA),
    ],
)
def test_the_error_table_puts_each_client_exception_in_its_class(
    exc: Exception, error_class: ErrorClass
) -> None:
    verdict = classify(exc)
    assert verdict is not None and verdict.error_class is error_class
    assert verdict.message.startswith("elasticsearch write: ")


def test_exceptions_that_are_not_the_clients_are_not_in_the_table() -> None:
    assert classify(ValueError("ours")) is None
    assert classify(RuntimeError("used before open()")) is None


@pytest.mark.parametrize("status", [401, 403, 408, 429, 500, 502, 503, 504])
def test_passing_request_failures_are_retryable(status: int) -> None:
    with pytest.raises(RetryableError, match=f"HTTP {status}"), mapped_errors("write"):
        raise api_error(status)


@pytest.mark.parametrize("status", [400, 404, 413])
def test_lasting_request_failures_are_permanent_with_the_reason(status: int) -> None:
    with pytest.raises(MappingError, match="some_exception: why"), mapped_errors("write"):
        raise api_error(status)


@pytest.mark.parametrize(
    "exc", [ConnectionError("refused"), ConnectionTimeout("timed out after 30s")]
)
def test_connection_failures_are_retryable(exc: Exception) -> None:
    with pytest.raises(RetryableError) as raised, mapped_errors("open"):
        raise exc
    assert raised.value.__cause__ is exc


def test_describe_error_handles_bodies_items_and_text() -> None:
    assert describe_error({"error": {"type": "t", "reason": "r"}}) == "t: r"
    assert describe_error({"type": "t", "reason": "r"}) == "t: r"
    assert describe_error("plain") == "plain"


def test_client_options_unwrap_secrets_only_for_the_driver() -> None:
    settings = ElasticsearchSettings(
        hosts=["https://es:9200"],
        username="fanout",
        password="s3cret",  # type: ignore[arg-type]
        ca_certs="/etc/ca.pem",
        request_timeout_s=7,
    )
    options = client_options(settings)
    assert options["basic_auth"] == ("fanout", "s3cret")
    assert options["ca_certs"] == "/etc/ca.pem"
    assert options["request_timeout"] == 7
    assert "s3cret" not in repr(settings)


def test_an_api_key_wins_over_basic_auth() -> None:
    settings = ElasticsearchSettings(username="u", api_key="id:key")  # type: ignore[arg-type]
    options = client_options(settings)
    assert options["api_key"] == "id:key"
    assert "basic_auth" not in options
