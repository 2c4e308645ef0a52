"""ClickHouse column types for fanout's logical types, identifier quoting, value conversion.

One logical type maps to one ClickHouse type (``ch_type_for``); a column already in a table
has a *kind* (``TableColumn.kind``) that says which logical types it can still take
(``mismatch``), how a value is converted on the way in (``converter_for``) and what a
non-Nullable column holds when an event carries no value for it (``zero_for``). Kinds that a
ClickHouse type cannot tell apart (JSON, time and binary columns are all ``String``) are kept in
the column comment (``fanout:json``), so they survive restarts and other writers.

Decimals are never rounded: a decimal without a scale (PostgreSQL's unconstrained ``numeric``,
Debezium's ``VariableScaleDecimal``) is stored as its exact decimal text in a ``String`` column
(kind ``decimal_text``); a value headed for an existing ``Decimal(P, S)`` column that cannot
hold it exactly is refused with the reason (``value_check``), never cut to the scale.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from clickhouse_connect.datatypes.base import ClickHouseType
from clickhouse_connect.datatypes.registry import get_from_name

from fanout.errors import MappingError
from fanout.events import POSITION_COLUMN, Column, Json
from sinks.base.jsontext import stdlib_dumps
from sinks.base.names import NameRules
from sinks.base.widening import Width, declared_width, widens

RESERVED_PREFIX = "_fanout"
COMMENT_PREFIX = "fanout:"
MAX_NAME_LENGTH = 200
DEFAULT_DECIMAL_PRECISION = 38
MAX_DECIMAL_PRECISION = 76
UTC = dt.UTC

Converter = Callable[[Any], Any]

# logical type -> (ClickHouse type, kind); decimal and array are built from their parameters.
_SIMPLE: dict[str, tuple[str, str]] = {
    "boolean": ("Bool", "bool"),
    "int16": ("Int16", "int"),
    "int32": ("Int32", "int"),
    "int64": ("Int64", "int"),
    "float32": ("Float32", "float"),
    "float64": ("Float64", "float"),
    "string": ("String", "string"),
    "bytes": ("String", "bytes"),
    "uuid": ("UUID", "uuid"),
    "date": ("Date32", "date"),
    "time": ("String", "time"),
    # A zone-less timestamp is stored as if it were UTC: it then reads back with the same
    # wall-clock value whatever the server's or session's time zone is.
    "timestamp": ("DateTime64(6, 'UTC')", "datetime"),
    "timestamptz": ("DateTime64(6, 'UTC')", "datetime"),
    "json": ("String", "json"),
}
_COMMENTED_KINDS = frozenset({"bytes", "time", "json", "decimal_text"})
_INTS = frozenset({"int16", "int32", "int64"})
_NUMBERS = _INTS | {"float32", "float64"}

# kind of an existing column -> logical types it accepts without a lossy or senseless conversion
ACCEPTS: dict[str, frozenset[str]] = {
    "int": _INTS,
    "float": _NUMBERS,
    "decimal": _INTS | {"decimal"},
    "decimal_text": _INTS | {"decimal"},
    "bool": frozenset({"boolean"}),
    "string": frozenset({"string", "uuid", "bytes"}),
    "bytes": frozenset({"bytes", "string"}),
    "json": _NUMBERS | {"json", "string", "boolean", "array", "decimal"},
    "time": frozenset({"time", "string"}),
    "uuid": frozenset({"uuid", "string"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"timestamp", "timestamptz"}),
    "array": frozenset({"array"}),
}


@dataclass(frozen=True, slots=True)
class TableColumn:
    """A column of a ClickHouse table as fanout sees it."""

    name: str
    ch_type: str  # full type, e.g. "LowCardinality(Nullable(String))"
    kind: str  # a key of ACCEPTS, or "other" for types fanout never creates
    nullable: bool
    item_kind: str | None = None  # element kind of an Array column

    def definition(self) -> str:
        """The column as it appears in CREATE TABLE / ADD COLUMN."""
        text = f"{quote_identifier(self.name)} {self.ch_type}"
        if self.kind in _COMMENTED_KINDS:
            text += f" COMMENT {quote_string(COMMENT_PREFIX + self.kind)}"
        return text


# ---- identifiers -------------------------------------------------------------------------


def quote_identifier(name: str) -> str:
    """The only way a name gets into SQL: backquoted, with backslash and backquote escaped."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


