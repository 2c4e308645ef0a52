"""Column kinds of the generated tables: Connect schema, JSON encoding, random values.

Package-private helper of ``tests.support.debezium``. Each kind is a Postgres column type as the
Debezium Postgres connector emits it with its default settings (``decimal.handling.mode=precise``,
``time.precision.mode=adaptive``, ``binary.handling.mode=bytes``), serialized by Kafka Connect's
``JsonConverter``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fanout.events import Column

EPOCH = dt.datetime(1970, 1, 1)
EPOCH_DATE = dt.date(1970, 1, 1)
_WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "ünïcødé",
    "東京",
)


def java_big_endian(unscaled: int) -> bytes:
    """Minimal two's-complement bytes, as Java's ``BigInteger.toByteArray`` writes them."""
    bits = unscaled.bit_length() if unscaled >= 0 else (~unscaled).bit_length()
    return unscaled.to_bytes(bits // 8 + 1, "big", signed=True)


def encode_decimal(value: Decimal, scale: int) -> str:
    unscaled = int(value.scaleb(scale))
    return base64.b64encode(java_big_endian(unscaled)).decode()


def encode_micro_timestamp(value: dt.datetime) -> int:
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def encode_zoned_timestamp(value: dt.datetime) -> str:
    """ISO-8601 in UTC with ``Z`` and the fraction's trailing zeros cut, as Debezium writes it."""
    utc = value.astimezone(dt.UTC).replace(tzinfo=None)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def encode_micro_time(value: dt.time) -> int:
    seconds = value.hour * 3600 + value.minute * 60 + value.second
    return seconds * 1_000_000 + value.microsecond


def _random_text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))


def _random_decimal(rng: random.Random, precision: int, scale: int) -> Decimal:
    bound = 10 ** (precision - 1)
    return Decimal(rng.randint(-bound, bound)).scaleb(-scale)


def _random_timestamp(rng: random.Random) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=rng.randrange(946_684_800, 1_893_456_000) * 10**6)


def _random_timestamp_micro(rng: random.Random) -> dt.datetime:
    return _random_timestamp(rng) + dt.timedelta(microseconds=rng.randrange(10**6))


def _random_json(rng: random.Random) -> Any:
    return {
        "score": rng.randint(0, 100),
        "tags": [rng.choice(_WORDS) for _ in range(rng.randint(0, 3))],
        "nested": {"ok": rng.random() < 0.5, "ratio": round(rng.random(), 4)},
    }


@dataclass(frozen=True, slots=True)
class Kind:
    """How one Postgres column type travels through Debezium and JsonConverter."""

    pg_type: str
    connect_type: str
    logical: str
    name: str | None = None  # Connect/Debezium logical name
    encode: Callable[[Any], Any] | None = None  # None: the value is its own JSON value
    random: Callable[[random.Random], Any] = _random_text


