"""JsonConverter framing: split ``{"schema":…,"payload":…}`` and cache what its schema means.

Package-private helper of ``fanout.envelope``. The schema part of a wrapped message is usually
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
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fanout.errors import DecodeError

P = TypeVar("P")

_SCHEMA_PREFIX = b'{"schema":'
_PAYLOAD_SEPARATOR = b',"payload":'
_DECODER: Any = json.JSONDecoder()
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # json.loads' C scanner
_MAX_PLANS = 4096
_MAX_RECENT = 16
_MALFORMED_SCHEMA = (AttributeError, TypeError, KeyError, IndexError, ValueError, RecursionError)


def scan(text: str) -> Any:
    """``json.loads`` minus its Python-level overhead; raises ValueError on any invalid text."""
    try:
        value, end = _SCAN_ONCE(text, 0)
    except StopIteration as exc:
        raise ValueError(f"no JSON value at {exc.value}") from None
    if end != len(text) and not text[end:].isspace():
        raise ValueError(f"extra data at {end}")
    return value


def _loads(raw: bytes, what: str) -> Any:
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
                        return plan, scan(raw[len(prefix) : -1].decode())
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
                plan = self._remember(schema_bytes, self._build(scan(schema_bytes.decode())))
            payload = scan(raw[cut + len(_PAYLOAD_SEPARATOR) : -1].decode())
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