NAMES = NameRules(
    what="ClickHouse table", max_chars=MAX_NAME_LENGTH, reserved_prefixes=(RESERVED_PREFIX,)
)


@lru_cache(maxsize=4096)
def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a ClickHouse table or column name, or None if it can (the
    source-position key of rows appended from a table without a primary key is fanout's own)."""
    return None if name == POSITION_COLUMN else NAMES.problem(name)


# ---- logical type -> ClickHouse type -----------------------------------------------------


def table_column_for(column: Column, *, key: bool, low_cardinality: bool) -> TableColumn:
    """The column to create for a source column; key columns are never Nullable.

    Raises MappingError for a type ClickHouse cannot hold (e.g. a 100-digit decimal).
    """
    base, kind, item_kind = _base_type(column)
    nullable = column.optional and not key and kind != "array"  # Array cannot be Nullable
    ch_type = f"Nullable({base})" if nullable else base
    if low_cardinality and kind == "string":
        ch_type = f"LowCardinality({ch_type})"
    return TableColumn(column.name, ch_type, kind, nullable, item_kind)


def _base_type(column: Column) -> tuple[str, str, str | None]:
    if column.type == "decimal":
        if column.param("scale") is None:  # any scale, row by row: no Decimal(P, S) holds it
            return "String", "decimal_text", None
        return _decimal_type(column), "decimal", None
    if column.type == "array":
        items = column.param("items") or "string"
        if items not in _SIMPLE or _SIMPLE[items][1] in _COMMENTED_KINDS:
            return "String", "json", None  # arrays of JSON/time/bytes/nested arrays as JSON
        item_type, item_kind = _SIMPLE[items]
        return f"Array(Nullable({item_type}))", "array", item_kind
    if column.type not in _SIMPLE:
        raise MappingError(f"column {column.name!r}: unknown logical type {column.type!r}")
    base, kind = _SIMPLE[column.type]
    return base, kind, None


def _decimal_type(column: Column) -> str:
    scale = _int_param(column, "scale", 0)
    precision = _int_param(column, "precision", max(DEFAULT_DECIMAL_PRECISION, scale))
    if not 0 <= scale <= precision <= MAX_DECIMAL_PRECISION:
        raise MappingError(
            f"column {column.name!r}: decimal({precision}, {scale}) does not fit ClickHouse's "
            f"Decimal (precision 1..{MAX_DECIMAL_PRECISION}, 0 <= scale <= precision)"
        )
    return f"Decimal({max(precision, 1)}, {scale})"


def _int_param(column: Column, name: str, default: int) -> int:
    value = column.param(name)
    try:
        return int(value) if value is not None else default
    except ValueError:
        raise MappingError(f"column {column.name!r}: {name} {value!r} is not a number") from None


# ---- existing ClickHouse column -> kind --------------------------------------------------


def table_column_from_catalog(name: str, ch_type: str, comment: str) -> TableColumn:
    """Rebuild a TableColumn from ``system.columns`` (type string and comment)."""
    inner, nullable = _unwrap(ch_type)
    kind = _kind_of(inner)
    if comment.startswith(COMMENT_PREFIX) and kind == "string":
        kind = comment.removeprefix(COMMENT_PREFIX)
    item_kind = None
    if kind == "array":
        item_kind = _kind_of(_unwrap(inner[len("Array(") : -1])[0])
    return TableColumn(name, ch_type, kind, nullable, item_kind)


def _unwrap(ch_type: str) -> tuple[str, bool]:
    nullable = False
    for wrapper in ("LowCardinality(", "Nullable("):
        if ch_type.startswith(wrapper) and ch_type.endswith(")"):
            ch_type = ch_type[len(wrapper) : -1]
            nullable = nullable or wrapper == "Nullable("
    return ch_type, nullable


def _kind_of(ch_type: str) -> str:
    family = ch_type.split("(", 1)[0]
    prefixes = (
        (("Int", "UInt"), "int"),
        (("Float",), "float"),
        (("Decimal",), "decimal"),
        (("Bool",), "bool"),
        (("String", "FixedString", "Enum"), "string"),
        (("UUID",), "uuid"),
        (("Date",), "date"),
        (("DateTime",), "datetime"),
        (("Array",), "array"),
    )
    for starts, kind in prefixes:
        if family.startswith(starts) and not (kind == "date" and family.startswith("DateTime")):
            return kind
    return "other"


# ---- compatibility ----------------------------------------------------------------------


def mismatch(existing: TableColumn, column: Column, value: Any) -> str | None:
    """Why the event's ``column`` (holding ``value``) cannot go into ``existing``, or None."""
    if value is None:
        if existing.nullable or existing.kind == "array":
            return None
        return f"column {existing.name!r} is NULL but the table column is {existing.ch_type}"
    accepted = ACCEPTS.get(existing.kind)
    if accepted is not None and column.type not in accepted:
        return _type_change(existing, column.type)
    if existing.kind == "array" and existing.item_kind in ACCEPTS:
        items = column.param("items")  # None: no item known (a list of NULLs): any array
        if items is not None and items not in ACCEPTS[existing.item_kind]:
            return _type_change(existing, f"array of {items}")
    return None


# ---- safe widening of an existing column (sinks.base.widening) ---------------------------

_CH_WIDTHS = {
    "Int16": Width("int", 16),
    "Int32": Width("int", 32),
    "Int64": Width("int", 64),
    "Float32": Width("float", 32),
    "Float64": Width("float", 64),
}
_WIDENED_KINDS = frozenset({"int", "float", "decimal"})  # never to String (decimal_text)


def widened_type(existing: TableColumn, column: Column) -> str | None:
    """The wider ClickHouse type ``existing`` changes to so the declared ``column`` fits
    without loss (Nullable and LowCardinality kept); None when that is no safe widening."""
    inner, _ = _unwrap(existing.ch_type)
    bounds = decimal_bounds(existing.ch_type) if existing.kind == "decimal" else None
    old = Width("decimal", *bounds) if bounds else _CH_WIDTHS.get(inner)
    new = declared_width(column)
    if old is None or new is None or not widens(old, new):
        return None
    try:
        base, kind, _ = _base_type(column)
    except MappingError:  # e.g. a decimal wider than ClickHouse's 76 digits
        return None
    if kind not in _WIDENED_KINDS:
        return None
    at = existing.ch_type.rfind(inner)
    return existing.ch_type[:at] + base + existing.ch_type[at + len(inner) :]


# ---- exact fit of numbers into Decimal(P, S) ----------------------------------------------

ValueCheck = Callable[[Any], str | None]
_DECIMAL_SIZES = {"Decimal32": 9, "Decimal64": 18, "Decimal128": 38, "Decimal256": 76}
_INT_DIGITS = {"int16": 5, "int32": 10, "int64": 19}


@lru_cache(maxsize=256)
def decimal_bounds(ch_type: str) -> tuple[int, int] | None:
    """(precision, scale) of a Decimal column type; None for any other type."""
    inner, _ = _unwrap(ch_type)
    if match := re.fullmatch(r"Decimal\((\d+),\s*(\d+)\)", inner):
        return int(match[1]), int(match[2])
    if match := re.fullmatch(r"(Decimal(?:32|64|128|256))\((\d+)\)", inner):
        return _DECIMAL_SIZES[match[1]], int(match[2])
    return None


def value_check(existing: TableColumn, column: Column) -> ValueCheck | None:
    """A per-value check for values of ``column`` headed for ``existing``; None when the
    declared type already guarantees every value fits (the common case costs nothing)."""
    if existing.kind == "decimal":
        return _decimal_check(existing, column)
    if existing.kind in ("int", "float", "datetime", "date"):
        return _exact_check(_unwrap(existing.ch_type)[0], column.type, existing.name)
    if existing.kind == "array":
        return _array_check(existing, column)
    return None


def _decimal_check(existing: TableColumn, column: Column) -> ValueCheck | None:
    bounds = decimal_bounds(existing.ch_type)
    if bounds is None:
        return None
    precision, scale = bounds
    if _always_fits(column, precision - scale, scale):
        return None

    def check(value: Any) -> str | None:
        return _decimal_problem(existing, value, precision, scale)

    return check


# ---- exact fit of ints, floats and sub-second digits -----------------------------------------
#
# clickhouse-connect writes a float64 into Float32 rounded, and a datetime into DateTime64(p <
# 6) or DateTime cut to p digits, without a word; an int out of an Int/UInt column's range
# fails the whole insert (found only by bisection). Each is refused per event instead.

_INT_TYPE = re.compile(r"(U?)Int(\d+)")
_DATETIME_TYPE = re.compile(r"DateTime(?:64\((\d+))?")
_DECLARED_BITS = {"int16": 16, "int32": 32, "int64": 64}
_FLOAT32 = struct.Struct("<f")
_EXACT_IN_FLOAT64 = frozenset({"int16", "int32", "float32", "float64"})
_EXACT_IN_FLOAT32 = frozenset({"int16", "float32"})


@lru_cache(maxsize=1024)
def _exact_check(inner: str, logical: str, name: str) -> ValueCheck | None:
    """The check for an Int/UInt, Float or DateTime column (``inner``: its type without
    Nullable/LowCardinality) and the logical type written into it; None if none is needed."""
    if match := _INT_TYPE.fullmatch(inner):
        unsigned, bits = match[1] == "U", int(match[2])
        if not unsigned and _DECLARED_BITS.get(logical, bits + 1) <= bits:
            return None
        low, high = (0, 2**bits) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1))
        return _int_range_check(name, inner, low, high)
    if inner == "Float64":
        return None if logical in _EXACT_IN_FLOAT64 else _float_check(name, inner, single=False)
    if inner == "Float32":
        return None if logical in _EXACT_IN_FLOAT32 else _float_check(name, inner, single=True)
    if match := _DATETIME_TYPE.match(inner):
        digits = int(match[1]) if match[1] else 0
        checks = [_tick_range_check(name, inner, digits, *_DATETIME_TICKS.get(match[0], _INT64))]
        if digits < 6:
            checks.append(_sub_second_check(name, inner, 10 ** (6 - digits)))
        return _first_problem(checks)
    if inner == "Date":
        return _day_range_check(name, inner, 0, 2**16)
    return None  # Date32 holds every date a value can be (0001-01-01 .. 9999-12-31)


