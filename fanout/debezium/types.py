"""Kafka Connect / Debezium field schemas -> logical columns and value converters.

Helper of ``fanout.debezium.envelope``. A row schema is walked once into a ``RowPlan``
(the ``Column`` tuple plus one converter per column that needs one); the decoder caches plans
by the schema's JSON text, so a message whose schema was seen before costs no schema walk.
Columns whose JSON value already is the Python value (integers, strings, booleans, floats,
structs kept as dicts) get no converter at all.
"""

from __future__ import annotations

import datetime as dt
import decimal
from binascii import a2b_base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fanout.debezium.framing import json_column
from fanout.errors import DecodeError
from fanout.events import Column

Converter = Callable[[Any], Any]

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_DAY_US = 86_400_000_000
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
_SOURCE_PARAMETERS = {
    "__debezium.source.column.type": "source_type",
    "__debezium.source.column.length": "source_length",
    "__debezium.source.column.scale": "source_scale",
}
# What a converter may raise on a value that does not match its schema.
CONVERSION_ERRORS = (ValueError, TypeError, OverflowError, KeyError, decimal.InvalidOperation)


def _bytes(value: str) -> bytes:
    return a2b_base64(value, strict_mode=True)


def _unscaled(value: str) -> int:
    return int.from_bytes(_bytes(value), "big", signed=True)


def _decimal_converter(scale: int) -> Converter:
    exponent = Decimal(1).scaleb(-scale)

    def convert(value: Any) -> Decimal:
        if isinstance(value, str):  # _unscaled, inlined: decimals are the commonest converter
            unscaled = int.from_bytes(a2b_base64(value, strict_mode=True), "big", signed=True)
            return Decimal(unscaled).scaleb(-scale, _EXACT)
        if isinstance(value, int | float) and not isinstance(value, bool):
            # JsonConverter with decimal.format=NUMERIC writes a plain JSON number.
            return Decimal(repr(value)).quantize(exponent, context=_EXACT)
        raise TypeError(f"expected base64 text or a number, got {type(value).__name__}")

    return convert


def _variable_scale_decimal(value: Mapping[str, Any]) -> Decimal:
    return Decimal(_unscaled(value["value"])).scaleb(-int(value["scale"]), _EXACT)


def _date(days: int) -> dt.date:
    return dt.date.fromordinal(_EPOCH_ORDINAL + days)


def _time_of_day(micros: int) -> dt.time:
    if not 0 <= micros < _DAY_US:
        raise ValueError(f"{micros} µs after midnight is not a time of day")
    seconds, micro = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return dt.time(hour, minute, second, micro)


