"""Avro in the Confluent wire format -> what the JSON path decodes: Connect schema + payload.

Helper of ``fanout.debezium.envelope`` for ``kafka.value_format: avro``. A message is
``0x00`` (magic byte), a 4-byte big-endian schema id, then the Avro binary of one datum. The
writer schema comes from the registry (``registry.SchemaRegistry``, once per id).

Kafka Connect's AvroData (Confluent's, and Apicurio's copy of it) writes a Connect schema as
Avro with its Connect facts in ``connect.*`` properties: ``connect.name`` (Debezium's
logical names: ``io.debezium.time.Date``, ``…MicroTimestamp``, ``…ZonedTimestamp``,
``io.debezium.data.Json``, ``…Uuid``, ``…Bits``, ``…VariableScaleDecimal``,
``org.apache.kafka.connect.data.Decimal``, …), ``connect.parameters`` (a decimal's scale,
an enum's allowed values), ``connect.type`` (int8/int16, which Avro lacks); an optional field
is the union ``["null", T]``. Each writer schema is turned once into the Connect schema
JsonConverter would have sent with the same record, and each datum into the payload
JsonConverter would have sent (bytes as base64 text, the only representation that differs).
``envelope.Decoder`` then applies the same plans, checks and conversions to both encodings,
so one change decodes to the same ``ChangeEvent`` whichever converter the connector used.

Avro's own logical types are not applied by the Avro reader (they are stripped from the
reader's copy of the schema): a Connect decimal arrives as its unscaled bytes, a date as its
day count, exactly as under JsonConverter. Writer schemas that only Avro producers other than
Connect write (``logicalType`` without ``connect.name``) get the matching Connect name for the
types the JSON path knows: decimal, date, time-millis, timestamp-millis.
"""

from __future__ import annotations

import io
import threading
from base64 import b64encode
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from fastavro import parse_schema, schemaless_reader

from fanout.debezium.framing import PlanCache
from fanout.debezium.registry import SchemaRegistry, Watch
from fanout.errors import DecodeError
from fanout.settings import KafkaSettings

P = TypeVar("P")
P_co = TypeVar("P_co", covariant=True)
Payload = Callable[[Any], Any]  # a datum as the Avro reader gives it -> JsonConverter's form

MAGIC = 0
_HEADER = 5  # magic byte + 4-byte schema id
_PRIMITIVES = {
    "int": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "boolean": "boolean",
    "string": "string",
    "bytes": "bytes",
    "enum": "string",
    "fixed": "bytes",
}
# Avro logical types -> Connect logical names, for writers that set no connect.name.
_LOGICAL_NAMES = {
    "decimal": "org.apache.kafka.connect.data.Decimal",
    "date": "org.apache.kafka.connect.data.Date",
    "time-millis": "org.apache.kafka.connect.data.Time",
    "timestamp-millis": "org.apache.kafka.connect.data.Timestamp",
}
_READ_ERRORS = (EOFError, ValueError, TypeError, KeyError, IndexError, OverflowError)


def split_frame(
    raw: bytes, what: str = "value", setting: str | None = None
) -> tuple[int, memoryview]:
    """``(schema id, Avro body)`` of a Confluent wire-format message (``what``: key or value;
    ``setting``: the setting that made it Avro, in words, default ``kafka.<what>_format``)."""
    if len(raw) < _HEADER or raw[0] != MAGIC:
        first = f"byte 0x{raw[0]:02x}" if raw else "no bytes"
        raise DecodeError(
            f"{what} is not Confluent Avro: starts with {first}, not magic byte 0x00 and a"
            f" 4-byte schema id ({len(raw)} bytes; {setting or f'kafka.{what}_format is avro'})"
        )
    return int.from_bytes(raw[1:_HEADER], "big"), memoryview(raw)[_HEADER:]


class _Shape:
    """One writer schema: its reader schema, Connect schema and payload conversion."""

    def __init__(self, writer: Any) -> None:
        self.connect, self.to_payload = _connect(writer, _Names(), optional=False)
        self.reader = parse_schema(_without_logical_types(writer))


