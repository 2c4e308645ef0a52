"""The columns of an event: from the Debezium schema when it came with one, else inferred.

Inference (events without a schema, ``value.converter.schemas.enable=false``) sees one value
at a time, so what it infers must hold for every row to come: a list is JSON whatever it holds
(``[]``, ``[null, 3]`` and ``["a"]`` in three rows would otherwise ask for three column types),
like an object or a NULL. Where the target already has the column, its type decides instead:
a list goes into an existing array column when its items fit (:func:`list_items`), and a value
that fits no existing column is refused with the reason (the DLQ), never dropped unsaid.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from fanout.events import ChangeEvent, Column


def columns_of(event: ChangeEvent) -> tuple[Column, ...]:
    """Columns describing ``event.row`` (key columns included), schema first, inference second.

    Inferred columns are optional: without a schema nothing says a column is NOT NULL.
    """
    row = event.row or event.key
    declared = {column.name: column for column in event.columns}
    return tuple(declared.get(name) or infer_column(name, value) for name, value in row.items())


def infer_column(name: str, value: Any) -> Column:
    logical, parameters = _infer_type(value)
    return Column(name=name, type=logical, optional=True, parameters=parameters)


def _infer_type(value: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    # bool before int: bool is a subclass of int.
    simple: list[tuple[type, str]] = [
        (bool, "boolean"),
        (int, "int64"),
        (float, "float64"),
        (Decimal, "decimal"),
        (str, "string"),
        (bytes, "bytes"),
        (uuid.UUID, "uuid"),
        (dt.datetime, "timestamp"),
        (dt.date, "date"),
        (dt.time, "time"),
    ]
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return "timestamptz", ()
    for python_type, logical in simple:
        if isinstance(value, python_type):
            return logical, ()
    # lists, dicts and None (unknown until a value shows up) are stored as JSON.
    return "json", ()


NO_ITEMS = ""  # what list_items says of a list with no non-NULL item: it fits any array


def list_items(value: list[Any]) -> str | None:
    """The one logical type of the non-NULL items of ``value`` (for an existing array column):
    :data:`NO_ITEMS` when there are none, None when they are nested or of several types."""
    kinds = {_infer_type(item)[0] for item in value if item is not None}
    if not kinds:
        return NO_ITEMS
    if kinds == {"int64", "float64"}:
        return "float64"  # JSON writes 1.0 as 1
    if len(kinds) == 1 and "json" not in kinds:
        return kinds.pop()
    return None


def inferred_list_column(name: str, value: list[Any]) -> Column | None:
    """``value`` as an array column of its items' type, for a target column that is an array;
    None when no array holds it (nested or mixed items)."""
    items = list_items(value)
    if items is None:
        return None
    parameters = (("items", items),) if items != NO_ITEMS else ()
    return Column(name=name, type="array", optional=True, parameters=parameters)
