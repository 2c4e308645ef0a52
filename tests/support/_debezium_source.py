"""Source positions and the JSON a Debezium connector + JsonConverter writes for one change.

Package-private helper of ``tests.support.debezium``; shapes follow Debezium 2.7 (Postgres and
MySQL connectors, ``ExtractNewRecordState`` for the flattened form).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tests.support._debezium_tables import LogicalEvent, TableSpec

DEBEZIUM_VERSION = "2.7.3.Final"
DATABASE = "fanout"
# MySQL binlog position packed into one int (see docs/ENVELOPES.md): file | pos | row.
BINLOG_POS_BITS, BINLOG_ROW_BITS = 32, 13
_ADDABLE_FIELDS = ("op", "table", "schema", "db", "lsn", "source.ts_ms", "ts_ms")


def binlog_version(file_index: int, pos: int, row: int) -> int:
    return (file_index << (BINLOG_POS_BITS + BINLOG_ROW_BITS)) | (pos << BINLOG_ROW_BITS) | row


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a change sits in the source log; every field grows with ``advance``."""

    lsn: int
    ts_ms: int
    binlog_file: int
    binlog_pos: int
    binlog_row: int
    tx_id: int

    @classmethod
    def start(cls) -> SourcePosition:
        return cls(
            lsn=6_098_425_384,
            ts_ms=1_714_000_000_000,
            binlog_file=3,
            binlog_pos=154,
            binlog_row=0,
            tx_id=771,
        )

    def advance(self, rng: random.Random) -> SourcePosition:
        file, pos, row = self.binlog_file, self.binlog_pos, self.binlog_row
        if rng.random() < 0.2:
            row += 1  # another row of the same multi-row binlog event
        elif rng.random() < 0.002:
            file, pos, row = file + 1, 154, 0  # binlog rotation
        else:
            pos, row = pos + rng.randint(150, 2000), 0
        return SourcePosition(
            lsn=self.lsn + rng.randint(40, 600),
            ts_ms=self.ts_ms + rng.randint(1, 4),
            binlog_file=file,
            binlog_pos=pos,
            binlog_row=row,
            tx_id=self.tx_id + (rng.random() < 0.5),
        )

    @property
    def binlog_version(self) -> int:
        return binlog_version(self.binlog_file, self.binlog_pos, self.binlog_row)


@dataclass(frozen=True)
class MessageFormat:
    """How the connector is configured.

    ``flatten`` applies ``ExtractNewRecordState`` with ``add_fields`` (its ``add.fields``) and
    ``delete_handling`` (its ``delete.tombstone.handling.mode``). ``tombstones_on_delete`` is the
    connector's ``tombstones.on.delete`` (full envelopes only). ``source_types`` is
    ``column.propagate.source.type=.*``.
    """

    connector: Literal["postgresql", "mysql"] = "postgresql"
    schemas: bool = True
    flatten: bool = False
    add_fields: tuple[str, ...] = ("op", "schema", "table", "source.ts_ms")
    delete_handling: Literal["tombstone", "rewrite", "rewrite-with-tombstone"] = "tombstone"
    tombstones_on_delete: bool = True
    source_types: bool = False
    server: str = "dbserver1"

    def __post_init__(self) -> None:
        unknown = set(self.add_fields) - set(_ADDABLE_FIELDS)
        if unknown:
            raise ValueError(f"add_fields {sorted(unknown)} not supported; use {_ADDABLE_FIELDS}")
        if self.connector == "mysql" and "lsn" in self.add_fields:
            raise ValueError("MySQL has no lsn")

    @property
    def emits_tombstone(self) -> bool:
        if self.flatten:
            return self.delete_handling != "rewrite"
        return self.tombstones_on_delete

    @property
    def deletes_in_band(self) -> bool:
        """Whether a delete travels as a record of its own (so a tombstone adds nothing)."""
        return not self.flatten or self.delete_handling != "tombstone"

    def version_of(self, position: SourcePosition) -> int:
        if self.flatten:
            return position.lsn if "lsn" in self.add_fields else position.ts_ms
        return position.lsn if self.connector == "postgresql" else position.binlog_version