# Time columns hold ticks in a fixed-width integer; clickhouse-connect fails the whole insert
# on one that overflows (found only by bisection, with no word on the value): Date (UInt16
# days) and DateTime (UInt32 seconds) hold nothing before 1970, DateTime64(8) nothing after
# 4892, DateTime64(9) only 1677-09-21 .. 2262-04-11. Date32 and DateTime64(p <= 7) hold every
# year 1 .. 9999 (ClickHouse 26.x stores and reads them back exactly).
_INT64 = (-(2**63), 2**63)
_DATETIME_TICKS = {"DateTime": (0, 2**32)}  # else DateTime64(p): Int64 ticks of 10^-p s
_MICROSECOND = dt.timedelta(microseconds=1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()


def _tick_range_check(name: str, ch_type: str, digits: int, low: int, high: int) -> ValueCheck:
    """Refuses a datetime whose ticks (10^-digits s since the epoch, floored as the driver
    does) fall outside [low, high); None-like (no cost) when every datetime fits."""
    micros_low, micros_high = -(-low * 10**6 // 10**digits), -(-high * 10**6 // 10**digits)
    first, last = _micros(dt.datetime.min), _micros(dt.datetime.max)
    if micros_low <= first and last < micros_high:
        return _no_problem
    spec = "seconds" if digits == 0 else "microseconds"
    shown = f"{_shown(micros_low, spec)} .. {_shown(micros_high - 1, spec)} UTC"

    def check(value: Any) -> str | None:
        if not isinstance(value, dt.datetime) or micros_low <= _micros(value) < micros_high:
            return None
        return _not_exact(name, value, ch_type, f"outside its range {shown}")

    return check


def _day_range_check(name: str, ch_type: str, low: int, high: int) -> ValueCheck:
    shown = f"{dt.date.fromordinal(_EPOCH_ORDINAL + low)} .. "
    shown += str(dt.date.fromordinal(_EPOCH_ORDINAL + high - 1))

    def check(value: Any) -> str | None:
        if not isinstance(value, dt.date) or low <= value.toordinal() - _EPOCH_ORDINAL < high:
            return None
        return _not_exact(name, value, ch_type, f"outside its range {shown}")

    return check


def _micros(value: dt.datetime) -> int:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MICROSECOND


def _shown(micros: int, spec: str) -> str:
    micros = min(max(micros, _micros(dt.datetime.min)), _micros(dt.datetime.max))
    naive = (_EPOCH + dt.timedelta(microseconds=micros)).replace(tzinfo=None)
    return naive.isoformat(" ", spec)


def _no_problem(value: Any) -> str | None:
    return None


def _first_problem(checks: list[ValueCheck]) -> ValueCheck | None:
    needed = [check for check in checks if check is not _no_problem]
    if len(needed) <= 1:
        return needed[0] if needed else None

    def check(value: Any) -> str | None:
        for each in needed:
            problem = each(value)
            if problem:
                return problem
        return None

    return check


def _array_check(existing: TableColumn, column: Column) -> ValueCheck | None:
    """The element check of an Array column, applied to each element of a list; None when
    the declared element type guarantees the fit (as for a scalar column)."""
    items = column.param("items")
    if existing.item_kind is None or items is None:
        return None  # no element type known: a list of NULLs (or not an array) fits
    inner = _unwrap(existing.ch_type)[0][len("Array(") : -1]
    element_type, nullable = _unwrap(inner)
    element = TableColumn(existing.name, element_type, existing.item_kind, nullable)
    element_check = value_check(element, Column(column.name, items))
    if element_check is None:
        return None

    def check(value: Any) -> str | None:
        if not isinstance(value, list):
            return None
        for item in value:
            problem = None if item is None else element_check(item)
            if problem:
                return f"{problem} (an element of {existing.ch_type})"
        return None

    return check


def _int_range_check(name: str, ch_type: str, low: int, high: int) -> ValueCheck:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or low <= value < high:
            return None
        return _not_exact(name, value, ch_type, "out of range")

    return check


def _float_check(name: str, ch_type: str, *, single: bool) -> ValueCheck:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return None  # not a number (the type check speaks), or NaN (NaN there too)
        try:
            stored = float(value)
            if single:
                stored = _FLOAT32.unpack(_FLOAT32.pack(stored))[0]
        except OverflowError:
            stored = None
        if stored == value:  # int == float compares exactly
            return None
        return _not_exact(name, value, ch_type, "not exact in that precision")

    return check


def _sub_second_check(name: str, ch_type: str, step: int) -> ValueCheck:
    def check(value: Any) -> str | None:
        if not isinstance(value, dt.datetime) or value.microsecond % step == 0:
            return None
        return _not_exact(name, value, ch_type, "more fractional second digits than it keeps")

    return check


def _not_exact(name: str, value: Any, ch_type: str, why: str) -> str:
    return (
        f"column {name!r}: value {value} cannot be stored exactly in {ch_type} ({why}); "
        "fanout does not round"
    )


def _always_fits(column: Column, integer_digits: int, scale: int) -> bool:
    if column.type in _INT_DIGITS:
        return _INT_DIGITS[column.type] <= integer_digits
    own_scale, own_precision = column.param("scale"), column.param("precision")
    if column.type != "decimal" or own_scale is None or own_precision is None:
        return False
    try:
        return int(own_scale) <= scale and int(own_precision) - int(own_scale) <= integer_digits
    except ValueError:
        return False


def _decimal_problem(existing: TableColumn, value: Any, precision: int, scale: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None  # not a number: the type check (mismatch) speaks for it
    number = Decimal(value) if isinstance(value, int) else value
    if not number.is_finite():
        return f"column {existing.name!r}: {number} cannot be stored in {existing.ch_type}"
    fraction, integer = _digits(number)
    if fraction <= scale and integer <= precision - scale:
        return None
    return (
        f"column {existing.name!r}: {value} has {integer} integer and {fraction} fractional "
        f"digits, more than {existing.ch_type} holds exactly; fanout does not round (a decimal "
        "without a scale is stored as its text: docs/sinks/clickhouse.md)"
    )


def _digits(number: Decimal) -> tuple[int, int]:
    """(fractional digits, integer digits) of ``number`` written without trailing zeros."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    trailing = 0
    for digit in reversed(digits):
        if digit:
            break
        trailing += 1
    if trailing == len(digits):
        return 0, 0  # zero
    exponent += trailing
    return max(0, -exponent), max(0, len(digits) - trailing + exponent)


def _type_change(existing: TableColumn, logical: str) -> str:
    return (
        f"incompatible type change: column {existing.name!r} is {existing.ch_type} in "
        f"ClickHouse but the event carries a {logical} value"
    )


# ---- values ------------------------------------------------------------------------------


def _to_json(value: Any) -> str:
    # A JSON column's own text (Json) is stored as it is: every digit and a JSON null kept.
    if type(value) is Json:
        return value.text
    return stdlib_dumps(value, default=str)


def _to_decimal_text(value: Any) -> str:
    # Plain notation, every digit and the scale as sent: 1E-22 is "0.0000000000000000000001",
    # as PostgreSQL shows it and as toDecimal256(text, S) parses it.
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _to_time(value: Any) -> str:
    return value.isoformat("microseconds") if isinstance(value, dt.time) else str(value)


def _to_utc(value: Any) -> Any:
    if not isinstance(value, dt.datetime):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if _FIRST_EXACT_YEAR <= value.year <= _LAST_EXACT_YEAR:
        return value
    return _WholeSeconds(
        value.year, value.month, value.day, value.hour, value.minute, value.second,
        value.microsecond, value.tzinfo,
    )  # fmt: skip


# clickhouse-connect writes a datetime's ticks as floor(timestamp()) plus its microseconds. The
# float timestamp() holds a microsecond only within 2^34 s of 1970; further away, a time a few
# microseconds before a whole second is rounded up to it and stored one second late (0001-01-01
# 23:59:59.999999 as 0001-01-02 00:00:00.999999). For a datetime that is not exactly a datetime
# the driver works out the whole seconds by round(timestamp() - fraction) instead, which is exact
# for every year 1 .. 9999; only such rare datetimes pay for the copy.
_FIRST_EXACT_YEAR, _LAST_EXACT_YEAR = 1427, 2513  # 2^34 s is 544.4 years either side of 1970


class _WholeSeconds(dt.datetime):
    __slots__ = ()


_CONVERTERS: dict[str, Converter] = {
    "json": _to_json,
    "time": _to_time,
    "datetime": _to_utc,
    "decimal_text": _to_decimal_text,
}

_ZEROS: dict[str, Any] = {
    "int": 0,
    "float": 0.0,
    "decimal": Decimal(0),
    "bool": False,
    "string": "",
    "bytes": b"",
    "json": "",
    "decimal_text": "",
    "time": "",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "date": dt.date(1970, 1, 1),
    "datetime": dt.datetime(1970, 1, 1, tzinfo=UTC),
}


def converter_for(column: TableColumn) -> Converter | None:
    """How a non-NULL value is prepared for ``column``; None when it goes in as it is."""
    if column.kind == "array" and column.item_kind == "datetime":
        return _items_to_utc  # as for a scalar: else local time, and a second late far out
    return _CONVERTERS.get(column.kind)


def _items_to_utc(values: Any) -> Any:
    if not isinstance(values, list):
        return values
    return [None if value is None else _to_utc(value) for value in values]


def zero_for(column: TableColumn) -> Any:
    """What a column holds when the event has no value for it (NULL if it is Nullable)."""
    if column.kind == "array":
        return []
    if column.nullable:
        return None
    return _ZEROS.get(column.kind)


@lru_cache(maxsize=1024)
def driver_type(ch_type: str) -> ClickHouseType:
    """clickhouse-connect's type object for a type string (saves a DESCRIBE per insert)."""
    return get_from_name(ch_type)


def low_cardinality_columns(configured: dict[str, list[str]], target: str) -> Collection[str]:
    return frozenset(configured.get(target, ()))
