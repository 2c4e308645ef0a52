"""Logical column types -> PostgreSQL types, and which existing column types an event fits.

Package-private helper of ``sinks.postgres.sink``. Two directions:

* creating a column: :func:`pg_type_sql` names the PostgreSQL type for a logical type;
* writing into an existing column: :func:`fits` says whether the event's value can go there
  without changing its meaning. Declared types (from the Debezium schema) are held to the exact
  type or a lossless widening; inferred types (no schema) only say what Python value arrived,
  so they are matched by family (any integer column takes an ``int``; PostgreSQL still rejects
  an out-of-range value, which then fails the batch and is found by bisection).
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter
from types import NoneType
from typing import Any

import psycopg
from psycopg import postgres, sql
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format

from fanout.errors import MappingError
from fanout.events import Column
from sinks.base.widening import Width, declared_width, widens

MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL silently truncates longer names

# Column type names in the create direction, by logical type (decimal and array are built).
_CREATE_TYPES = {
    "boolean": "boolean",
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "float32": "real",
    "float64": "double precision",
    "decimal": "numeric",
    "string": "text",
    "bytes": "bytea",
    "uuid": "uuid",
    "date": "date",
    "time": "time",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "json": "jsonb",
}

_TEXT = frozenset({"text", "varchar", "bpchar"})
_JSON = frozenset({"jsonb", "json"})

# Declared logical type -> base type names (pg_type.typname) of columns it may be written into.
# Widening is allowed only where no value can change: smaller ints into larger ints or numeric,
# float32 into double precision, uuid into text.
_DECLARED_FITS: dict[str, frozenset[str]] = {
    "boolean": frozenset({"bool"}),
    "int16": frozenset({"int2", "int4", "int8", "numeric"}),
    "int32": frozenset({"int4", "int8", "numeric"}),
    "int64": frozenset({"int8", "numeric"}),
    "float32": frozenset({"float4", "float8"}),
    "float64": frozenset({"float8"}),
    "decimal": frozenset({"numeric"}),
    "string": _TEXT,
    "bytes": frozenset({"bytea"}),
    "uuid": frozenset({"uuid"}) | _TEXT,
    "date": frozenset({"date"}),
    "time": frozenset({"time"}),
    "timestamp": frozenset({"timestamp"}),
    "timestamptz": frozenset({"timestamptz"}),
    "json": _JSON,
}

# Inferred logical type (what ``sinks.base.columns.infer_column`` made of a Python value) ->
# the columns that value may go into; PostgreSQL parses the text form the COPY sends.
_INFERRED_FITS: dict[str, frozenset[str]] = {
    **_DECLARED_FITS,
    "int64": frozenset({"int2", "int4", "int8", "numeric"}),
    "float64": frozenset({"float4", "float8", "numeric"}),
    # A string without a schema may be any textual encoding Debezium uses (ISO dates, uuids,
    # JSON documents); the server parses it into the column's type.
    "string": _TEXT | _JSON | {"uuid", "date", "time", "timestamp", "timestamptz"},
}


@dataclass(frozen=True, slots=True)
class PgColumn:
    """One column of an existing table as the catalog describes it."""

    name: str
    type_sql: str  # format_type() output, e.g. "numeric(10,2)", "text[]"
    base: str  # pg_type.typname of the column, or of the element for arrays, e.g. "int4"
    is_array: bool = False
    generated: bool = False

    @property
    def is_json(self) -> bool:
        return self.base in _JSON and not self.is_array


def check_identifier(name: str, what: str) -> str:
    """Return ``name`` if PostgreSQL can hold it unchanged, else raise MappingError."""
    if not name:
        raise MappingError(f"{what} name is empty")
    if "\x00" in name:
        raise MappingError(f"{what} name {name!r} contains a NUL character")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise MappingError(
            f"{what} name {name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes "
            "(PostgreSQL would truncate it)"
        )
    return name


def pg_type_sql(column: Column) -> sql.Composable:
    """The PostgreSQL type a new column of this logical type is created with."""
    if column.type == "array":
        return _array_type(column)
    if column.type == "decimal":
        return sql.SQL(_numeric_type(column))
    if column.type not in _CREATE_TYPES:
        raise MappingError(f"column {column.name}: unknown logical type {column.type!r}")
    return sql.SQL(_CREATE_TYPES[column.type])


def fits(column: Column, target: PgColumn, *, inferred: bool) -> bool:
    """Whether values of ``column`` can be written into the existing ``target`` column."""
    table = _INFERRED_FITS if inferred else _DECLARED_FITS
    if column.type == "array":
        return _array_fits(column, target, table)
    return not target.is_array and target.base in table.get(column.type, frozenset())


# Existing column base type -> its width; numeric and varchar read their typmod from type_sql.
_PG_WIDTHS = {
    "int2": Width("int", 16),
    "int4": Width("int", 32),
    "int8": Width("int", 64),
    "float4": Width("float", 32),
    "float8": Width("float", 64),
    "text": Width("string", None),
}
_TYPMOD = re.compile(r"\((\d+)(?:,(-?\d+))?\)$")  # a scale may be negative (PostgreSQL 15)
MAX_VARCHAR_LENGTH = 10_485_760  # longer declared lengths (text: 2^31 - 1) become text


def widened_type(column: Column, target: PgColumn) -> sql.Composable | None:
    """The wider type to change ``target`` to so that the declared ``column`` fits without
    loss (``sinks.base.widening``); None when that is no safe widening."""
    if target.is_array or target.generated:
        return None
    old, new = _pg_width(target), declared_width(column)
    if old is None or new is None or not widens(old, new):
        return None
    if new.family == "string":
        if new.size is None or new.size > MAX_VARCHAR_LENGTH:
            return sql.SQL("text")
        return sql.SQL(f"varchar({int(new.size)})")
    return pg_type_sql(column)


def _pg_width(target: PgColumn) -> Width | None:
    if target.base in _PG_WIDTHS:
        return _PG_WIDTHS[target.base]
    typmod = _TYPMOD.search(target.type_sql)
    if target.base == "numeric":
        if typmod is None:
            return Width("decimal", None)
        return Width("decimal", int(typmod[1]), int(typmod[2] or 0))
    if target.base == "varchar":
        return Width("string", int(typmod[1]) if typmod else None)
    return None


# --- exact fit of values: nothing is rounded into an existing column -------------------------
#
# PostgreSQL rounds silently where a value has more digits than the column keeps: fractional
# digits beyond numeric(p,s)'s scale, sub-second digits beyond timestamp(p)/time(p), a double
# written into real. Such a value is refused per event instead (the DLQ, with the reason). The
# check is made per value only where the declared source type does not already guarantee the
# fit (a decimal(p,s) into a column at least as wide, an int into room enough), so the common
# case costs nothing.

ValueCheck = Callable[[Any], str | None]  # why the value cannot be stored exactly, or None
_NUMERIC_TYPMOD = re.compile(r"\((\d+)(?:,(-?\d+))?\)$")
_TIME_TYPMOD = re.compile(r"^\w+\((\d)\)")  # "timestamp(3) with time zone", "time(0) …"
_TIME_BASES = frozenset({"timestamp", "timestamptz", "time", "timetz"})
_INT_DIGITS = {"int16": 5, "int32": 10, "int64": 19}
_INT_BITS = {"int2": 16, "int4": 32, "int8": 64}
_FRACTION = re.compile(r"\d:\d\d[.,](\d+)").search  # sub-second digits of an ISO string
_FLOAT32 = struct.Struct("<f")


def value_check(column: Column, target: PgColumn, *, inferred: bool) -> ValueCheck | None:
    """A per-value check for values of ``column`` written into ``target`` (already known to
    fit by type); None when every value of the declared type fits exactly."""
    if target.is_array:
        return _array_check(column, target, inferred=inferred)
    if target.base == "numeric":
        typmod = _NUMERIC_TYPMOD.search(target.type_sql)
        if typmod is None:
            return None  # unconstrained numeric keeps every digit
        precision, scale = int(typmod[1]), int(typmod[2] or 0)
        if not inferred and _numeric_always_fits(column, precision, scale):
            return None
        return _numeric_check(target, precision, scale)
    if target.base in _TIME_BASES:
        typmod = _TIME_TYPMOD.match(target.type_sql)
        if typmod is None or int(typmod[1]) >= 6:
            return None  # microseconds kept, all a decoded value has
        return _sub_second_check(target, int(typmod[1]))
    if inferred and target.base == "float4" and column.type == "float64":
        return _float32_check(target)
    if inferred and target.base in _INT_BITS:
        return _int_check(target, _INT_BITS[target.base])
    return None


def _array_check(column: Column, target: PgColumn, *, inferred: bool) -> ValueCheck | None:
    """The element check of an array column (format_type shows any dimensions as one "[]"),
    applied to every element; None when the declared element type guarantees the fit."""
    items = _array_items(column)
    if items is None or not target.type_sql.endswith("[]"):
        return None
    element = PgColumn(target.name, target.type_sql[:-2], target.base)
    element_check = value_check(items, element, inferred=inferred)
    if element_check is None:
        return None

    def check(value: Any) -> str | None:
        problem = _element_problem(value, element_check) if isinstance(value, list) else None
        return f"{problem} (an element of {target.type_sql})" if problem else None

    return check


def _element_problem(values: list[Any], element_check: ValueCheck) -> str | None:
    for item in values:  # a multidimensional array is a list of lists
        if isinstance(item, list):
            problem = _element_problem(item, element_check)
        else:
            problem = None if item is None else element_check(item)
        if problem:
            return problem
    return None


def _numeric_always_fits(column: Column, precision: int, scale: int) -> bool:
    if column.type in _INT_DIGITS:
        return scale >= 0 and _INT_DIGITS[column.type] <= precision - scale
    own_precision, own_scale = _int_param(column, "precision"), _int_param(column, "scale")
    if column.type != "decimal" or own_precision is None or own_scale is None:
        return False
    return own_scale <= scale and own_precision - own_scale <= precision - scale


def numeric_fits(number: Decimal, precision: int, scale: int) -> bool:
    """Whether numeric(precision, scale) holds ``number`` without rounding or overflow
    (a negative scale or one above the precision included, as PostgreSQL 15 allows)."""
    if not number.is_finite():
        return number.is_nan()  # NaN is kept; infinity does not fit a constrained numeric
    if not number:
        return True
    # Not Decimal.normalize(): it rounds to the context's 28 digits.
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    trailing = len(digits) - len(bytes(digits).rstrip(b"\0"))
    lowest = exponent + trailing  # power of ten of the last non-zero digit
    highest = number.adjusted()  # … and of the first one
    return -lowest <= scale and highest < precision - scale


def _numeric_check(target: PgColumn, precision: int, scale: int) -> ValueCheck:
    room = precision - scale

    def check(value: Any) -> str | None:
        if type(value) is Decimal and value.is_finite():  # the fast path: no more digits
            exponent = value.as_tuple().exponent
            if isinstance(exponent, int) and exponent >= -scale and value.adjusted() < room:
                return None
        if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
            return None  # another type: the type check speaks for it
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if numeric_fits(number, precision, scale):
            return None
        return _not_exact(target, value)

    return check


def _sub_second_check(target: PgColumn, digits: int) -> ValueCheck:
    step = 10 ** (6 - digits)

    def check(value: Any) -> str | None:
        if isinstance(value, dt.datetime | dt.time):
            if value.microsecond % step == 0:
                return None
        elif isinstance(value, str):
            fraction = _FRACTION(value)
            if fraction is None or len(fraction[1].rstrip("0")) <= digits:
                return None
        else:
            return None
        return _not_exact(target, value, f"more than {digits} fractional second digits")

    return check


def _float32_check(target: PgColumn) -> ValueCheck:
    def check(value: Any) -> str | None:
        if not isinstance(value, float) or value != value:  # NaN is NaN in real too
            return None
        try:
            if _FLOAT32.unpack(_FLOAT32.pack(value))[0] == value:
                return None
        except OverflowError:
            pass
        return _not_exact(target, value, "not exact in single precision")

    return check


def _int_check(target: PgColumn, bits: int) -> ValueCheck:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1)

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or low <= value < high:
            return None
        return _not_exact(target, value, "out of range")

    return check


def _not_exact(target: PgColumn, value: Any, why: str = "") -> str:
    because = f" ({why})" if why else ""
    return (
        f"column {target.name}: value {value} cannot be stored exactly in target column type "
        f"{target.type_sql}{because}; fanout does not round"
    )


def describe(column: Column) -> str:
    """The event's type as shown in error messages, e.g. ``array<int32>``."""
    items = column.param("items")
    return f"array<{items}>" if column.type == "array" and items else column.type


