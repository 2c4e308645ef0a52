"""A JsonConverter message re-encoded as Kafka Connect's AvroData would: Confluent Avro frames.

For tests only. Follows AvroData's documented conventions (Confluent's, which Apicurio's
converter copies): a struct is a record named after its Connect name (namespace + name), the
second use of a named record is a reference to it, an optional schema is ``["null", T]`` with
default null, int8/int16 are ``int`` with ``connect.type``, Connect's name, version and
parameters go to ``connect.name``, ``connect.version`` and ``connect.parameters``, and a
Connect Decimal also carries Avro's ``decimal`` logical type. Values: base64 bytes become
bytes, Jackson's "NaN"/"Infinity" text for floats becomes the float.

For unit tests and hand-made records; what the real connector and converter write is tested in
tests/integration/test_avro_debezium.py (Apicurio's converter and registry on the local stack).
"""

from __future__ import annotations

import io
import math
import struct
from base64 import b64decode
from typing import Any

from fastavro import parse_schema, schemaless_writer

_AVRO_TYPES = {
    "int8": "int",
    "int16": "int",
    "int32": "int",
    "int64": "long",
    "float32": "float",
    "float": "float",
    "float64": "double",
    "double": "double",
    "boolean": "boolean",
    "string": "string",
    "bytes": "bytes",
}
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
DECIMAL = "org.apache.kafka.connect.data.Decimal"


def avro_schema(connect: dict[str, Any], defined: set[str] | None = None) -> Any:
    """The Avro schema AvroData writes for the Connect schema ``connect`` (JsonConverter JSON)."""
    defined = set() if defined is None else defined
    schema = _required(connect, defined)
    return ["null", schema] if connect.get("optional") else schema


def _required(connect: dict[str, Any], defined: set[str]) -> Any:
    kind = connect["type"]
    if kind == "struct":
        full = connect.get("name") or "io.confluent.connect.avro.ConnectDefault"
        if full in defined:
            return full
        defined.add(full)
        namespace, _, name = full.rpartition(".")
        fields = []
        for field in connect["fields"]:
            entry: dict[str, Any] = {"name": field["field"], "type": avro_schema(field, defined)}
            if field.get("optional"):
                entry["default"] = None
            fields.append(entry)
        record: dict[str, Any] = {"type": "record", "name": name, "fields": fields}
        if namespace:
            record["namespace"] = namespace
        return record
    if kind == "array":
        schema: dict[str, Any] = {"type": "array", "items": avro_schema(connect["items"], defined)}
    elif kind == "map":
        schema = {"type": "map", "values": avro_schema(connect["values"], defined)}
    else:
        schema = {"type": _AVRO_TYPES[kind]}
        if kind in ("int8", "int16"):
            schema["connect.type"] = kind
    if "version" in connect:
        schema["connect.version"] = connect["version"]
    if connect.get("parameters"):
        schema["connect.parameters"] = dict(connect["parameters"])
    if connect.get("name"):
        schema["connect.name"] = connect["name"]
    if connect.get("name") == DECIMAL:
        scale = int(connect["parameters"]["scale"])
        precision = int(connect["parameters"].get("connect.decimal.precision", 64))
        schema.update(logicalType="decimal", scale=scale, precision=precision)
    return schema


def avro_datum(connect: dict[str, Any], value: Any) -> Any:
    """``value`` (a JsonConverter payload of schema ``connect``) as the Avro writer takes it."""
    if value is None:
        return None
    kind = connect["type"]
    if kind == "struct":
        return {f["field"]: avro_datum(f, value.get(f["field"])) for f in connect["fields"]}
    if kind == "array":
        return [avro_datum(connect["items"], item) for item in value]
    if kind == "map":
        return {key: avro_datum(connect["values"], item) for key, item in value.items()}
    if kind == "bytes":
        return b64decode(value)
    if kind in ("float32", "float64", "float", "double") and isinstance(value, str):
        return _NON_FINITE[value]
    return value


def frame(schema_id: int, schema: Any, datum: Any) -> bytes:
    """The Confluent wire format: magic byte 0, the schema id (4 bytes, big-endian), Avro."""
    out = io.BytesIO()
    out.write(b"\x00" + struct.pack(">I", schema_id))
    # Avro's logical types are left to the writer's raw form: decimals arrive as unscaled bytes.
    schemaless_writer(out, parse_schema(_raw(schema)), datum)
    return out.getvalue()


def _raw(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_raw(branch) for branch in schema]
    if isinstance(schema, dict):
        return {k: _raw(v) for k, v in schema.items() if k != "logicalType"}
    return schema


def reencode(message: bytes, schema_id: int) -> tuple[Any, bytes]:
    """A JsonConverter ``{"schema", "payload"}`` message -> (its Avro schema, the Avro frame)."""
    import json

    document = json.loads(message)
    schema = avro_schema(document["schema"])
    return schema, frame(schema_id, schema, avro_datum(document["schema"], document["payload"]))
