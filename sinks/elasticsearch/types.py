"""Change events -> Elasticsearch documents (the sink's types): ids, values, bulk lines.

Package-private helper of ``sinks.elasticsearch.sink``; no I/O here. The events it is given
have passed the batch template's checks (a key, a row for an upsert, a version in 0..2^63-1,
Elasticsearch's external version range) and its collapse to the newest event per key.

* ``_id``: a single-column key is its value as text (a string as is, a number in JSON form:
  ``42``, ``1.5``, ``true``); a composite key is the compact JSON array of its values in key
  order (``[7,"a"]``). Values are converted first (see below), so a uuid key is its canonical
  text. At most 512 bytes (Elasticsearch's limit); longer keys are rejected per record.
* Values: ``Decimal`` -> string in plain notation (keeps every digit; map the field as a numeric
  type to search it as a number, Elasticsearch coerces the string); date / time / timestamp ->
  ISO-8601 text (timestamps without zone are UTC); bytes -> base64; uuid -> text; JSON values
  as they are; NaN / infinity -> null (JSON has no such numbers).
* Encoding: :func:`bulk_lines` writes an action's two NDJSON lines with orjson straight from the
  event's values (no intermediate JSON-ready copy); a value orjson cannot take as is (an int
  beyond 64 bits, a non-text dict key, a zoned ``time``, text that is not valid UTF-8) sends
  that one document through ``json_value`` and the standard library, byte for byte what the
  Elasticsearch client would have sent.
* Bookkeeping fields: ``_fanout_version`` and ``_fanout_source_ts_ms`` on every document;
  tombstones (deletes) carry the key fields plus ``_fanout_deleted: true`` and
  ``_fanout_deleted_at`` (when the sink wrote it).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Op

VERSION_FIELD = "_fanout_version"
SOURCE_TS_FIELD = "_fanout_source_ts_ms"
DELETED_FIELD = "_fanout_deleted"
DELETED_AT_FIELD = "_fanout_deleted_at"
MAX_ID_BYTES = 512
EXTERNAL = "external_gte"  # the version check of every write
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS  # to json_value, which rejects them
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def json_value(value: Any) -> Any:
    """``value`` as a JSON-ready Python value (str, int, float, bool, None, list, dict)."""
    if type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else None
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(name): json_value(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, str | int):  # subclasses (str enums, IntEnum)
        return value
    raise MappingError(f"cannot write a {type(value).__name__} value to Elasticsearch")


def json_document(values: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value if type(value) in _PLAIN_TYPES else json_value(value)
        for name, value in values.items()
    }


def document_id(key: dict[str, Any]) -> str:
    """The ``_id`` of the document for ``key`` (see the module docstring)."""
    if len(key) == 1:
        (value,) = key.values()
        if type(value) is int:  # the common case: its JSON text, one byte a character
            text = str(value)
            if len(text) <= MAX_ID_BYTES:
                return text
        elif type(value) is str:
            text = value
        else:
            text = _scalar_text(json_value(value))
    elif not key:
        raise MappingError("the event has no key (a source table without a primary key?)")
    else:
        values = list(key.values())
        if set(map(type, values)) <= _PLAIN_TYPES:
            # orjson writes these as json.dumps does; it refuses ints over 64 bits and lone
            # surrogates, which the standard library writes.
            try:
                encoded = orjson.dumps(values)
            except orjson.JSONEncodeError:
                text = _stdlib_json(values)
            else:
                if len(encoded) > MAX_ID_BYTES:
                    raise _id_too_long()
                return encoded.decode()
        else:
            text = _stdlib_json([json_value(value) for value in values])
    if len(text.encode()) > MAX_ID_BYTES:
        raise _id_too_long()
    return text


def _id_too_long() -> MappingError:
    return MappingError(f"the key encodes to more than {MAX_ID_BYTES} bytes as an _id")


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return _stdlib_json(value)


def index_action(alias: str, doc_id: str, event: ChangeEvent, now_iso: str) -> dict[str, Any]:
    """The bulk action writing ``event``'s document (a tombstone for a delete), version-guarded."""
    source = tombstone(event, now_iso) if event.op is Op.DELETE else upsert_document(event)
    return {
        "_op_type": "index",
        "_index": alias,
        "_id": doc_id,
        "version": event.version,
        "version_type": EXTERNAL,
        "_source": source,
    }


def upsert_document(
    event: ChangeEvent, values: Callable[[dict[str, Any]], dict[str, Any]] = json_document
) -> dict[str, Any]:
    """The document of an upsert; ``values`` makes the row's and key's values JSON-ready."""
    if event.row is None:
        raise MappingError("an upsert event without a row")
    source = values(event.row)
    for name, value in values(event.key).items():
        source.setdefault(name, value)
    source[VERSION_FIELD] = event.version
    source[SOURCE_TS_FIELD] = event.source_ts_ms
    return source


def tombstone(
    event: ChangeEvent,
    now_iso: str,
    values: Callable[[dict[str, Any]], dict[str, Any]] = json_document,
) -> dict[str, Any]:
    source = values(event.key)
    source[DELETED_FIELD] = True
    source[DELETED_AT_FIELD] = now_iso
    source[VERSION_FIELD] = event.version
    source[SOURCE_TS_FIELD] = event.source_ts_ms
    return source


def bulk_lines(alias: str, doc_id: str, event: ChangeEvent, now_iso: str) -> bytes:
    """``index_action``'s header and source as the two NDJSON lines of a bulk request.

    orjson writes str, int, float (NaN / infinity as null), bool, None, list, tuple, dict,
    uuid and date / time / datetime (ISO-8601, as ``isoformat``) itself; ``_orjson_default``
    takes Decimal and bytes as ``json_value`` does. Anything else takes the exact path.
    """
    meta = {"_id": doc_id, "_index": alias, "version": event.version, "version_type": EXTERNAL}
    # dict copies the values as they are: orjson converts them itself.
    source = (
        tombstone(event, now_iso, dict) if event.op is Op.DELETE else upsert_document(event, dict)
    )
    try:
        body = orjson.dumps(source, default=_orjson_default, option=_ORJSON_OPTIONS)
        return b"%b\n%b\n" % (orjson.dumps({"index": meta}), body)
    except orjson.JSONEncodeError:
        return _exact_lines(index_action(alias, doc_id, event, now_iso))


def _orjson_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else None
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(type(value).__name__)  # json_value decides (converts or rejects)


def _exact_lines(action: dict[str, Any]) -> bytes:
    """What the client's own serializer makes of ``action`` (values already JSON-ready)."""
    header = {
        action["_op_type"]: {
            "_id": action["_id"],
            "_index": action["_index"],
            "version": action["version"],
            "version_type": action["version_type"],
        }
    }
    lines = [_stdlib_json(header), _stdlib_json(action["_source"]), ""]
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def _stdlib_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