def _array_items(column: Column) -> Column | None:
    items = column.param("items")
    if items is None or items in ("array", "json"):
        return None
    return Column(name=column.name, type=items)


def _array_type(column: Column) -> sql.Composable:
    items = _array_items(column)
    if items is None:
        # PostgreSQL arrays cannot nest as lists of lists of varying shape; store as JSON.
        return sql.SQL("jsonb")
    return sql.Composed([pg_type_sql(items), sql.SQL("[]")])


def _array_fits(column: Column, target: PgColumn, table: dict[str, frozenset[str]]) -> bool:
    items = _array_items(column)
    if items is None:
        return target.is_json
    # Arrays of json/jsonb are not written: an element would need its own JSON encoding.
    fitting = table.get(items.type, frozenset()) - _JSON
    return target.is_array and target.base in fitting


def _numeric_type(column: Column) -> str:
    precision, scale = _int_param(column, "precision"), _int_param(column, "scale")
    if precision is None or not 1 <= precision <= 1000:
        return "numeric"
    if scale is None or not 0 <= scale <= precision:
        return "numeric"
    return f"numeric({precision},{scale})"


def _int_param(column: Column, key: str) -> int | None:
    value = column.param(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# --- binary COPY ------------------------------------------------------------------------------
#
# Binary COPY skips both psycopg's text formatting and PostgreSQL's text parsing. It is used
# only where the binary form cannot accept a value the text form would reject or read
# differently (psycopg's int2/int4/float4 dumpers wrap or round out-of-range values silently;
# a str into a date column only parses server-side): each staged value must have one of the
# exact Python types below, and pass the column's check if it has one; otherwise the rows go
# in text format.

# A check sees all non-NULL values of one column in a batch, so it can use C-level builtins.
Check = Callable[[list[Any]], bool]
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
).fullmatch
_TZINFO = attrgetter("tzinfo")


