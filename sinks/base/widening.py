"""Which column type changes are safe widenings: every value of the old type fits the new one.

The one rule table the sinks share when a source column's type grows mid-stream (e.g. after
``ALTER TABLE … ALTER COLUMN n TYPE bigint`` at the source). Each sink describes its existing
column and the event's declared column as a :class:`Width` and asks :func:`widens`; only then
does it change the column's type (PostgreSQL ``ALTER COLUMN … TYPE``, ClickHouse
``MODIFY COLUMN``). Anything else (narrowing, a change of family, an unknown size) is no
widening: the event goes on to the sink's usual type check, and to the DLQ if it does not fit.

Families and what widens within them:

* ``int``: 16 -> 32 -> 64 bits; also into a decimal with room for all of the int's digits;
* ``float``: 32 -> 64 bits;
* ``decimal``: (p, s) -> (p', s') with s' >= s and p' - s' >= p - s; anything -> unconstrained;
* ``string``: length n -> m > n -> unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass

from fanout.events import Column

_INT_BITS = {"int16": 16, "int32": 32, "int64": 64}
_FLOAT_BITS = {"float32": 32, "float64": 64}
_INT_DIGITS = {16: 5, 32: 10, 64: 19}  # decimal digits of the largest value


@dataclass(frozen=True, slots=True)
class Width:
    """A column type reduced to what widening compares.

    ``size`` is bits (int, float), the precision (decimal) or the length (string); None means
    unbounded (an unconstrained numeric, text). ``scale`` is a decimal's scale.
    """

    family: str  # "int", "float", "decimal" or "string"
    size: int | None = None
    scale: int = 0


def widens(old: Width, new: Width) -> bool:
    """Whether changing a column from ``old`` to ``new`` keeps every value and is a change."""
    if old == new:
        return False
    if old.family == "int" and new.family == "decimal":
        return old.size is not None and _integer_digits(new) >= _INT_DIGITS.get(old.size, 99)
    if old.family != new.family:
        return False
    if old.family == "decimal":
        if new.size is None:
            return True
        if old.size is None:
            return False
        return new.scale >= old.scale and new.size - new.scale >= old.size - old.scale
    if new.size is None:  # int/float sizes are always known; an unbounded string holds all
        return True
    return old.size is not None and new.size > old.size


def declared_width(column: Column) -> Width | None:
    """The width an event's declared column asks for; None when it cannot be told.

    A string's length is known only when the connector propagates source types
    (``column.propagate.source.type``): without it no string column is widened.
    """
    if column.type in _INT_BITS:
        return Width("int", _INT_BITS[column.type])
    if column.type in _FLOAT_BITS:
        return Width("float", _FLOAT_BITS[column.type])
    if column.type == "decimal":
        scale, precision = _int(column.param("scale")), _int(column.param("precision"))
        if scale is None:  # a variable scale (unconstrained numeric): only unbounded holds it
            return Width("decimal", None)
        if precision is None or not 0 <= scale <= precision:
            return None
        return Width("decimal", precision, scale)
    if column.type == "string":
        length = _int(column.param("source_length"))
        return Width("string", length) if length is not None and length > 0 else None
    return None


def _integer_digits(width: Width) -> int:
    return 1_000_000 if width.size is None else width.size - width.scale


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
