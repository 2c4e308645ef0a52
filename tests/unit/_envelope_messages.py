"""Hand-built Debezium messages for the decoder's unit tests."""

from __future__ import annotations

import json
from typing import Any

from fanout.debezium.envelope import Decoder
from fanout.events import ChangeEvent, Origin

TOPIC = "dbserver1.inventory.customers"
KAFKA_TS = 1_714_000_999_000
KEY_SCHEMA = {
    "type": "struct",
    "fields": [{"type": "int32", "optional": False, "field": "id"}],
    "optional": False,
    "name": "dbserver1.inventory.customers.Key",
}
ROW_FIELDS: list[dict[str, Any]] = [
    {"type": "int32", "optional": False, "field": "id"},
    {"type": "string", "optional": True, "field": "name"},
]


def dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def wrapped(schema: Any, payload: Any) -> bytes:
    return dumps({"schema": schema, "payload": payload})


def row_schema(fields: list[dict[str, Any]] | None = None, name: str = "Value") -> dict[str, Any]:
    return {
        "type": "struct",
        "fields": fields or ROW_FIELDS,
        "optional": True,
        "name": f"dbserver1.inventory.customers.{name}",
    }


def envelope_schema(fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "type": "struct",
        "fields": [
            {**row_schema(fields), "field": "before"},
            {**row_schema(fields), "field": "after"},
            {"type": "struct", "fields": [], "optional": False, "field": "source"},
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
        "optional": False,
        "name": "dbserver1.inventory.customers.Envelope",
    }


def pg_source(
    lsn: int | None = 1000, ts_ms: int = 1_714_000_000_000, **extra: Any
) -> dict[str, Any]:
    source = {
        "connector": "postgresql",
        "db": "fanout",
        "schema": "inventory",
        "table": "customers",
    }
    return source | {"ts_ms": ts_ms, "lsn": lsn} | extra


def mysql_source(file: str = "mysql-bin.000003", pos: int = 154, row: int = 0) -> dict[str, Any]:
    source = {
        "connector": "mysql",
        "db": "inventory",
        "table": "customers",
        "ts_ms": 1_714_000_000_000,
    }
    return source | {"file": file, "pos": pos, "row": row}


def envelope(
    op: str = "c", after: Any = None, source: dict[str, Any] | None = None, before: Any = None
) -> dict[str, Any]:
    if after is None and op in ("c", "u", "r"):
        after = {"id": 1, "name": "ann"}
    return {"before": before, "after": after, "source": source or pg_source(), "op": op, "ts_ms": 1}


def key(value: int = 1, schemas: bool = True) -> bytes:
    return wrapped(KEY_SCHEMA, {"id": value}) if schemas else dumps({"id": value})


def origin(
    value: bytes | None,
    key_bytes: bytes | None = None,
    topic: str = TOPIC,
    timestamp_ms: int | None = KAFKA_TS,
) -> Origin:
    return Origin(topic, 0, 42, timestamp_ms, key_bytes if key_bytes is not None else key(), value)


def decode(
    value: bytes | None, decoder: Decoder | None = None, **kwargs: Any
) -> ChangeEvent | None:
    return (decoder or Decoder()).decode(origin(value, **kwargs))


def decoded(value: bytes | None, decoder: Decoder | None = None, **kwargs: Any) -> ChangeEvent:
    event = decode(value, decoder, **kwargs)
    assert event is not None
    return event


def decode_field(field: dict[str, Any], value: Any) -> tuple[Any, Any]:
    """(decoded value, column) of one extra column ``x`` described by ``field``."""
    fields = [*ROW_FIELDS, {**field, "field": "x"}]
    message = wrapped(envelope_schema(fields), envelope(after={"id": 1, "name": None, "x": value}))
    event = decoded(message)
    assert event.row is not None
    return event.row["x"], event.columns[-1]