@dataclass(frozen=True, slots=True)
class BinaryColumn:
    """How one staged column goes in binary COPY."""

    type_name: str  # what ``Copy.set_types`` gets
    kinds: frozenset[type] | None  # exact Python types accepted (None is always); None = any
    check: Check | None = None  # on the column's non-NULL values, after their types matched


def _int_range(bits: int) -> Check:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1)
    return lambda values: low <= min(values) and max(values) < high


def _canonical_uuids(values: list[str]) -> bool:
    return all(map(_CANONICAL_UUID, values))


def _text_items(values: list[list[Any]]) -> bool:
    return {type(item) for value in values for item in value} <= {str, NoneType}


def _aware(values: list[dt.datetime]) -> bool:
    return None not in set(map(_TZINFO, values))


def _naive(values: list[dt.datetime]) -> bool:
    return set(map(_TZINFO, values)) == {None}


_STR = frozenset({str})
_BINARY: dict[str, BinaryColumn] = {
    "bool": BinaryColumn("bool", frozenset({bool})),
    "int2": BinaryColumn("int2", frozenset({int}), _int_range(16)),
    "int4": BinaryColumn("int4", frozenset({int}), _int_range(32)),
    "int8": BinaryColumn("int8", frozenset({int})),  # out of range: OverflowError, not a wrap
    "float8": BinaryColumn("float8", frozenset({float})),
    "numeric": BinaryColumn("numeric", frozenset({Decimal, int})),
    "text": BinaryColumn("text", _STR),
    "varchar": BinaryColumn("text", _STR),  # same wire form; the server applies the typmod
    "bpchar": BinaryColumn("text", _STR),
    "bytea": BinaryColumn("bytea", frozenset({bytes})),
    "uuid": BinaryColumn("uuid", _STR, _canonical_uuids),
    "date": BinaryColumn("date", frozenset({dt.date})),
    "time": BinaryColumn("time", frozenset({dt.time})),
    "timestamp": BinaryColumn("timestamp", frozenset({dt.datetime}), _naive),
    "timestamptz": BinaryColumn("timestamptz", frozenset({dt.datetime}), _aware),
    "jsonb": BinaryColumn("jsonb", None),  # staged as JSON text (str or bytes)
    "json": BinaryColumn("json", None),
}
_BINARY_ARRAYS = {
    base: BinaryColumn(f"{base}[]", frozenset({list}), _text_items) for base in ("text", "varchar")
}
BINARY_VERSION = _BINARY["int8"]
BINARY_DELETE_FLAG = _BINARY["bool"]


