"""The Elasticsearch sink's error table: whole requests and bulk items, in the three classes.

Package-private helper of ``sinks.elasticsearch.sink``. One status rule serves both: 401 and 403
are CONFIGURATION (credentials or privileges: the worker stops and says so), except a 403
``cluster_block_exception`` (an index blocked while a disk fills, lifted once it is freed) which
is TRANSIENT like 408, 429 and 5xx (the store is away or overloaded: never dead-lettered); any
other status is DATA (the request or the record is at fault).

Whole requests (:func:`classify`, the table ``BatchSink.classify`` returns from)::

    HTTP 401 / 403 (security_exception, …)    -> CONFIGURATION (stop consuming, /healthz and
                                                               /readyz 503, exit after
                                                               config_error_exit_s)
    HTTP 403 cluster_block_exception          -> TRANSIENT  (a block: lifted when disk is freed)
    HTTP 408 / 429 / 5xx                      -> TRANSIENT  (overload, outage: retried with
                                                             backoff, partitions paused)
    connection refused / reset, timeout       -> TRANSIENT  (the store is away or hung: every
                                                             call is bounded by
                                                             request_timeout_s)
    HTTP 400 / 404 / 413 / other 4xx          -> DATA       (a lasting refusal of the request:
                                                             the runtime bisects the batch; a
                                                             413 splits an oversized batch)
    unserializable body                       -> DATA
    certificate verify failed (a CA the sink  -> CONFIGURATION (it lasts, like a refused
      does not trust, a wrong host name)                        password)
    other TLS failures                        -> UNKNOWN    (retried a few times, then
                                                             CONFIGURATION)

Bulk items (:func:`item_verdict`), one verdict per item of a bulk response::

    2xx                                       -> APPLIED
    409 version_conflict_engine_exception     -> STALE     (the index holds a newer version)
    404 index_not_found_exception             -> NO_INDEX  (alias gone: recreate, then retry)
    401 / 403 (not a block)                   -> DENIED    (CONFIGURATION: a privilege on the
                                                            index is missing)
    TRANSIENT status, cluster blocks, shards  -> RETRY     (only these items, with backoff; still
                                                            failing: the batch is TRANSIENT)
    other 4xx (mapping / parse / too large)   -> REJECTED  (DATA: a Failure with ES's type +
                                                            reason, to the DLQ)
    a whole chunk refused with 401 / 403      -> DENIED
    a whole chunk refused with another 4xx    -> BISECT    (DATA, but which item is unknown:
                                                            the runtime bisects the batch)
    a whole chunk refused with 408/429/5xx    -> RETRY
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from elastic_transport import SerializationError, TlsError, TransportError
from elasticsearch import ApiError

from fanout.errors import ConfigError, FanoutError, MappingError, PermanentError, RetryableError
from sinks.base import errors as base
from sinks.base.errors import ErrorClass, Verdict

_TRANSIENT_STATUS = frozenset({408, 429})
_DENIED_STATUS = frozenset({401, 403})
_BLOCK = "cluster_block_exception"
CERTIFICATE_REFUSED = "certificate verify failed"  # OpenSSL's words, whatever wraps them
_RETRYABLE_ITEM_TYPES = frozenset(
    {
        "es_rejected_execution_exception",
        "cluster_block_exception",
        "unavailable_shards_exception",
        "circuit_breaking_exception",
        "no_shard_available_action_exception",
        "node_not_connected_exception",
        "process_cluster_event_timeout_exception",
    }
)


def status_class(status: int, kind: str = "unknown") -> ErrorClass:
    """The class of a failed request or item by its HTTP status and error type (see the
    module docstring)."""
    if status in _DENIED_STATUS and kind != _BLOCK:
        return ErrorClass.CONFIGURATION
    if status in _TRANSIENT_STATUS or status >= 500 or status in _DENIED_STATUS:
        return ErrorClass.TRANSIENT
    return ErrorClass.DATA


def classify(exc: BaseException, action: str = "write") -> Verdict | None:
    """The class of a client exception raised while doing ``action``; None if not the client's."""
    if isinstance(exc, ApiError):
        status = exc.status_code
        message = f"elasticsearch {action}: HTTP {status} {describe_error(exc.body)}"
        return Verdict(status_class(status, error_type(_inner(exc.body))), message)
    if isinstance(exc, SerializationError):
        return Verdict(ErrorClass.DATA, f"elasticsearch {action}: cannot serialize: {exc}")
    if isinstance(exc, TlsError):
        lasting = CERTIFICATE_REFUSED in f"{exc.message} {exc}".lower()
        error_class = ErrorClass.CONFIGURATION if lasting else ErrorClass.UNKNOWN
        return Verdict(error_class, f"elasticsearch {action}: TLS: {exc}")
    if isinstance(exc, TransportError):
        message = f"elasticsearch {action}: {type(exc).__name__}: {exc}"
        return Verdict(ErrorClass.TRANSIENT, message)
    return None


