"""JsonConverter framing: split ``{"schema":…,"payload":…}`` and cache what its schema means.

Helper of ``fanout.debezium.envelope``. The schema part of a wrapped message is usually
most of its bytes and repeats message after message; ``PlanCache.parse`` therefore parses only
the payload and looks the schema up by its exact bytes:

1. a message that starts with the very bytes of a recently seen ``{"schema":<S>,"payload":``
   is matched with one ``startswith`` (a memcmp) — no search, no hashing;
2. otherwise the first ``,"payload":`` splits it; a ``,"payload":`` inside a JSON string would
   have its quote escaped, so only a schema holding such a *key* can fool the split, and then
   the schema part does not parse and the whole message is parsed instead;
3. anything else (schemas disabled, other key order, whitespace) is parsed whole.

Only schema texts that parsed as one complete JSON value are cached, so a cached prefix is
always exactly a schema followed by the payload key.

Parsing goes to orjson (several times faster, and it reads the bytes: no ``.decode()`` copy);
see ``loads`` for how the result stays exactly what the stdlib parser gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson

from fanout.errors import DecodeError
from fanout.events import Json

P = TypeVar("P")

_SCHEMA_PREFIX = b'{"schema":'
_PAYLOAD_SEPARATOR = b',"payload":'
_DECODER: Any = json.JSONDecoder()
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # json.loads' C scanner
_MAX_PLANS = 4096
_MAX_RECENT = 16
_MALFORMED_SCHEMA = (AttributeError, TypeError, KeyError, IndexError, ValueError, RecursionError)
# Digits -> b"0", "-" -> b"-", "[" and "{" -> b"[", any other byte -> b" ": the text's shape.
_SHAPE = bytes(
    48 if 48 <= byte <= 57 else 45 if byte == 45 else 91 if byte in (91, 123) else 32
    for byte in range(256)
)
_NINETEEN_DIGITS = b"0" * 19
_INT64_MIN_DIGITS = b"9223372036854775808"
# orjson recurses on the C stack per nesting level and overflows it (the process dies) where the
# stdlib raises RecursionError. 512 levels is inside the stdlib's limit (about 1000) and inside
# what orjson survives on a 128 KiB thread stack (8 MiB, the Linux default, takes 100x more).
# A text of up to twice that many bytes cannot nest deeper; longer ones count their brackets.
_MAX_OPENINGS = 512


def scan(text: str) -> Any:
    """``json.loads`` minus its Python-level overhead; raises ValueError on any invalid text."""
    try:
        value, end = _SCAN_ONCE(text, 0)
    except StopIteration as exc:
        raise ValueError(f"no JSON value at {exc.value}") from None
    if end != len(text) and not text[end:].isspace():
        raise ValueError(f"extra data at {end}")
    return value


def _orjson_safe(data: bytes) -> bool:
    """False if ``data`` may nest deeply or hold an integer beyond 64 bits (orjson: a float).

    Such an integer has 20 digits or more, or is negative with 19 digits above 2**63; strings
    that look alike only cost the slower parse.
    """
    shape = data.translate(_SHAPE)
    if len(shape) > 2 * _MAX_OPENINGS and shape.count(b"[") > _MAX_OPENINGS:
        return False
    at = shape.find(_NINETEEN_DIGITS)
    while at >= 0:  # the start of a run of at least 19 digits
        end = at + 19
        if end < len(shape) and shape[end] == 48:  # a 20th digit
            return False
        if at and shape[at - 1] == 45 and data[at:end] > _INT64_MIN_DIGITS:
            return False
        at = shape.find(_NINETEEN_DIGITS, end)
    return True


def loads(data: bytes) -> Any:
    """``scan(data.decode())``, faster; raises ValueError (or UnicodeDecodeError) likewise.

    orjson gives the stdlib's value for every text both accept. It refuses some texts the
    stdlib takes (NaN and Infinity, lone surrogate escapes, floats that overflow): those fall
    through to ``scan``, which also raises the stdlib's error for invalid text. Its silent
    difference (integers beyond 64 bits parsed as floats) and its crash on deep nesting are
    kept out by ``_orjson_safe``. Unlike ``scan`` it skips leading whitespace; for the parts
    ``PlanCache`` cuts, that gives the value the full parse of the message would give anyway.
    """
    if _orjson_safe(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return scan(data.decode())


def json_column(value: Any) -> Json:
    """The value of a Debezium Json column: its text as the connector sent it, never parsed.

    PostgreSQL and MySQL store only valid JSON in their JSON columns, so Debezium's text is one
    JSON value, and parsing it to check would cost more than all a sink does with it. A text
    that is not JSON (only a producer other than Debezium could send one) is refused where it
    is written by PostgreSQL and Elasticsearch (its record goes to the DLQ) and kept as text by
    ClickHouse. Raises TypeError for a value that is not text, ValueError for blank text.
    """
    if type(value) is not str:
        raise TypeError(f"expected JSON text, got {type(value).__name__}")
    if not value or value.isspace():
        raise ValueError("blank text is not JSON")
    return Json(value)


def _loads(raw: bytes, what: str) -> Any:
    if _orjson_safe(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the stdlib says why (or takes what orjson refuses)
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not UTF-8 text: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc}") from exc


class PlanCache(Generic[P]):
    """Plans (built by ``build`` from a parsed schema) for the keys or the values of a decoder."""

    def __init__(self, what: str, build: Callable[[Any], P]) -> None:
        self._what = what
        self._build_plan = build
        self._by_schema: dict[bytes, P] = {}
        self._recent: list[tuple[bytes, P]] = []  # (b'{"schema":<S>,"payload":', plan)

    def parse(self, raw: bytes) -> tuple[P, Any] | tuple[None, Any]:
        """``(plan, payload)``; ``plan`` is None when the message carried no schema."""
        if raw.endswith(b"}"):
            for prefix, plan in self._recent:
                if raw.startswith(prefix):
                    try:
                        return plan, loads(raw[len(prefix) : -1])
                    except ValueError:
                        break  # let the full parse report it
            else:
                found = self._split(raw)
                if found is not None:
                    return found
        return self._parse_whole(raw)

    def _split(self, raw: bytes) -> tuple[P, Any] | None:
        if not raw.startswith(_SCHEMA_PREFIX):
            return None
        cut = raw.find(_PAYLOAD_SEPARATOR, len(_SCHEMA_PREFIX))
        if cut < 0:
            return None
        schema_bytes = raw[len(_SCHEMA_PREFIX) : cut]
        try:
            plan = self._by_schema.get(schema_bytes)
            if plan is None:
                plan = self._remember(schema_bytes, self._build(loads(schema_bytes)))
            payload = loads(raw[cut + len(_PAYLOAD_SEPARATOR) : -1])
        except ValueError:
            return None
        self._note_recent(raw[: cut + len(_PAYLOAD_SEPARATOR)], plan)
        return plan, payload

    def _parse_whole(self, raw: bytes) -> tuple[P, Any] | tuple[None, Any]:
        document = _loads(raw, self._what)
        if not isinstance(document, dict) or document.keys() != {"schema", "payload"}:
            return None, document
        schema = document["schema"]
        if schema is None:
            return None, document["payload"]
        text = json.dumps(schema, sort_keys=True).encode()
        plan = self._by_schema.get(text)
        if plan is None:
            plan = self._remember(text, self._build(schema))
        return plan, document["payload"]

    def _build(self, schema: Any) -> P:
        try:
            return self._build_plan(schema)
        except _MALFORMED_SCHEMA as exc:
            raise DecodeError(f"{self._what} schema is malformed: {exc!r}") from exc

    def _remember(self, schema_bytes: bytes, plan: P) -> P:
        if len(self._by_schema) >= _MAX_PLANS:
            self._by_schema.clear()  # schemas change only with DDL; this many means churn
        self._by_schema[schema_bytes] = plan
        return plan

    def _note_recent(self, prefix: bytes, plan: P) -> None:
        if len(self._recent) >= _MAX_RECENT:
            self._recent.pop(0)
        self._recent.append((prefix, plan))
