"""The records that flow through a sink: one change event in, per-record failures out."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# Origin and ChangeEvent are built once per record. Being frozen, their generated __init__ sets
# each field with object.__setattr__, which looks the slot up by name every time; the __init__s
# below call the slots' own setters instead.
# Their signatures are those dataclass would generate; test_events checks they stay in step.
Setter = Callable[[Any, Any], None]


def _slot_setters(cls: type[Any]) -> tuple[Setter, ...]:
    return tuple(getattr(cls, name).__set__ for name in cls.__slots__)


# The key of rows appended from a table without a primary key: their source position.
POSITION_COLUMN = "_fanout_position"


class Op(enum.StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"
    TRUNCATE = "truncate"


@dataclass(frozen=True, slots=True, init=False)
class Origin:
    """Where a record came from in Kafka; carried to the DLQ and used for dedup tokens."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None = None,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        set_topic, set_partition, set_offset, set_timestamp_ms, set_key, set_value, set_headers = (
            _ORIGIN_SETTERS
        )
        set_topic(self, topic)
        set_partition(self, partition)
        set_offset(self, offset)
        set_timestamp_ms(self, timestamp_ms)
        set_key(self, key)
        set_value(self, value)
        set_headers(self, headers)


_ORIGIN_SETTERS = _slot_setters(Origin)


# Logical column types shared by the decoder and every sink, with the Python value each carries:
#   boolean -> bool            int16, int32, int64 -> int        float32, float64 -> float
#   decimal -> Decimal (parameters "scale", "precision" when known)
#   string -> str              bytes -> bytes                    uuid -> str (canonical form)
#   date -> datetime.date      time -> datetime.time (naive, microseconds)
#   timestamp -> datetime.datetime, naive (no zone in the source; Debezium sends UTC epoch)
#   timestamptz -> datetime.datetime, aware (UTC)
#   json -> Json (io.debezium.data.Json: the column's JSON text, below), or the JSON value as
#           sent for structs, maps, unknown types and schemaless objects (dict | list | …)
#   array -> list (parameter "items" names the element's logical type)
LOGICAL_TYPES = frozenset(
    {
        "boolean",
        "int16",
        "int32",
        "int64",
        "float32",
        "float64",
        "decimal",
        "string",
        "bytes",
        "uuid",
        "date",
        "time",
        "timestamp",
        "timestamptz",
        "json",
        "array",
    }
)


class Json:
    """The value of a JSON column (``io.debezium.data.Json``): its JSON text, never parsed.

    What the source holds reaches every sink as it is: numbers keep every digit (no float64
    rounding), the JSON ``null`` (``Json("null")``) stays apart from SQL NULL (``None``), and
    shapes may differ from row to row. ``text`` is the JSON text as the connector sent it (for
    a PostgreSQL jsonb column, PostgreSQL's own output; the databases store only valid JSON,
    and the decoder does not parse it). Sinks write the text (PostgreSQL json/jsonb, a
    ClickHouse String) or embed it in a document (Elasticsearch). Equal when the texts are.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return type(other) is Json and other.text == self.text

    def __hash__(self) -> int:
        return hash((Json, self.text))

    def __repr__(self) -> str:
        return f"Json({self.text!r})"

    def value(self) -> Any:
        """The parsed value with every number exact: integers as int, others as Decimal."""
        return json.loads(self.text, parse_float=Decimal)


@dataclass(frozen=True, slots=True)
class Column:
    """A source column as described by the Debezium schema (when there is one)."""

    name: str
    type: str  # one of LOGICAL_TYPES
    optional: bool = True
    parameters: tuple[tuple[str, str], ...] = ()  # e.g. (("scale", "2"), ("precision", "10"))

    def param(self, key: str) -> str | None:
        return dict(self.parameters).get(key)


@dataclass(frozen=True, slots=True, init=False)
class ChangeEvent:
    """One decoded change to one row of one source table.

    ``version`` is monotonic per key and comes from the source position (LSN, binlog
    position, or ``source.ts_ms``), never from the Kafka offset. A sink applies the event only
    if ``version`` is >= the version it has stored for ``key``.
    """

    op: Op
    table: str  # schema-qualified source table, e.g. "inventory.customers"
    key: dict[str, Any]
    row: dict[str, Any] | None
    version: int
    source_ts_ms: int | None
    origin: Origin
    columns: tuple[Column, ...] = ()  # schema of ``row`` when the envelope carried one
    target: str = field(default="")  # target name after routing (index / table)

    def __init__(
        self,
        op: Op,
        table: str,
        key: dict[str, Any],
        row: dict[str, Any] | None,
        version: int,
        source_ts_ms: int | None,
        origin: Origin,
        columns: tuple[Column, ...] = (),
        target: str = "",
    ) -> None:
        (
            set_op,
            set_table,
            set_key,
            set_row,
            set_version,
            set_ts,
            set_origin,
            set_columns,
            set_target,
        ) = _EVENT_SETTERS
        set_op(self, op)
        set_table(self, table)
        set_key(self, key)
        set_row(self, row)
        set_version(self, version)
        set_ts(self, source_ts_ms)
        set_origin(self, origin)
        set_columns(self, columns)
        set_target(self, target)

    def with_target(self, target: str) -> ChangeEvent:
        """This event under another target name (``dataclasses.replace``, a third of the cost)."""
        return ChangeEvent(
            self.op,
            self.table,
            self.key,
            self.row,
            self.version,
            self.source_ts_ms,
            self.origin,
            self.columns,
            target,
        )


_EVENT_SETTERS = _slot_setters(ChangeEvent)


@dataclass(frozen=True, slots=True)
class Failure:
    """A record that could not be delivered; it goes to the DLQ with this reason."""

    origin: Origin
    stage: str  # "decode" | "route" | "write"
    error: BaseException
    event: ChangeEvent | None = None

    @property
    def error_class(self) -> str:
        return type(self.error).__name__
