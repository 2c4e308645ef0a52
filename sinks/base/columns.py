"""The columns of an event: from the Debezium schema when it came with one, else inferred."""

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
    if isinstance(value, list) and value and not isinstance(value[0], dict | list):
        item, _ = _infer_type(value[0])
        return "array", (("items", item),)
    # dicts, nested lists, None (unknown until a value shows up) are stored as JSON.
    return "json", ()