def _field(type_: str, field_name: str, optional: bool = True, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "optional": optional, **extra, "field": field_name}


def _struct(
    fields: list[dict[str, Any]], name: str, optional: bool, field: str | None = None
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "struct",
        "fields": fields,
        "optional": optional,
        "name": name,
    }
    if field:
        schema["field"] = field
    return schema


def _source_schema(connector: str) -> dict[str, Any]:
    snapshot = _field(
        "string",
        "snapshot",
        name="io.debezium.data.Enum",
        version=1,
        parameters={
            "allowed": "true,first,first_in_data_collection,"
            "last_in_data_collection,last,false,incremental"
        },
        default="false",
    )
    common = [
        _field("string", "version", False),
        _field("string", "connector", False),
        _field("string", "name", False),
        _field("int64", "ts_ms", False),
        snapshot,
        _field("string", "db", False),
        _field("string", "sequence"),
        _field("int64", "ts_us"),
        _field("int64", "ts_ns"),
    ]
    if connector == "postgresql":
        specific = [
            _field("string", "schema", False),
            _field("string", "table", False),
            _field("int64", "txId"),
            _field("int64", "lsn"),
            _field("int64", "xmin"),
        ]
    else:
        specific = [
            _field("string", "table"),
            _field("int64", "server_id", False),
            _field("string", "gtid"),
            _field("string", "file", False),
            _field("int64", "pos", False),
            _field("int32", "row", False),
            _field("int64", "thread"),
            _field("string", "query"),
        ]
    return _struct(common + specific, f"io.debezium.connector.{connector}.Source", False, "source")


def _topic_prefix(fmt: MessageFormat, spec: TableSpec) -> str:
    return f"{fmt.server}.{spec.schema}.{spec.table}"


def _row_schema(fmt: MessageFormat, spec: TableSpec, field: str | None) -> dict[str, Any]:
    fields = [column.connect_schema(fmt.source_types) for column in spec.columns]
    return _struct(fields, f"{_topic_prefix(fmt, spec)}.Value", True, field)


def _envelope_schema(fmt: MessageFormat, spec: TableSpec) -> dict[str, Any]:
    transaction = _struct(
        [
            _field("string", "id", False),
            _field("int64", "total_order", False),
            _field("int64", "data_collection_order", False),
        ],
        "event.block",
        True,
        "transaction",
    )
    fields = [
        _row_schema(fmt, spec, "before"),
        _row_schema(fmt, spec, "after"),
        _source_schema(fmt.connector),
        transaction,
        _field("string", "op", False),
        _field("int64", "ts_ms"),
        _field("int64", "ts_us"),
        _field("int64", "ts_ns"),
    ]
    schema = _struct(fields, f"{_topic_prefix(fmt, spec)}.Envelope", False)
    schema["version"] = 2
    return schema


def _flat_schema(fmt: MessageFormat, spec: TableSpec) -> dict[str, Any]:
    schema = _row_schema(fmt, spec, None)
    schema["optional"] = False
    int_fields = {"lsn", "source.ts_ms", "ts_ms"}
    for name in fmt.add_fields:
        schema["fields"].append(
            _field("int64" if name in int_fields else "string", _flat_name(name))
        )
    if fmt.deletes_in_band:
        schema["fields"].append(_field("string", "__deleted"))
    return schema


def _key_schema(fmt: MessageFormat, spec: TableSpec) -> dict[str, Any]:
    fields = [column.connect_schema(fmt.source_types) for column in spec.key_columns]
    for field in fields:
        field["optional"] = False
    return _struct(fields, f"{_topic_prefix(fmt, spec)}.Key", False)


def _flat_name(name: str) -> str:
    return "__" + name.replace(".", "_")


def _wrap(fmt: MessageFormat, schema_json: str, payload: Any) -> str:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if not fmt.schemas:
        return body
    return '{"schema":' + schema_json + ',"payload":' + body + "}"


