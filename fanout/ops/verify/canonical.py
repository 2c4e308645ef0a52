"""One canonical form per value, so a source row and a sink's copy of it compare equal exactly
when the sink holds what the source holds, under the sinks' own value semantics.

The form is chosen by the SOURCE column's type (:class:`Kind`), and both sides go through it:
the source's psycopg values and whatever the sink gives back (PostgreSQL's own types,
ClickHouse's, Elasticsearch's JSON). What counts as the same value:

* numbers by value: ``numeric`` ``1.50`` = ``1.5`` (Debezium's variable-scale decimals drop
  trailing zeros; Elasticsearch keeps the text); ``real`` as the float32 it is, whichever
  double carries it; ``NaN``/infinity as text (Elasticsearch: null, JSON has none);
* JSON by its parsed value with every digit: keys sorted (``jsonb`` sorts them, ``json`` keeps
  the text), numbers by value (``1e2`` = ``100``), a JSON ``null`` apart from SQL NULL;
* times as UTC ISO text with microseconds (a zone-less timestamp is taken as UTC, as the
  sinks store it); ``time`` the same without a date; bytes as base64; uuids lower-case;
* arrays element by element.

A value no kind knows is compared by its text. :func:`row_digest` hashes a canonical row.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import struct
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import orjson

from fanout.ops.verify.exactjson import loads_exact

UTC = dt.UTC
Canonical = Any  # None, bool, int, str, or a list/dict of those (JSON-ready, orjson-dumpable)
JSON_NULL: Canonical = "null"  # a JSON column holding JSON null, not SQL NULL (None)


class Kind:
    """The canonical families of PostgreSQL base types (``pg_type.typname``)."""

    BY_TYPNAME: ClassVar[dict[str, str]] = {
        "bool": "bool",
        "int2": "int",
        "int4": "int",
        "int8": "int",
        "oid": "int",
        "numeric": "numeric",
        "float4": "float4",
        "float8": "float8",
        "text": "text",
        "varchar": "text",
        "bpchar": "text",
        "name": "text",
        "uuid": "uuid",
        "bytea": "bytes",
        "date": "date",
        "time": "time",
        "timestamp": "timestamp",
        "timestamptz": "timestamptz",
        "json": "json",
        "jsonb": "json",
    }

    @classmethod
    def of(cls, typname: str) -> str:
        return cls.BY_TYPNAME.get(typname, "other")


def canonical(
    kind: str, value: Any, is_array: bool = False, parsed_json: bool = False
) -> Canonical:
    """``value`` (as any side gives it) in the canonical form of ``kind``; ``parsed_json``: a
    JSON value comes already parsed (Elasticsearch's ``_source``), not as its text."""
    return converter(kind, is_array, parsed_json)(value)


def converter(
    kind: str, is_array: bool = False, parsed_json: bool = False
) -> Callable[[Any], Canonical]:
    """The function making values of one column canonical (chosen once per column)."""
    if kind == "json" and parsed_json:
        scalar: Callable[[Any], Canonical] = _json_parsed
    else:
        scalar = _CANONICAL.get(kind, _text)
    if not is_array:
        return lambda value: None if value is None else scalar(value)

    def array(value: Any) -> Canonical:
        if value is None:
            return None
        if isinstance(value, str | bytes):  # an array kept as JSON text (ClickHouse String)
            try:
                value = loads_exact(value)
            except ValueError:
                return _text(value)
        if isinstance(value, list | tuple):
            return [None if item is None else scalar(item) for item in value]
        return _text(value)

    return array


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _bool(value: Any) -> Canonical:
    if isinstance(value, str):
        return value.lower() in ("t", "true", "1")
    return bool(value)


def _int(value: Any) -> Canonical:
    try:
        return int(value)
    except (TypeError, ValueError):
        return _text(value)


def _numeric(value: Any) -> Canonical:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return _text(value)
    if not number.is_finite():
        return str(number).lower()
    if number == 0:
        return "0"
    return format(number.normalize(), "f")


def _float(value: Any, single: bool) -> Canonical:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _text(value)
    if not math.isfinite(number):
        return "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
    if single:
        number = struct.unpack("f", struct.pack("f", number))[0]
    return repr(number)


def _float4(value: Any) -> Canonical:
    return _float(value, single=True)


def _float8(value: Any) -> Canonical:
    return _float(value, single=False)


def _uuid(value: Any) -> Canonical:
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except ValueError:
        return _text(value)


def _bytes(value: Any) -> Canonical:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return _text(value)  # Elasticsearch holds base64 text already


def _date(value: Any) -> Canonical:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return _text(value)


def _time(value: Any) -> Canonical:
    if isinstance(value, str):
        try:
            value = dt.time.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.time):
        return value.replace(tzinfo=None).isoformat("microseconds")
    if isinstance(value, dt.timedelta):  # a driver's time of day as a duration
        return (dt.datetime.min + value).time().isoformat("microseconds")
    return _text(value)


def _timestamp(value: Any) -> Canonical:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    return _text(value)


def _json(value: Any) -> Canonical:
    if not isinstance(value, str | bytes):
        return _json_parsed(value)
    # The sinks mostly hold the source's own JSON text: its form, just computed for the source
    # row, is looked up instead of parsed again (bounded: cleared when full).
    known = _JSON_FORMS.get(value)
    if known is not None:
        return known
    try:
        form = _json_parsed(loads_exact(value))
    except ValueError:
        return _text(value)
    if len(_JSON_FORMS) >= _JSON_FORMS_MAX:
        _JSON_FORMS.clear()
    _JSON_FORMS[value] = form
    return form


_JSON_FORMS: dict[str | bytes, Canonical] = {}
_JSON_FORMS_MAX = 16_384


def _json_parsed(value: Any) -> Canonical:
    """A parsed JSON value as one text: keys sorted, numbers by value (``Decimal``s and ints
    written in one normal form), so ``{"b":1,"a":1.10}`` and ``{"a": 1.1, "b": 1}`` are one
    text; a JSON ``null`` is the text ``null``, apart from SQL NULL (None)."""
    try:
        return orjson.dumps(value, default=_number, option=orjson.OPT_SORT_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):  # ints beyond 64 bits, lone surrogates
        return json.dumps(_json_value(value), sort_keys=True, ensure_ascii=False)


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        normal = _numeric(value)
        # NaN / Infinity (a JSON extension some producers write) stay apart from strings
        return orjson.Fragment(normal if value.is_finite() else json.dumps(normal))
    raise TypeError(type(value).__name__)


def _json_value(value: Any) -> Canonical:
    """The slow path of :func:`_json_parsed`: every number as its normal text in a marker."""
    if isinstance(value, dict):
        return {str(k): _json_value(value[k]) for k in value}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        return {"#": _numeric(value)}
    return _text(value)


_CANONICAL: dict[str, Callable[[Any], Canonical]] = {
    "bool": _bool,
    "int": _int,
    "numeric": _numeric,
    "float4": _float4,
    "float8": _float8,
    "text": _text,
    "uuid": _uuid,
    "bytes": _bytes,
    "date": _date,
    "time": _time,
    "timestamp": _timestamp,
    "timestamptz": _timestamp,
    "json": _json,
}


def row_digest(key: Sequence[Canonical], values: Sequence[Canonical]) -> int:
    """A 64-bit hash of a canonical key and row (column order fixed by the caller)."""
    encoded = orjson.dumps([list(key), list(values)], option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.blake2b(encoded, digest_size=8).digest(), "big")
