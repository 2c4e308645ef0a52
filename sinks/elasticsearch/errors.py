"""Elasticsearch failures mapped onto ``fanout.errors``: whole requests and bulk items, here only.

Package-private helper of ``sinks.elasticsearch.sink``.

Whole requests (:func:`es_errors`)::

    connection refused / reset, timeout, TLS  -> RetryableError   (the store is away)
    HTTP 401 / 403 / 408 / 429 / 5xx          -> RetryableError   (auth, overload, outage)
    HTTP 400 / 413 / other 4xx                -> MappingError     (a permanent, request-level
                                                 refusal: the runtime bisects the batch)
    unserializable body                       -> MappingError

Bulk items (:func:`classify`), one verdict per item::

    2xx                                       -> APPLIED
    409 version_conflict_engine_exception     -> STALE     (the index holds a newer version)
    404 index_not_found_exception             -> NO_INDEX  (alias gone: recreate, then retry)
    429, 5xx, cluster blocks, shard trouble   -> RETRY     (only these items, with backoff)
    other 4xx (mapping / parse / too large)   -> REJECTED  (a Failure with ES's type + reason)
    a whole chunk refused with 400 / 413      -> BISECT    (cannot tell which item: PermanentError)
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from elastic_transport import SerializationError, TransportError
from elasticsearch import ApiError

from fanout.errors import FanoutError, MappingError, PermanentError, RetryableError

_RETRYABLE_STATUS = frozenset({401, 403, 408, 429})
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


class Verdict(enum.Enum):
    APPLIED = "applied"
    STALE = "stale"
    NO_INDEX = "no_index"
    RETRY = "retry"
    REJECTED = "rejected"
    BISECT = "bisect"


@contextmanager
def es_errors(action: str) -> Iterator[None]:
    """Translate whatever the client raises while doing ``action`` (``raise … from exc``)."""
    try:
        yield
    except FanoutError:
        raise
    except ApiError as exc:
        raise _from_api_error(action, exc) from exc
    except SerializationError as exc:
        raise MappingError(f"elasticsearch {action}: cannot serialize: {exc}") from exc
    except TransportError as exc:
        raise RetryableError(f"elasticsearch {action}: {type(exc).__name__}: {exc}") from exc


def _from_api_error(action: str, exc: ApiError) -> FanoutError:
    status = exc.status_code
    message = f"elasticsearch {action}: HTTP {status} {describe_error(exc.body)}"
    if status in _RETRYABLE_STATUS or status >= 500:
        return RetryableError(message)
    return MappingError(message)


def classify(ok: bool, item: dict[str, Any]) -> Verdict:
    """The verdict for one bulk item, ``item`` being the inner dict of a bulk response item."""
    if ok:
        return Verdict.APPLIED
    status = int(item.get("status") or 500)
    if "exception" in item:  # the bulk writer's marker: the whole request failed
        return Verdict.BISECT if status in (400, 413) else Verdict.RETRY
    kind = error_type(item.get("error"))
    if status == 409 and kind == "version_conflict_engine_exception":
        return Verdict.STALE
    if kind == "index_not_found_exception":
        return Verdict.NO_INDEX
    if status in _RETRYABLE_STATUS or status >= 500 or kind in _RETRYABLE_ITEM_TYPES:
        return Verdict.RETRY
    return Verdict.REJECTED


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