def _cached_schema(
    cache: dict[tuple[str, str], str], kind: str, fmt: MessageFormat, spec: TableSpec
) -> str:
    slot = (kind, spec.name)
    if slot not in cache:
        build = {"key": _key_schema, "envelope": _envelope_schema, "flat": _flat_schema}[kind]
        cache[slot] = json.dumps(build(fmt, spec), separators=(",", ":"))
    return cache[slot]


def encode_key(
    fmt: MessageFormat, spec: TableSpec, key: dict[str, Any], cache: dict[tuple[str, str], str]
) -> str:
    payload = {column.name: column.encode(key[column.name]) for column in spec.key_columns}
    return _wrap(fmt, _cached_schema(cache, "key", fmt, spec), payload)


def encode_value(
    fmt: MessageFormat, event: LogicalEvent, cache: dict[tuple[str, str], str]
) -> str | None:
    """The value JSON for ``event``, or None where the connector writes only a tombstone."""
    if fmt.flatten:
        return _flat_value(fmt, event, cache)
    return _wrap(fmt, _cached_schema(cache, "envelope", fmt, event.spec), _envelope(fmt, event))


def _encoded_row(event: LogicalEvent, row: dict[str, Any]) -> dict[str, Any]:
    return event.spec.encode_row(row)


def _before_image(event: LogicalEvent) -> dict[str, Any] | None:
    # REPLICA IDENTITY DEFAULT: a delete's before-image carries the key columns only.
    return _encoded_row(event, event.key) if event.kind == "delete" else None


def _envelope(fmt: MessageFormat, event: LogicalEvent) -> dict[str, Any]:
    ts_ms = event.position.ts_ms + 7  # Debezium's processing time, a little after the commit
    return {
        "before": _before_image(event),
        "after": None if event.row is None else _encoded_row(event, event.row),
        "source": _source(fmt, event),
        "transaction": None,
        "op": event.debezium_op,
        "ts_ms": ts_ms,
        "ts_us": ts_ms * 1000,
        "ts_ns": ts_ms * 1_000_000,
    }


def _source(fmt: MessageFormat, event: LogicalEvent) -> dict[str, Any]:
    position = event.position
    common = {
        "version": DEBEZIUM_VERSION,
        "connector": fmt.connector,
        "name": fmt.server,
        "ts_ms": position.ts_ms,
        "snapshot": "true" if event.kind == "read" else "false",
        "db": DATABASE if fmt.connector == "postgresql" else event.spec.schema,
        "sequence": None,
        "ts_us": position.ts_ms * 1000,
        "ts_ns": position.ts_ms * 1_000_000,
    }
    if fmt.connector == "postgresql":
        return common | {
            "sequence": f'["{position.lsn - 40}","{position.lsn}"]',
            "schema": event.spec.schema,
            "table": event.spec.table,
            "txId": position.tx_id,
            "lsn": position.lsn,
            "xmin": None,
        }
    return common | {
        "table": event.spec.table,
        "server_id": 223344,
        "gtid": None,
        "file": f"mysql-bin.{position.binlog_file:06d}",
        "pos": position.binlog_pos,
        "row": position.binlog_row,
        "thread": 7,
        "query": None,
    }


def _flat_value(
    fmt: MessageFormat, event: LogicalEvent, cache: dict[tuple[str, str], str]
) -> str | None:
    if event.kind == "delete" and not fmt.deletes_in_band:
        return None
    if event.kind == "truncate":
        return None  # ExtractNewRecordState drops truncate events by default
    envelope = _envelope(fmt, event)
    row = envelope["after"] if event.row is not None else envelope["before"]
    row |= {_flat_name(name): _added_value(name, envelope) for name in fmt.add_fields}
    if fmt.deletes_in_band:
        row["__deleted"] = "true" if event.kind == "delete" else "false"
    return _wrap(fmt, _cached_schema(cache, "flat", fmt, event.spec), row)


def _added_value(name: str, envelope: dict[str, Any]) -> Any:
    if name in ("op", "ts_ms"):
        return envelope[name]
    source = envelope["source"]
    return source["ts_ms"] if name == "source.ts_ms" else source[name]