def read_datum(raw: bytes, registry: SchemaRegistry, what: str = "value") -> tuple[int, Any]:
    """``(schema id, the datum as JsonConverter would carry it)`` of one Confluent-framed message,
    for showing it (``fanout dlq show``); raises what ``AvroPlanCache.parse`` raises."""
    schema_id, body = split_frame(raw, what)
    writer = registry.schema(schema_id)  # ConfigError: the registry is unavailable or refuses
    try:
        shape = _Shape(writer)
        datum = schemaless_reader(io.BytesIO(body), shape.reader, None)
    except DecodeError:
        raise
    except Exception as exc:  # a malformed schema, a datum that does not fit it
        raise DecodeError(f"{what} is not Avro of schema id {schema_id}: {exc!r}") from exc
    return schema_id, shape.to_payload(datum)


class AvroPlanCache(Generic[P]):
    """``framing.PlanCache``'s counterpart for Avro: ``parse(raw) -> (plan, payload)``."""

    def __init__(
        self,
        what: str,
        build: Callable[[Any], P],
        registry: SchemaRegistry,
        setting: str | None = None,  # why this is Avro, for the errors (see split_frame)
    ) -> None:
        self._what = what
        self._build_plan = build
        self._registry = registry
        self._setting = setting
        self._shapes: dict[int, tuple[_Shape, P]] = {}

    def parse(self, raw: bytes) -> tuple[P, Any]:
        schema_id, body = split_frame(raw, self._what, self._setting)
        found = self._shapes.get(schema_id)
        if found is None:
            found = self._shapes[schema_id] = self._learn(schema_id)
        shape, plan = found
        try:
            datum = schemaless_reader(io.BytesIO(body), shape.reader, None)
        except _READ_ERRORS as exc:
            raise DecodeError(
                f"{self._what} is not Avro of schema id {schema_id}: {exc!r}"
            ) from exc
        return plan, shape.to_payload(datum)

    def _learn(self, schema_id: int) -> tuple[_Shape, P]:
        writer = self._registry.schema(schema_id)
        try:
            shape = _Shape(writer)
            return shape, self._build_plan(shape.connect)
        except DecodeError:
            raise
        except Exception as exc:  # fastavro's SchemaParseException, a malformed schema
            raise DecodeError(f"{self._what} schema id {schema_id} is unusable: {exc!r}") from exc


def _identity(value: Any) -> Any:
    return value


def _b64(value: bytes) -> str:
    return b64encode(value).decode("ascii")


class _Names:
    """Named Avro types seen so far, and the namespace unqualified names resolve in."""

    def __init__(self) -> None:
        self.types: dict[str, Any] = {}
        self.namespace = ""

    def full(self, avro: Mapping[str, Any]) -> str:
        name = str(avro["name"])
        if "." in name:
            return name
        namespace = avro.get("namespace", self.namespace)
        return f"{namespace}.{name}" if namespace else name

    def find(self, reference: str) -> Any:
        qualified = f"{self.namespace}.{reference}" if self.namespace else reference
        return self.types.get(qualified, self.types.get(reference))


def _connect(avro: Any, names: _Names, optional: bool) -> tuple[dict[str, Any], Payload]:
    """The Connect schema (JsonConverter's JSON) of an Avro schema, and its payload conversion."""
    if isinstance(avro, list):
        return _union(avro, names)
    if isinstance(avro, str):
        named = names.find(avro)
        if named is not None:  # a reference to a record, enum or fixed defined before
            return _connect(named, names, optional)
        avro = {"type": avro}
    kind = avro["type"]
    if isinstance(kind, (dict, list)) or (isinstance(kind, str) and names.find(kind)):
        return _connect(kind, names, optional)  # {"type": {…}} or a named type's reference
    schema: dict[str, Any] = {"optional": optional}
    if kind == "record":
        convert = _record(avro, names, schema)
    elif kind == "array":
        items, each = _connect(avro["items"], names, optional=False)
        schema.update(type="array", items=items)
        convert = _identity if each is _identity else _each(each)
    elif kind == "map":
        values, each = _connect(avro["values"], names, optional=False)
        keys = {"type": "string", "optional": False}
        schema.update(type="map", keys=keys, values=values)
        convert = _identity if each is _identity else _each_value(each)
    elif kind in _PRIMITIVES:
        if kind in ("enum", "fixed"):
            names.types[names.full(avro)] = avro
        schema["type"] = avro.get("connect.type", _PRIMITIVES[kind])
        convert = _b64 if schema["type"] == "bytes" else _identity
    else:
        raise DecodeError(f"Avro type {kind!r} has no Kafka Connect counterpart")
    _connect_facts(avro, schema)
    return schema, convert