def _timestamp(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(0, 0, micros)  # positional: half the cost of microseconds=


def _zoned_timestamp(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is dt.UTC:
        return parsed
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC) if parsed.utcoffset() else parsed.replace(tzinfo=dt.UTC)


def _scaled(convert: Callable[[int], Any], divisor: int, multiplier: int = 1) -> Converter:
    if divisor == multiplier == 1:
        return _checked(convert)

    def scaled(value: int) -> Any:
        if not isinstance(value, int):
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        return convert(value * multiplier // divisor)

    return scaled


def _checked(convert: Callable[[int], Any]) -> Converter:
    def checked(value: int) -> Any:
        if not isinstance(value, int):
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        return convert(value)

    return checked


# Debezium / Connect logical names -> (logical type, converter). ``None``: the JSON value is it.
_BY_NAME: dict[str, tuple[str, Converter | None]] = {
    "io.debezium.data.VariableScaleDecimal": ("decimal", _variable_scale_decimal),
    "io.debezium.time.Date": ("date", _date),
    "org.apache.kafka.connect.data.Date": ("date", _date),
    "io.debezium.time.Time": ("time", _scaled(_time_of_day, 1, 1000)),
    "org.apache.kafka.connect.data.Time": ("time", _scaled(_time_of_day, 1, 1000)),
    "io.debezium.time.MicroTime": ("time", _scaled(_time_of_day, 1)),
    "io.debezium.time.NanoTime": ("time", _scaled(_time_of_day, 1000)),
    "io.debezium.time.Timestamp": ("timestamp", _scaled(_timestamp, 1, 1000)),
    "org.apache.kafka.connect.data.Timestamp": ("timestamp", _scaled(_timestamp, 1, 1000)),
    "io.debezium.time.MicroTimestamp": ("timestamp", _scaled(_timestamp, 1)),
    "io.debezium.time.NanoTimestamp": ("timestamp", _scaled(_timestamp, 1000)),
    "io.debezium.time.ZonedTimestamp": ("timestamptz", _zoned_timestamp),
    "io.debezium.time.ZonedTime": ("string", None),
    "io.debezium.time.Year": ("int32", None),
    "io.debezium.time.MicroDuration": ("int64", None),
    "io.debezium.time.Interval": ("string", None),
    "io.debezium.data.Json": ("json", json_column),
    "io.debezium.data.Uuid": ("uuid", None),
    "io.debezium.data.Enum": ("string", None),
    "io.debezium.data.EnumSet": ("string", None),
    "io.debezium.data.Xml": ("string", None),
    "io.debezium.data.Bits": ("bytes", _bytes),
}
# Connect schema types -> (logical type, converter), for fields without a known logical name.
_BY_TYPE: dict[str, tuple[str, Converter | None]] = {
    "int8": ("int16", None),
    "int16": ("int16", None),
    "int32": ("int32", None),
    "int64": ("int64", None),
    "float": ("float32", None),
    "float32": ("float32", None),
    "double": ("float64", None),
    "float64": ("float64", None),
    "boolean": ("boolean", None),
    "string": ("string", None),
    "bytes": ("bytes", _bytes),
    "struct": ("json", None),  # e.g. geometry {wkb, srid}: kept as the JSON object
    "map": ("json", None),
}
DECIMAL = "org.apache.kafka.connect.data.Decimal"


@dataclass(frozen=True, slots=True)
class FieldPlan:
    column: Column
    convert: Converter | None


def plan_field(schema: Mapping[str, Any]) -> FieldPlan:
    """The column and converter for one field schema (``schema["field"]`` is its name)."""
    name = str(schema.get("field", ""))
    parameters = _source_parameters(schema)
    logical, convert = _logical(schema, name, parameters)
    column = Column(
        name, logical, bool(schema.get("optional", False)), tuple(sorted(parameters.items()))
    )
    return FieldPlan(column, convert)


def _logical(
    schema: Mapping[str, Any], name: str, parameters: dict[str, str]
) -> tuple[str, Converter | None]:
    logical_name = schema.get("name")
    if logical_name == DECIMAL:
        return "decimal", _decimal_plan(schema, name, parameters)
    if logical_name in _BY_NAME:
        return _BY_NAME[logical_name]
    connect_type = schema.get("type")
    if connect_type == "array":
        return "array", _array_plan(schema, parameters)
    return _BY_TYPE.get(str(connect_type), ("json", None))


def _decimal_plan(schema: Mapping[str, Any], name: str, parameters: dict[str, str]) -> Converter:
    given = schema.get("parameters") or {}
    try:
        scale = int(given["scale"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"schema of column {name!r}: Decimal without a valid scale") from exc
    parameters["scale"] = str(scale)
    if "connect.decimal.precision" in given:
        parameters["precision"] = str(given["connect.decimal.precision"])
    return _decimal_converter(scale)


def _array_plan(schema: Mapping[str, Any], parameters: dict[str, str]) -> Converter | None:
    items = plan_field(schema.get("items") or {"type": "string"})
    parameters["items"] = items.column.type
    convert_item = items.convert
    if convert_item is None:
        return None

    def convert(values: list[Any]) -> list[Any]:
        return [None if value is None else convert_item(value) for value in values]

    return convert


def _source_parameters(schema: Mapping[str, Any]) -> dict[str, str]:
    given = schema.get("parameters") or {}
    return {
        ours: str(given[theirs]) for theirs, ours in _SOURCE_PARAMETERS.items() if theirs in given
    }


@dataclass(frozen=True, slots=True)
class RowPlan:
    """How to turn one row payload into Python values: built once per distinct schema."""

    columns: tuple[Column, ...]
    converters: tuple[tuple[str, Converter], ...]

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Converts ``row`` in place (it is a fresh ``json.loads`` result) and returns it."""
        for name, convert in self.converters:
            value = row.get(name)
            if value is not None:
                try:
                    row[name] = convert(value)
                except CONVERSION_ERRORS as exc:
                    raise DecodeError(
                        f"column {name!r}: value does not match its schema: {exc}"
                    ) from exc
        return row


EMPTY_PLAN = RowPlan((), ())


def plan_row(schema: Mapping[str, Any] | None, skip_meta: bool = False) -> RowPlan:
    """The plan for a struct schema; ``skip_meta`` leaves out ``__``-prefixed fields."""
    if not schema:
        return EMPTY_PLAN
    if schema.get("type") != "struct" or not isinstance(schema.get("fields"), list):
        raise DecodeError(f"row schema is not a struct: {str(schema)[:120]}")
    plans = [plan_field(field) for field in schema["fields"]]
    if skip_meta:
        plans = [plan for plan in plans if not plan.column.name.startswith("__")]
    return RowPlan(
        tuple(plan.column for plan in plans),
        tuple((plan.column.name, plan.convert) for plan in plans if plan.convert is not None),
    )
