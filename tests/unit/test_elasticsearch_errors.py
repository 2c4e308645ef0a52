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
    TlsError,
)
from elasticsearch import ApiError

from fanout.errors import ConfigError, MappingError, RetryableError, UnknownError
from fanout.settings import ElasticsearchSettings
from sinks.base.errors import ErrorClass
from sinks.elasticsearch.errors import (
    ItemVerdict,
    classify,
    denied_error,
    describe_error,
    item_error,
    item_failure,
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
        (429, "cluster_block_exception", ItemVerdict.RETRY),
        (404, "index_not_found_exception", ItemVerdict.NO_INDEX),
        (403, "security_exception", ItemVerdict.DENIED),
        (401, "security_exception", ItemVerdict.DENIED),
        (408, "timeout_exception", ItemVerdict.RETRY),
        (502, "bad_gateway", ItemVerdict.RETRY),
        (404, "document_missing_exception", ItemVerdict.REJECTED),
    ],
)
def test_bulk_items_are_classified(status: int, kind: str, verdict: ItemVerdict) -> None:
    assert item_verdict(False, item(status, kind)) is verdict


def test_successful_items_are_applied() -> None:
    assert item_verdict(True, item(201)) is ItemVerdict.APPLIED


@pytest.mark.parametrize(
    ("status", "kind", "verdict"),
    [
        (503, "unavailable", ItemVerdict.RETRY),
        (429, "es_rejected_execution_exception", ItemVerdict.RETRY),
        (408, "timeout", ItemVerdict.RETRY),
        (413, "content_too_long", ItemVerdict.BISECT),
        (400, "illegal_argument_exception", ItemVerdict.BISECT),
        (404, "not_found", ItemVerdict.BISECT),
        (401, "security_exception", ItemVerdict.DENIED),
        (403, "security_exception", ItemVerdict.DENIED),
        (403, "cluster_block_exception", ItemVerdict.RETRY),
    ],
)
def test_a_whole_chunk_that_failed_is_retried_bisected_or_denied_by_status(
    status: int, kind: str, verdict: ItemVerdict
) -> None:
    # the bulk writer marks every item of a refused request with the exception it got
    chunk = {"error": f"ApiError({status}, ...)", "exception": api_error(status, kind)}
    assert item_verdict(False, item(status, **chunk)) is verdict


def test_an_item_refused_for_want_of_privileges_stops_the_sink_with_the_reason() -> None:
    error = denied_error(item(403, "security_exception"))
    assert isinstance(error, ConfigError)
    assert "HTTP 403 security_exception: security_exception reason" in str(error)


@pytest.mark.parametrize(
    ("status", "kind", "raised"),
    [
        (403, "security_exception", ConfigError),
        (429, "es_rejected_execution_exception", RetryableError),
        (503, "unavailable_shards_exception", RetryableError),
        (400, "illegal_argument_exception", MappingError),
    ],
)
def test_a_failed_delete_of_a_truncate_or_purge_takes_the_class_of_its_status(
    status: int, kind: str, raised: type[Exception]
) -> None:
    error = item_failure("delete in i", item(status, kind))
    assert type(error) is raised
    assert f"elasticsearch delete in i: HTTP {status} {kind}" in str(error)


def test_a_rejected_item_carries_the_type_and_reason_from_elasticsearch() -> None:
    rejected = item(400, "document_parsing_exception")
    rejected["error"]["caused_by"] = {"type": "illegal_argument_exception", "reason": "abc"}
    message = str(item_error(rejected))
    assert "document_parsing_exception: document_parsing_exception reason" in message
    assert "caused by illegal_argument_exception: abc" in message


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        *((api_error(status), ErrorClass.CONFIGURATION) for status in (401, 403)),
        (api_error(403, "cluster_block_exception"), ErrorClass.TRANSIENT),
        *((api_error(status), ErrorClass.TRANSIENT) for status in (408, 429, 500, 502, 503, 504)),
        *((api_error(status), ErrorClass.DATA) for status in (400, 404, 409, 413, 422)),
        (ConnectionError("refused"), ErrorClass.TRANSIENT),
        (ConnectionTimeout("timed out"), ErrorClass.TRANSIENT),
        (SerializationError("no JSON form"), ErrorClass.DATA),
        (TlsError("certificate verify failed"), ErrorClass.CONFIGURATION),
        (TlsError("[SSL: WRONG_VERSION_NUMBER] wrong version number"), ErrorClass.UNKNOWN),
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


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_passing_request_failures_are_retryable(status: int) -> None:
    with pytest.raises(RetryableError, match=f"HTTP {status}"), mapped_errors("write"):
        raise api_error(status)


@pytest.mark.parametrize("status", [401, 403])
def test_credentials_and_privileges_refused_are_configuration_errors(status: int) -> None:
    expected = f"elasticsearch open: HTTP {status} security_exception"
    with pytest.raises(ConfigError, match=expected), mapped_errors("open"):
        raise api_error(status, "security_exception", "unable to authenticate user")


def test_a_certificate_the_sink_does_not_trust_is_a_configuration_error() -> None:
    """It lasts (a wrong CA, a wrong host name), like a refused password: the worker stops."""
    with pytest.raises(ConfigError, match="TLS"), mapped_errors("open"):
        raise TlsError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get")


def test_other_tls_failures_are_retried_a_few_times_not_forever() -> None:
    with pytest.raises(UnknownError, match="TLS"), mapped_errors("open"):
        raise TlsError("[SSL: WRONG_VERSION_NUMBER] wrong version number")


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