def _union(branches: list[Any], names: _Names) -> tuple[dict[str, Any], Payload]:
    """AvroData writes an optional Connect schema as ``["null", T]`` (or ``[T, "null"]``)."""
    others = [branch for branch in branches if branch != "null"]
    if len(others) != 1 or len(branches) != 2:
        raise DecodeError(f"Avro union {branches!r} is not an optional Connect field")
    schema, convert = _connect(others[0], names, optional=True)
    if convert is _identity:
        return schema, convert
    return schema, lambda value: None if value is None else convert(value)


def _record(avro: Mapping[str, Any], names: _Names, schema: dict[str, Any]) -> Payload:
    full = names.full(avro)
    names.types[full] = avro
    fields, converts = [], []
    outer, names.namespace = names.namespace, full.rpartition(".")[0]
    try:
        for field in avro["fields"]:
            field_schema, convert = _connect(field["type"], names, optional=False)
            fields.append({**field_schema, "field": field["name"]})
            if convert is not _identity:
                converts.append((field["name"], convert))
    finally:
        names.namespace = outer
    schema.update(type="struct", fields=fields, name=full)
    if not converts:
        return _identity

    def convert_record(value: dict[str, Any]) -> dict[str, Any]:
        for name, convert in converts:
            value[name] = convert(value[name])
        return value

    return convert_record


def _connect_facts(avro: Mapping[str, Any], schema: dict[str, Any]) -> None:
    """Connect's name, version, parameters and default, as AvroData stored them."""
    logical = avro.get("logicalType")
    name = avro.get("connect.name") or _LOGICAL_NAMES.get(str(logical))
    if name:
        schema["name"] = name
    if "connect.version" in avro:
        schema["version"] = avro["connect.version"]
    parameters = dict(avro.get("connect.parameters") or {})
    if name == _LOGICAL_NAMES["decimal"] and "scale" not in parameters:
        parameters["scale"] = str(avro.get("scale", 0))
    if parameters:
        schema["parameters"] = parameters


def _each(convert: Payload) -> Payload:
    return lambda values: [convert(value) for value in values]


def _each_value(convert: Payload) -> Payload:
    return lambda values: {key: convert(value) for key, value in values.items()}


def _without_logical_types(avro: Any) -> Any:
    """A copy of ``avro`` the reader decodes to plain bytes, ints and longs."""
    if isinstance(avro, list):
        return [_without_logical_types(branch) for branch in avro]
    if not isinstance(avro, dict):
        return avro
    copy = {key: _without_logical_types(value) for key, value in avro.items()}
    copy.pop("logicalType", None)
    return copy


class Parser(Protocol[P_co]):
    """What ``envelope.Decoder`` asks of a framing: ``(plan or None, payload)`` per message."""

    def parse(self, raw: bytes) -> tuple[P_co | None, Any]: ...


class Framing(Protocol):
    """Builds the parser for keys (``what="key"``) or values, given how plans are built."""

    def __call__(self, what: str, build: Callable[[Any], P]) -> Parser[P]: ...


def framing_for(
    kafka: KafkaSettings, on_registry: Watch | None = None, stop: threading.Event | None = None
) -> Framing:
    """The framing ``kafka.value_format`` / ``key_format`` choose; one registry client for both
    (``on_registry`` hears while the registry is unavailable, ``stop`` ends its retries; see
    ``registry.SchemaRegistry``)."""
    key_format = kafka.key_format or kafka.value_format
    if "avro" not in (key_format, kafka.value_format):
        return PlanCache
    if on_registry is None:
        registry = SchemaRegistry.connect(kafka.schema_registry, stop=stop)
    else:
        registry = SchemaRegistry.connect(kafka.schema_registry, on_registry, stop)

    def framing(what: str, build: Callable[[Any], P]) -> Parser[P]:
        form = key_format if what == "key" else kafka.value_format
        if form == "avro":
            return AvroPlanCache(what, build, registry, _setting(kafka, what))
        return PlanCache(what, build)

    return framing


def _setting(kafka: KafkaSettings, what: str) -> str:
    """The setting, as the user wrote it, that makes ``what`` (key or value) Avro."""
    if what == "key" and kafka.key_format is None:
        return "kafka.key_format is not set, so keys follow kafka.value_format: avro"
    return f"kafka.{what}_format is avro"
