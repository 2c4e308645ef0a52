"""Partial upserts: the fields an event does not carry are taken from the stored document.

Package-private helper of ``sinks.elasticsearch.sink``. Elasticsearch indexes a document whole,
so an upsert whose row lacks a column its schema declares (Debezium's placeholder for an
unchanged TOASTed value, removed by the decoder; the batch template has already filled what an
older event of the key in the batch carried) would drop that field. Before the bulk request,
:func:`carry_forward` reads the stored documents of those keys only (one realtime ``mget`` on
the physical indices, whole) and appends the missing fields of a live one to the entry's encoded
source, as the stored document holds them (a field the live document lacks stays absent). A
tombstone or no document at all leaves the fields absent; :meth:`Carried.count` counts them
for the entries the store applied (``fanout_columns_unknown_total``).

The write itself is unchanged: ``external_gte`` with the event's version, so a stale event
still loses to a newer document whatever was carried into it. Entries whose rows carry every
declared column cost a length comparison each.

Carried values are sent again digit for digit: the sink's client parses responses with
:data:`SOURCE_SERIALIZERS`, the client's own JSON serializer except while this module reads
stored documents, when numbers are kept as their text (a JSON column's ``1e-30`` or
``1234567890.1234567890123456789`` would not survive a float).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
from elasticsearch import Elasticsearch
from elasticsearch.serializer import JsonSerializer

from fanout.runtime.metrics import COLUMNS_UNKNOWN
from sinks.elasticsearch.types import DELETED_FIELD
from sinks.elasticsearch.write import Entry

SINK = "elasticsearch"
_EXACT_NUMBERS: ContextVar[bool] = ContextVar("fanout_exact_numbers", default=False)


class SourceSerializer(JsonSerializer):
    """The client's JSON serializer, except inside :func:`exact_numbers`: then a response's
    numbers are ``orjson.Fragment`` of their text, which orjson writes back unchanged."""

    def json_loads(self, data: bytes) -> Any:
        if _EXACT_NUMBERS.get():
            return json.loads(data, parse_float=orjson.Fragment, parse_int=orjson.Fragment)
        return super().json_loads(data)


# For ``Elasticsearch(serializers=…)``; the client uses it for the compatible mimetype too.
SOURCE_SERIALIZERS = {JsonSerializer.mimetype: SourceSerializer()}


@contextmanager
def exact_numbers() -> Iterator[None]:
    """Responses read inside keep their numbers as text (with :data:`SOURCE_SERIALIZERS`)."""
    token = _EXACT_NUMBERS.set(True)
    try:
        yield
    finally:
        _EXACT_NUMBERS.reset(token)


@dataclass(slots=True)
class Carried:
    """Per entry, how many of the fields it lacked had no stored value (left absent)."""

    unknown: dict[int, tuple[str, int]] = field(default_factory=dict)  # id(entry) -> (target, n)

    def count(self, applied: Iterable[Entry]) -> None:
        """Count the unknown fields of the entries the store applied, once each."""
        if not self.unknown:
            return
        totals: dict[str, int] = {}
        for entry in applied:
            found = self.unknown.get(id(entry))
            if found is not None:
                target, missing = found
                totals[target] = totals.get(target, 0) + missing
        for target, missing in totals.items():
            COLUMNS_UNKNOWN.labels(SINK, target).inc(missing)


def missing_fields(entry: Entry) -> list[str]:
    """The declared columns an upsert's row lacks (key columns come from the key)."""
    event = entry.event
    row = event.row
    if row is None or len(row) >= len(event.columns):
        return []
    key = event.key
    return [
        column.name for column in event.columns if column.name not in row and column.name not in key
    ]


def carry_forward(
    client: Elasticsearch | None, physical: Callable[[str], str], entries: Sequence[Entry]
) -> Carried:
    """Complete the partial upserts among ``entries`` from their stored documents, in place.

    ``physical(target)`` names the index the documents live in. Nothing is read when every
    entry is whole."""
    carried = Carried()
    partial = [
        (entry, lacks)
        for entry in entries
        if (row := entry.event.row) is not None
        and len(row) < len(entry.event.columns)  # the only per-entry cost of whole rows
        and (lacks := missing_fields(entry))
    ]
    if not partial:
        return carried
    if client is None:
        raise RuntimeError("ElasticsearchSink used before open()")
    # Whole sources: one cut by source filtering is re-serialized, its numbers as doubles.
    docs = [{"_index": physical(entry.target), "_id": document_id(entry)} for entry, _ in partial]
    with exact_numbers():
        response = client.mget(docs=docs, realtime=True)
    for (entry, lacks), stored in zip(partial, response["docs"], strict=True):
        source = stored.get("_source") if stored.get("found") else None
        if source is None or source.get(DELETED_FIELD) is True:
            carried.unknown[id(entry)] = (entry.target, len(lacks))
            continue
        # A field the live document does not have held no value there: it stays absent.
        values = {name: source[name] for name in lacks if name in source}
        if values:
            entry.lines = with_fields(entry.lines, values)
    return carried


def document_id(entry: Entry) -> str:
    """The ``_id`` the entry's action line names (its first NDJSON line)."""
    header = orjson.loads(entry.lines[: entry.lines.index(b"\n")])
    (action,) = header.values()
    return str(action["_id"])


def with_fields(lines: bytes, values: dict[str, Any]) -> bytes:
    """An action's two NDJSON lines with ``values`` added to the end of its source object."""
    if not lines.endswith(b"}\n"):
        raise ValueError("a bulk entry's source line must be a JSON object")
    added = b",".join(_encode(name) + b":" + _encode(value) for name, value in values.items())
    return lines[:-2] + b"," + added + b"}\n"


def _encode(value: Any) -> bytes:
    """JSON as the client read it from the store (numbers as their text: see
    :class:`SourceSerializer`; the standard library for what orjson refuses)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8", "surrogatepass")
