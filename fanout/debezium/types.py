"""Kafka Connect / Debezium field schemas -> logical columns and value converters.

Helper of ``fanout.debezium.envelope``. A row schema is walked once into a ``RowPlan``
(the ``Column`` tuple plus one converter per column that needs one); the decoder caches plans
by the schema's JSON text, so a message whose schema was seen before costs no schema walk.
Columns whose JSON value already is the Python value (integers, strings, booleans, floats,
structs kept as dicts) get no converter, only a check that the value is what the schema
declares: integers of the declared width (int8 .. int64), booleans only ``true``/``false``, text
only where text is declared, … A value that is not is a ``DecodeError`` naming the column and
its declared type, so no sink ever sees a value its schema does not allow. The check is a type
test and, for numbers, one chained comparison per value; it runs per plan's typed columns, and
only a value that fails it goes to the slower path that explains (or, for a float column's
``"NaN"``/``"Infinity"``/``"-Infinity"`` text, converts) it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
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
_NONE = type(None)
# Connect integer types -> the range of their declared width.
_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38
# Jackson (Kafka Connect's JsonConverter) writes a float/double NaN or infinity as JSON text.
_NON_FINITE_TEXTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


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
        if type(value) is int or (type(value) is float and math.isfinite(value)):
            # JsonConverter with decimal.format=NUMERIC writes a plain JSON number.
            return Decimal(repr(value)).quantize(exponent, context=_EXACT)
        raise TypeError(f"expected base64 text or a finite number, got {_describe(value)}")

    return convert


def _variable_scale_decimal(value: Mapping[str, Any]) -> Decimal:
    scale = value["scale"]
    if type(scale) is not int:
        raise TypeError(f"expected an integer scale, got {_describe(scale)}")
    return Decimal(_unscaled(value["value"])).scaleb(-scale, _EXACT)


def _describe(value: Any) -> str:
    """What a value that does not fit its schema is, for the reason of a DecodeError."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value).replace("nan", "NaN").replace("inf", "Infinity")
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "text",
        dict: "an object",
        list: "an array",
    }.get(type(value), f"a {type(value).__name__}")
    shown = repr(value)
    return f"{kind} {shown if len(shown) <= 40 else shown[:39] + '…'}"


# 32 hex digits, hyphens between the canonical 8-4-4-4-12 groups optional: the texts every sink
# stores as a UUID (PostgreSQL also takes braces and other hyphens, ClickHouse's driver not).
_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}")


def _uuid(text: str) -> str:
    """A UUID column's text as sent, once it is one (else PostgreSQL and ClickHouse would refuse
    it and Elasticsearch store it: the sinks would disagree)."""
    if type(text) is not str:
        raise TypeError(f"expected text, got {_describe(text)}")
    if _UUID.fullmatch(text) is None:
        raise ValueError(f"not a UUID: {_describe(text)}")
    return text