def binary_column(column: PgColumn) -> BinaryColumn | None:
    """How values for ``column`` go in binary COPY; None: only in text format."""
    if column.is_array:
        return _BINARY_ARRAYS.get(column.base)
    return _BINARY.get(column.base)


class _UuidTextDumper(Dumper):
    """Canonical uuid text (what the decoder gives) to uuid's 16 bytes."""

    format = Format.BINARY
    oid = postgres.types["uuid"].oid

    def dump(self, obj: str) -> Buffer:
        return bytes.fromhex(obj.replace("-", ""))


class _JsonTextDumper(Dumper):
    """JSON text the sink serialised already (bytes), or a str sent as it came."""

    format = Format.BINARY
    oid = postgres.types["json"].oid
    version = b""

    def dump(self, obj: bytes | str) -> Buffer:
        return self.version + (obj.encode() if isinstance(obj, str) else obj)


class _JsonbTextDumper(_JsonTextDumper):
    oid = postgres.types["jsonb"].oid
    version = b"\x01"  # jsonb's binary format: a version byte, then the text


def register_binary_dumpers(conn: psycopg.Connection[Any]) -> None:
    """Dumpers ``Copy.set_types`` picks by type oid, on the sink's own connection only."""
    for dumper in (_UuidTextDumper, _JsonTextDumper, _JsonbTextDumper):
        conn.adapters.register_dumper(None, dumper)
