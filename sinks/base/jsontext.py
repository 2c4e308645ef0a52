"""JSON text of a value that may hold ``Json`` (a JSON column's own text), for every sink.

A ``Json`` is written as its text, never parsed and written again, so its numbers keep every
digit and its ``null`` stays a JSON null. orjson embeds it (:func:`fragment`, an orjson
``default``); where orjson refuses a value (an integer beyond 64 bits, a lone surrogate) the
standard library writes it and each ``Json`` takes the place of a marker (:func:`stdlib_dumps`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import orjson

from fanout.events import Json

# A marker no JSON text of ours holds: random per process, so no source value can forge it.
_MARK = f"fanout-json-{secrets.token_hex(16)}-"


def fragment(value: Any) -> orjson.Fragment:
    """orjson's ``default`` for ``Json``: its text, embedded as it is."""
    if type(value) is Json:
        return orjson.Fragment(value.text)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def stdlib_dumps(
    value: Any,
    default: Callable[[Any], Any] | None = None,
    separators: tuple[str, str] = (",", ":"),
) -> str:
    """``json.dumps(value, ensure_ascii=False, separators=…, default=…)`` with every ``Json``
    in ``value`` written as its text."""
    texts: list[str] = []

    def embed(item: Any) -> Any:
        if type(item) is Json:
            texts.append(item.text)
            return f"{_MARK}{len(texts) - 1}"
        if default is None:
            raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")
        return default(item)

    out = json.dumps(value, ensure_ascii=False, separators=separators, default=embed)
    for index, text in enumerate(texts):
        out = out.replace(f'"{_MARK}{index}"', text, 1)
    return out