KINDS: dict[str, Kind] = {
    "int16": Kind("SMALLINT", "int16", "int16", random=lambda r: r.randint(-32768, 32767)),
    "int32": Kind("INTEGER", "int32", "int32", random=lambda r: r.randint(-(2**31), 2**31 - 1)),
    "int64": Kind("BIGINT", "int64", "int64", random=lambda r: r.randint(-(2**63), 2**63 - 1)),
    "float64": Kind("FLOAT8", "double", "float64", random=lambda r: round(r.uniform(-1e6, 1e6), 6)),
    "boolean": Kind("BOOL", "boolean", "boolean", random=lambda r: r.random() < 0.5),
    "text": Kind("TEXT", "string", "string", random=_random_text),
    "timestamp": Kind(
        "TIMESTAMP",
        "int64",
        "timestamp",
        "io.debezium.time.MicroTimestamp",
        encode_micro_timestamp,
        _random_timestamp_micro,
    ),
    "timestamptz": Kind(
        "TIMESTAMPTZ",
        "string",
        "timestamptz",
        "io.debezium.time.ZonedTimestamp",
        encode_zoned_timestamp,
        lambda r: _random_timestamp_micro(r).replace(tzinfo=dt.UTC),
    ),
    "date": Kind(
        "DATE",
        "int32",
        "date",
        "io.debezium.time.Date",
        lambda value: (value - EPOCH_DATE).days,
        lambda r: EPOCH_DATE + dt.timedelta(days=r.randrange(-3650, 25_000)),
    ),
    "time": Kind(
        "TIME",
        "int64",
        "time",
        "io.debezium.time.MicroTime",
        encode_micro_time,
        lambda r: _random_timestamp_micro(r).time(),
    ),
    "json": Kind("JSONB", "string", "json", "io.debezium.data.Json", json.dumps, _random_json),
    "uuid": Kind(
        "UUID",
        "string",
        "uuid",
        "io.debezium.data.Uuid",
        random=lambda r: str(uuid.UUID(int=r.getrandbits(128), version=4)),
    ),
    "bytes": Kind(
        "BYTEA",
        "bytes",
        "bytes",
        encode=lambda value: base64.b64encode(value).decode(),
        random=lambda r: r.randbytes(r.randint(0, 12)),
    ),
    "text[]": Kind(
        "_TEXT",
        "array",
        "array",
        random=lambda r: [r.choice(_WORDS) for _ in range(r.randint(0, 3))],
    ),
    "decimal": Kind("NUMERIC", "bytes", "decimal", "org.apache.kafka.connect.data.Decimal"),
}


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One column of a generated table; ``kind`` is a key of ``KINDS``."""

    name: str
    kind: str
    optional: bool = True
    precision: int = 12  # decimal only
    scale: int = 2  # decimal only

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown column kind {self.kind!r}; one of {sorted(KINDS)}")

    @property
    def _kind(self) -> Kind:
        return KINDS[self.kind]

    def random_value(self, rng: random.Random) -> Any:
        if self.kind == "decimal":
            return _random_decimal(rng, self.precision, self.scale)
        return self._kind.random(rng)

    def encoder(self) -> Callable[[Any], Any] | None:
        """What turns a (non-null) value into its JSON value; None: it already is one."""
        if self.kind == "decimal":
            scale = self.scale
            return lambda value: encode_decimal(value, scale)
        return self._kind.encode

    def encode(self, value: Any) -> Any:
        """The JSON value JsonConverter writes for ``value``."""
        encode = self.encoder()
        return value if value is None or encode is None else encode(value)

    def connect_schema(self, source_types: bool = False) -> dict[str, Any]:
        kind = self._kind
        schema: dict[str, Any] = {"type": kind.connect_type, "optional": self.optional}
        if kind.connect_type == "array":
            schema["items"] = {"type": "string", "optional": True}
        if kind.name:
            schema["name"] = kind.name
            schema["version"] = 1
        parameters = self._parameters(source_types)
        if parameters:
            schema["parameters"] = parameters
        schema["field"] = self.name
        return schema

    def _parameters(self, source_types: bool) -> dict[str, str]:
        parameters: dict[str, str] = {}
        if self.kind == "decimal":
            parameters = {
                "scale": str(self.scale),
                "connect.decimal.precision": str(self.precision),
            }
        if source_types:
            parameters["__debezium.source.column.type"] = self._kind.pg_type
            if self.kind == "decimal":
                parameters["__debezium.source.column.length"] = str(self.precision)
                parameters["__debezium.source.column.scale"] = str(self.scale)
        return parameters

    def logical_column(self, source_types: bool = False) -> Column:
        """The ``Column`` the decoder should derive from this column's schema."""
        parameters: dict[str, str] = {}
        if self.kind == "decimal":
            parameters = {"precision": str(self.precision), "scale": str(self.scale)}
        if self.kind == "text[]":
            parameters["items"] = "string"
        if source_types:
            parameters["source_type"] = self._kind.pg_type
            if self.kind == "decimal":
                parameters["source_length"] = str(self.precision)
                parameters["source_scale"] = str(self.scale)
        return Column(
            self.name, self._kind.logical, self.optional, tuple(sorted(parameters.items()))
        )