@contextmanager
def mapped_errors(action: str) -> Iterator[None]:
    """Re-raise client exceptions met while doing ``action`` as fanout's (``raise … from exc``).

    Inside ``BatchSink.write`` (whose own mapping says "write"), this names the step that
    failed: "create index for 'x'", "open", "purge tombstones"."""
    with base.mapped_errors(lambda exc: classify(exc, action)):
        yield


class ItemVerdict(enum.Enum):
    APPLIED = "applied"
    STALE = "stale"
    NO_INDEX = "no_index"
    DENIED = "denied"
    RETRY = "retry"
    REJECTED = "rejected"
    BISECT = "bisect"


def item_verdict(ok: bool, item: dict[str, Any]) -> ItemVerdict:
    """The verdict for one bulk item, ``item`` being the inner dict of a bulk response item."""
    if ok:
        return ItemVerdict.APPLIED
    status = int(item.get("status") or 500)
    exception = item.get("exception")
    if exception is not None:  # the bulk writer's marker: the whole request failed
        body = exception.body if isinstance(exception, ApiError) else None
        return _CHUNK_VERDICTS[status_class(status, error_type(_inner(body)))]
    kind = error_type(item.get("error"))
    if status == 409 and kind == "version_conflict_engine_exception":
        return ItemVerdict.STALE
    if kind == "index_not_found_exception":
        return ItemVerdict.NO_INDEX
    if kind in _RETRYABLE_ITEM_TYPES:
        return ItemVerdict.RETRY
    return _ITEM_VERDICTS[status_class(status, kind)]


_CHUNK_VERDICTS = {
    ErrorClass.CONFIGURATION: ItemVerdict.DENIED,
    ErrorClass.TRANSIENT: ItemVerdict.RETRY,
    ErrorClass.DATA: ItemVerdict.BISECT,
}
_ITEM_VERDICTS = {
    ErrorClass.CONFIGURATION: ItemVerdict.DENIED,
    ErrorClass.TRANSIENT: ItemVerdict.RETRY,
    ErrorClass.DATA: ItemVerdict.REJECTED,
}


def _inner(body: Any) -> Any:
    """The ``error`` object of an error response body (the body itself otherwise)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return body


def error_type(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("type", "unknown"))
    return "unknown"


def describe_error(error: Any) -> str:
    """``type: reason (caused by type: reason)`` from an Elasticsearch error body or item error."""
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]
    if not isinstance(error, dict):
        return str(error)
    text = f"{error.get('type', 'unknown')}: {error.get('reason', '')}"
    cause = error.get("caused_by")
    if isinstance(cause, dict):
        text += f" (caused by {cause.get('type', 'unknown')}: {cause.get('reason', '')})"
    return text


def item_error(item: dict[str, Any]) -> MappingError:
    """The MappingError a rejected item becomes (its DLQ message)."""
    return MappingError(f"HTTP {item.get('status')} {describe_error(item.get('error'))}")


def bisect_error(item: dict[str, Any]) -> PermanentError:
    return MappingError(f"bulk request refused: HTTP {item.get('status')} {item.get('error')}")


def denied_error(item: dict[str, Any]) -> ConfigError:
    """The ConfigError a bulk item or request refused for want of privileges becomes."""
    error = item.get("error")
    reason = describe_error(error) if isinstance(error, dict) else str(error)
    return ConfigError(
        f"elasticsearch refused the sink's credentials: HTTP {item.get('status')} {reason}"
    )


def item_failure(action: str, item: dict[str, Any]) -> FanoutError:
    """The error one failed item of a helper's bulk (deletes) becomes, by its class."""
    status = int(item.get("status") or 500)
    error = item.get("error")
    error_class = status_class(status, error_type(error))
    message = f"elasticsearch {action}: HTTP {status} {describe_error(error)}"
    if error_class is ErrorClass.CONFIGURATION:
        return ConfigError(message)
    if error_class is ErrorClass.TRANSIENT:
        return RetryableError(message)
    return MappingError(message)
