"""Change events -> Elasticsearch documents (the sink's types): ids, values, bulk lines.

Package-private helper of ``sinks.elasticsearch.sink``; no I/O here. The events it is given
have passed the batch template's checks (a key, a row for an upsert, a version in 0..2^63-1,
Elasticsearch's external version range) and its collapse to the newest event per key.

* ``_id`` (:func:`document_id`), one rule for every key, collision-free: a composite key is
  the compact JSON array of its values in key order (``[7,"a"]``); a single-column key is its
  value as text (a string as is, a number in JSON form: ``42``, ``1.5``, ``true``, a uuid
  canonical, a JSON column's text), except that a text that is empty or starts with ``[`` or
  ``~`` gets a ``~`` in front (``""`` -> ``~``, ``[7,"a"]`` -> ``~[7,"a"]``), so it can never
  be a composite key's id; an id over 512 bytes (Elasticsearch's limit) is ``~#`` and the
  SHA-256 of what it would have been, in hex. So ids starting with ``[`` are composite keys,
  ``~#`` hashed ones, ``~`` escaped single texts, anything else a single value.
* Values: ``Decimal`` -> string in plain notation (keeps every digit; map the field as a numeric
  type to search it as a number, Elasticsearch coerces the string); date / time / timestamp ->
  ISO-8601 text (timestamps without zone are UTC); bytes -> base64; uuid -> text; ``Json`` (a
  JSON column) embedded as its own text, every digit kept, on one line; other JSON values as
  they are; NaN / infinity -> null (JSON has no such numbers). A JSON column holding SQL NULL
  is left out of the document, so that a JSON ``null`` (written as ``null``) stays apart.
* Encoding: :func:`bulk_lines` writes an action's two NDJSON lines with orjson straight from the
  event's values (no intermediate JSON-ready copy); a value orjson cannot take as is (an int
  beyond 64 bits, a non-text dict key, a zoned ``time``, text that is not valid UTF-8) sends
  that one document through ``json_value`` and the standard library, byte for byte what the
  Elasticsearch client would have sent (``Json`` embedded as its text either way).
* Bookkeeping fields: ``_fanout_version`` and ``_fanout_source_ts_ms`` on every document;
  tombstones (deletes) carry the key fields plus ``_fanout_deleted: true`` and
  ``_fanout_deleted_at`` (when the sink wrote it).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Column, Json, Op
from sinks.base.jsontext import stdlib_dumps

VERSION_FIELD = "_fanout_version"
SOURCE_TS_FIELD = "_fanout_source_ts_ms"
DELETED_FIELD = "_fanout_deleted"
DELETED_AT_FIELD = "_fanout_deleted_at"
MAX_ID_BYTES = 512
ID_ESCAPE = "~"  # before a single text key that is empty or starts with "[" or "~"
HASHED_ID = "~#"  # then the SHA-256 (hex) of an id longer than MAX_ID_BYTES
_ESCAPED_STARTS = ("[", ID_ESCAPE)
EXTERNAL = "external_gte"  # the version check of every write
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS  # to json_value, which rejects them
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def json_value(value: Any) -> Any:
    """``value`` as a JSON-ready Python value (str, int, float, bool, None, list, dict, or
    ``Json``, which ``_stdlib_json`` embeds as its text)."""
    if type(value) in _PLAIN_TYPES or type(value) is Json:
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
            return text if len(text) <= MAX_ID_BYTES else _hashed(text)
        if type(value) is str:
            text = value
        elif type(value) is Json:
            text = value.text
        else:
            text = _scalar_text(json_value(value))
        if not text or text.startswith(_ESCAPED_STARTS):
            text = ID_ESCAPE + text
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
                if len(encoded) <= MAX_ID_BYTES:
                    return encoded.decode()
                text = encoded.decode()
        else:
            text = _stdlib_json([_key_part(value) for value in values])
    if len(text) * 4 > MAX_ID_BYTES and len(_utf8(text)) > MAX_ID_BYTES:
        return _hashed(text)
    return text


def _key_part(value: Any) -> Any:
    # A JSON column in a composite key counts as its text (a JSON string in the array).
    return value.text if type(value) is Json else json_value(value)


def _hashed(text: str) -> str:
    return HASHED_ID + hashlib.sha256(_utf8(text)).hexdigest()


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return _stdlib_json(value)


def index_action(
    alias: str, doc_id: str, event: ChangeEvent, now_iso: str, json_columns: Iterable[str] = ()
) -> dict[str, Any]:
    """The bulk action writing ``event``'s document (a tombstone for a delete), version-guarded;
    ``json_columns`` (:class:`JsonColumns`) are left out where they hold SQL NULL."""
    if event.op is Op.DELETE:
        source = tombstone(event, now_iso)
    else:
        source = upsert_document(event, json_document, json_columns)
    return {
        "_op_type": "index",
        "_index": alias,
        "_id": doc_id,
        "version": event.version,
        "version_type": EXTERNAL,
        "_source": source,
    }


def upsert_document(
    event: ChangeEvent,
    values: Callable[[dict[str, Any]], dict[str, Any]] = json_document,
    json_columns: Iterable[str] = (),
) -> dict[str, Any]:
    """The document of an upsert; ``values`` makes the row's and key's values JSON-ready. A
    JSON column (of ``json_columns``) holding SQL NULL is left out: a JSON ``null`` is not."""
    if event.row is None:
        raise MappingError("an upsert event without a row")
    source = values(event.row)
    for name in json_columns:
        if source.get(name, source) is None:
            del source[name]
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


def bulk_lines(
    alias: str, doc_id: str, event: ChangeEvent, now_iso: str, json_columns: Iterable[str] = ()
) -> bytes:
    """``index_action``'s header and source as the two NDJSON lines of a bulk request.

    orjson writes str, int, float (NaN / infinity as null), bool, None, list, tuple, dict,
    uuid and date / time / datetime (ISO-8601, as ``isoformat``) itself; ``_orjson_default``
    takes Decimal and bytes as ``json_value`` does, and embeds ``Json`` as its text. Anything
    else takes the exact path.
    """
    meta = {"_id": doc_id, "_index": alias, "version": event.version, "version_type": EXTERNAL}
    # dict copies the values as they are: orjson converts them itself.
    if event.op is Op.DELETE:
        source = tombstone(event, now_iso, dict)
    else:
        source = upsert_document(event, dict, json_columns)
    try:
        body = orjson.dumps(source, default=_orjson_default, option=_ORJSON_OPTIONS)
        return b"%b\n%b\n" % (orjson.dumps({"index": meta}), body)
    except orjson.JSONEncodeError:
        return _exact_lines(index_action(alias, doc_id, event, now_iso, json_columns))


def _orjson_default(value: Any) -> Any:
    if type(value) is Json:
        return orjson.Fragment(_one_line(value.text))
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else None
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(type(value).__name__)  # json_value decides (converts or rejects)


def _one_line(text: str) -> str:
    """A JSON text on one line (an NDJSON line): outside strings, where alone a valid JSON text
    can hold a line feed, it is whitespace like a space."""
    return text.replace("\n", " ") if "\n" in text else text


def _exact_lines(action: dict[str, Any]) -> bytes:
    """What the client's own serializer makes of ``action`` (values already JSON-ready; a
    ``Json`` embedded as its text, on one line)."""
    header = {
        action["_op_type"]: {
            "_id": action["_id"],
            "_index": action["_index"],
            "version": action["version"],
            "version_type": action["version_type"],
        }
    }
    lines = [_stdlib_json(header), _one_line(_stdlib_json(action["_source"])), ""]
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def _stdlib_json(value: Any) -> str:
    return stdlib_dumps(value)


@dataclass(frozen=True, slots=True)
class JsonColumns:
    """The JSON columns of a schema: which get the JSON mapping, which have SQL NULL left out."""

    mapped: tuple[str, ...]  # json columns and arrays of JSON
    nullable: tuple[str, ...]  # json columns: None is left out of the document


NO_JSON = JsonColumns((), ())


class JsonColumnCache:
    """:class:`JsonColumns` per ``event.columns`` tuple, looked up by identity (decoders reuse
    one tuple per schema), so events pay a dict lookup."""

    _MAX = 4096

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[tuple[Column, ...], JsonColumns]] = {}

    def of(self, event: ChangeEvent) -> JsonColumns:
        columns = event.columns
        if not columns:
            row = event.row
            return _inferred(row) if row else NO_JSON
        known = self._by_id.get(id(columns))
        if known is not None and known[0] is columns:
            return known[1]
        if len(self._by_id) >= self._MAX:
            self._by_id.clear()
        found = _declared(columns)
        self._by_id[id(columns)] = (columns, found)  # holding the tuple keeps its id unique
        return found


def _declared(columns: tuple[Column, ...]) -> JsonColumns:
    json = tuple(column.name for column in columns if column.type == "json")
    arrays = tuple(
        column.name
        for column in columns
        if column.type == "array" and column.param("items") == "json"
    )
    return JsonColumns(json + arrays, json) if json or arrays else NO_JSON


def _inferred(row: dict[str, Any]) -> JsonColumns:
    """Without a schema: an object, or an array holding objects or arrays, is JSON."""
    names = tuple(
        name
        for name, value in row.items()
        if type(value) is dict
        or (type(value) is list and any(type(item) in (dict, list) for item in value))
    )
    return JsonColumns(names, ()) if names else NO_JSON
