"""The Elasticsearch sink's error table: whole requests and bulk items, in the three classes.

Package-private helper of ``sinks.elasticsearch.sink``. One status rule serves both: 401, 403,
408, 429 and 5xx are TRANSIENT (the store is away, overloaded, or not letting us in yet: never
dead-lettered), any other status is DATA (the request or the record is at fault).

Whole requests (:func:`classify`, the table ``BatchSink.classify`` returns from)::

    connection refused / reset, timeout, TLS  -> TRANSIENT  (the store is away)
    HTTP 401 / 403 / 408 / 429 / 5xx          -> TRANSIENT  (auth, overload, outage)
    HTTP 400 / 404 / 413 / other 4xx          -> DATA       (a lasting refusal of the request:
                                                             the runtime bisects the batch)
    unserializable body                       -> DATA

Bulk items (:func:`item_verdict`), one verdict per item of a bulk response::

    2xx                                       -> APPLIED
    409 version_conflict_engine_exception     -> STALE     (the index holds a newer version)
    404 index_not_found_exception             -> NO_INDEX  (alias gone: recreate, then retry)
    TRANSIENT status, cluster blocks, shards  -> RETRY     (only these items, with backoff; still
                                                            failing: the batch is TRANSIENT)
    other 4xx (mapping / parse / too large)   -> REJECTED  (DATA: a Failure with ES's type +
                                                            reason, to the DLQ)
    a whole chunk refused with 400 / 413      -> BISECT    (DATA, but which item is unknown:
                                                            the runtime bisects the batch)
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from elastic_transport import SerializationError, TransportError
from elasticsearch import ApiError

from fanout.errors import MappingError, PermanentError
from sinks.base import errors as base
from sinks.base.errors import ErrorClass, Verdict

_TRANSIENT_STATUS = frozenset({401, 403, 408, 429})
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


def status_class(status: int) -> ErrorClass:
    """The class of a failed request or item by its HTTP status (see the module docstring)."""
    if status in _TRANSIENT_STATUS or status >= 500:
        return ErrorClass.TRANSIENT
    return ErrorClass.DATA


def classify(exc: BaseException, action: str = "write") -> Verdict | None:
    """The class of a client exception raised while doing ``action``; None if not the client's."""
    if isinstance(exc, ApiError):
        status = exc.status_code
        message = f"elasticsearch {action}: HTTP {status} {describe_error(exc.body)}"
        return Verdict(status_class(status), message)
    if isinstance(exc, SerializationError):
        return Verdict(ErrorClass.DATA, f"elasticsearch {action}: cannot serialize: {exc}")
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
    RETRY = "retry"
    REJECTED = "rejected"
    BISECT = "bisect"


def item_verdict(ok: bool, item: dict[str, Any]) -> ItemVerdict:
    """The verdict for one bulk item, ``item`` being the inner dict of a bulk response item."""
    if ok:
        return ItemVerdict.APPLIED
    status = int(item.get("status") or 500)
    if "exception" in item:  # the bulk writer's marker: the whole request failed
        return ItemVerdict.BISECT if status in (400, 413) else ItemVerdict.RETRY
    kind = error_type(item.get("error"))
    if status == 409 and kind == "version_conflict_engine_exception":
        return ItemVerdict.STALE
    if kind == "index_not_found_exception":
        return ItemVerdict.NO_INDEX
    if status_class(status) is ErrorClass.TRANSIENT or kind in _RETRYABLE_ITEM_TYPES:
        return ItemVerdict.RETRY
    return ItemVerdict.REJECTED


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