def _date(days: int) -> dt.date:
    if type(days) is not int:  # checked here, not by a wrapper: dates are common
        raise TypeError(f"expected an integer, got {_describe(days)}")
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
        if type(value) is not int:  # a bool is an int to isinstance
            raise TypeError(f"expected an integer, got {_describe(value)}")
        return convert(value * multiplier // divisor)

    return scaled


def _checked(convert: Callable[[int], Any]) -> Converter:
    def checked(value: int) -> Any:
        if type(value) is not int:  # a bool is an int to isinstance
            raise TypeError(f"expected an integer, got {_describe(value)}")
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
    "io.debezium.data.Uuid": ("uuid", _uuid),
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


# Columns without a converter: the Python types their JSON value may have (None: a null), by
# Connect type. Numbers also get a range (below); ints never pass for booleans (type(), not
# isinstance), and a float column takes a JSON integer (a double written without a fraction).
_INTS = frozenset({int})
_FLOATS = frozenset({float, int})
_KINDS: dict[str, frozenset[type]] = {
    "boolean": frozenset({bool, _NONE}),
    "string": frozenset({str, _NONE}),
    "struct": frozenset({dict, _NONE}),
    "map": frozenset({dict, _NONE}),
}
_FLOAT_RANGES = {
    "float": (-_FLOAT32_MAX, _FLOAT32_MAX),
    "float32": (-_FLOAT32_MAX, _FLOAT32_MAX),
    "double": (-math.inf, math.inf),
    "float64": (-math.inf, math.inf),
}
Bound = int | float
NumberCheck = tuple[str, frozenset[type], Bound, Bound]  # (column, types, low, high)
KindCheck = tuple[str, frozenset[type]]  # (column, types)


@dataclass(frozen=True, slots=True)
class FieldPlan:
    column: Column
    convert: Converter | None
    declared: str  # the schema's type as the error messages name it: "int32", "…Date (int32)"
    number: NumberCheck | None = None  # for a converter-less integer or float column
    kind: KindCheck | None = None  # for a converter-less boolean, string, struct or map column


def plan_field(schema: Mapping[str, Any]) -> FieldPlan:
    """The column and converter for one field schema (``schema["field"]`` is its name)."""
    name = str(schema.get("field", ""))
    parameters = _source_parameters(schema)
    logical, convert = _logical(schema, name, parameters)
    column = Column(
        name, logical, bool(schema.get("optional", False)), tuple(sorted(parameters.items()))
    )
    connect_type = str(schema.get("type"))
    logical_name = schema.get("name")
    declared = f"{logical_name} ({connect_type})" if logical_name else connect_type
    if convert is not None:
        return FieldPlan(column, convert, declared)
    if connect_type in _INT_RANGES:
        low, high = _INT_RANGES[connect_type]
        return FieldPlan(column, None, declared, number=(name, _INTS, low, high))
    if connect_type in _FLOAT_RANGES:
        low_f, high_f = _FLOAT_RANGES[connect_type]
        return FieldPlan(column, None, declared, number=(name, _FLOATS, low_f, high_f))
    if connect_type in _KINDS:
        return FieldPlan(column, None, declared, kind=(name, _KINDS[connect_type]))
    return FieldPlan(column, None, declared)  # an unknown type: kept as sent


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


def _array_plan(schema: Mapping[str, Any], parameters: dict[str, str]) -> Converter:
    items = plan_field(schema.get("items") or {"type": "string"})
    parameters["items"] = items.column.type
    return _array_converter(items)


def _array_converter(items: FieldPlan) -> Converter:
    """Checks every item against the items' schema (and converts it, if they need it)."""
    convert_item = items.convert
    if convert_item is not None:

        def convert(values: list[Any]) -> list[Any]:
            if type(values) is not list:
                raise TypeError(f"expected an array, got {_describe(values)}")
            return [None if value is None else convert_item(value) for value in values]

        return convert
    if items.number is not None:
        _, types, low, high = items.number

        def numbers(values: list[Any]) -> list[Any]:
            if type(values) is not list:
                raise TypeError(f"expected an array, got {_describe(values)}")
            for index, value in enumerate(values):
                if value is not None and not (type(value) in types and low <= value <= high):
                    values[index] = _odd_number(items.declared, types, low, high, value)
            return values

        return numbers
    allowed = items.kind[1] if items.kind is not None else None

    def kinds(values: list[Any]) -> list[Any]:
        if type(values) is not list:
            raise TypeError(f"expected an array, got {_describe(values)}")
        if allowed is not None and not allowed.issuperset(map(type, values)):
            wrong = next(value for value in values if type(value) not in allowed)
            raise TypeError(f"an item is {_describe(wrong)}, not {items.declared}")
        return values

    return kinds


def _odd_number(declared: str, types: frozenset[type], low: Bound, high: Bound, value: Any) -> Any:
    """A number column's value that failed the quick check: what it stands for, or TypeError /
    ValueError saying why it does not fit (the caller names the column)."""
    if types is _FLOATS:
        if type(value) is str and value in _NON_FINITE_TEXTS:
            return _NON_FINITE_TEXTS[value]  # how Kafka Connect writes a NaN or an infinity
        if type(value) is float and not math.isfinite(value):
            return value  # NaN/Infinity literals (not from Kafka Connect, but unambiguous)
    if type(value) in types:
        bounds = f"±{high:g}" if types is _FLOATS else f"{low}..{high}"
        raise ValueError(f"{value!r} is out of the {declared} range ({bounds})")
    raise TypeError(f"got {_describe(value)}")


def _source_parameters(schema: Mapping[str, Any]) -> dict[str, str]:
    given = schema.get("parameters") or {}
    return {
        ours: str(given[theirs]) for theirs, ours in _SOURCE_PARAMETERS.items() if theirs in given
    }


RowCheck = Callable[[dict[str, Any]], bool]


class RowPlan:
    """How to check one row payload and turn it into Python values: built once per schema.

    ``numbers`` and ``kinds`` are the columns whose JSON value already is the Python value,
    checked against their declared type; ``converters`` convert the others (a converter checks
    what it converts). ``declared`` names each column's schema type for the error messages.

    The check is the hot path's cost of validation, so it is compiled once per plan into one
    boolean expression over the row (``_compile_check``): per column a dict lookup, a type
    test and, for numbers, one chained comparison with the bounds as constants. A row it
    rejects goes through ``_check_each``, which names the column and its declared type — or
    converts what has a meaning (``"NaN"`` text in a float column, as Kafka Connect writes it).
    """

    __slots__ = (
        "_check",
        "_column_checks",
        "columns",
        "converters",
        "declared",
        "kinds",
        "may_change",
        "numbers",
    )

    def __init__(
        self,
        columns: tuple[Column, ...],
        converters: tuple[tuple[str, Converter], ...],
        numbers: tuple[NumberCheck, ...] = (),
        kinds: tuple[KindCheck, ...] = (),
        declared: Mapping[str, str] | None = None,
    ) -> None:
        self.columns = columns
        self.converters = converters
        self.numbers = numbers
        self.kinds = kinds
        self.declared = dict(declared or {})
        # Whether convert() can replace a value (the key's values as sent are kept then).
        self.may_change = bool(converters) or any(check[1] is _FLOATS for check in numbers)
        self._check = _compile_check(numbers, kinds) if numbers or kinds else None
        # column -> (number check, kind check, converter): for rows of a few columns
        self._column_checks: dict[str, tuple[NumberCheck | None, KindCheck | None, Any]] = {}
        for column in columns:
            self._column_checks[column.name] = (None, None, None)
        for number in numbers:
            self._column_checks[number[0]] = (number, None, None)
        for kind in kinds:
            self._column_checks[kind[0]] = (None, kind, None)
        for name, convert in converters:
            self._column_checks[name] = (None, None, convert)

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Checks and converts ``row`` in place (a fresh parse result) and returns it."""
        check = self._check
        if check is not None:
            try:
                fits = check(row)
            except KeyError:  # a column the row leaves out (Debezium writes every field)
                fits = False
            if not fits:
                self._check_each(row)
        for name, convert in self.converters:  # inline, not a call: this runs per record
            value = row.get(name)
            if value is not None:
                try:
                    row[name] = convert(value)
                except CONVERSION_ERRORS as exc:
                    raise self._mismatch(name, exc) from exc
        return row

    def convert_some(self, row: dict[str, Any]) -> dict[str, Any]:
        """``convert`` for a row of a few of the columns (a delete's key columns): the work
        is per column the row has, not per column of the schema."""
        for name, value in row.items():
            if value is None:
                continue
            number, kind, convert = self._column_checks.get(name, (None, None, None))
            try:
                if number is not None:
                    _, types, low, high = number
                    if not (type(value) in types and low <= value <= high):
                        row[name] = _odd_number(self.declared[name], types, low, high, value)
                elif kind is not None:
                    if type(value) not in kind[1]:
                        raise TypeError(f"got {_describe(value)}")
                elif convert is not None:
                    row[name] = convert(value)
            except CONVERSION_ERRORS as exc:
                raise self._mismatch(name, exc) from None
        return row

    def _check_each(self, row: dict[str, Any]) -> None:
        """Column by column: converts what has a meaning, raises DecodeError on the rest."""
        for name, types, low, high in self.numbers:
            value = row.get(name)
            if value is not None and not (type(value) in types and low <= value <= high):
                try:
                    row[name] = _odd_number(self.declared[name], types, low, high, value)
                except (TypeError, ValueError) as exc:
                    raise self._mismatch(name, exc) from None
        for name, types in self.kinds:
            value = row.get(name)
            if type(value) not in types:
                raise self._mismatch(name, TypeError(f"got {_describe(value)}"))

    def _mismatch(self, name: str, exc: Exception) -> DecodeError:
        declared = self.declared.get(name, "?")
        return DecodeError(f"column {name!r}: value does not match its schema ({declared}): {exc}")


def _compile_check(numbers: tuple[NumberCheck, ...], kinds: tuple[KindCheck, ...]) -> RowCheck:
    """One function ``check(row) -> bool``: every checked column holds a value of its type.

    Generated once per plan: a loop over the columns costs about 1.5 times as much per
    value. Column names and bounds enter the source only through ``repr`` (literals whatever
    they hold); the types of the other columns are names bound in the function's namespace.
    """
    namespace: dict[str, Any] = {}
    terms = []
    for name, types, low, high in numbers:
        value = f"(v := row[{name!r}])"
        if types is _INTS:  # the bounds are int literals
            test = f"type{value} is int and {low!r} <= v <= {high!r}"
        elif low == -math.inf:  # a double: any number (a bool is not one)
            test = f"type{value} is float or type(v) is int"
        else:  # a float32: finite bounds
            test = f"(type{value} is float or type(v) is int) and {low!r} <= v <= {high!r}"
        terms.append(f"({test} or v is None)")  # the common case first: a value, well typed
    for index, (name, types) in enumerate(kinds):
        (kind,) = types - {_NONE}
        namespace[f"k{index}"] = kind
        terms.append(f"(type(v := row[{name!r}]) is k{index} or v is None)")
    source = "def check(row):\n    return (\n        " + "\n        and ".join(terms) + "\n    )\n"
    exec(source, namespace)  # the source holds literals and namespace names only
    check: RowCheck = namespace["check"]
    return check


EMPTY_PLAN = RowPlan((), ())


def plan_row(schema: Mapping[str, Any] | None, skip_meta: bool = False) -> RowPlan:
    """The plan for a struct schema; ``skip_meta`` leaves out ``__``-prefixed fields."""
    if not schema:
        return EMPTY_PLAN
    if schema.get("type") != "struct" or not isinstance(schema.get("fields"), list):
        raise DecodeError(f"row schema is not a struct: {str(schema)[:120]}")
    plans = [plan_field(field_schema) for field_schema in schema["fields"]]
    if skip_meta:
        plans = [plan for plan in plans if not plan.column.name.startswith("__")]
    return RowPlan(
        tuple(plan.column for plan in plans),
        tuple((plan.column.name, plan.convert) for plan in plans if plan.convert is not None),
        tuple(plan.number for plan in plans if plan.number is not None),
        tuple(plan.kind for plan in plans if plan.kind is not None),
        {plan.column.name: plan.declared for plan in plans},
    )
