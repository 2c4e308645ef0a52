"""Decoder: every value is checked against its declared type before any sink sees it; keys
must identify the row they come with; versions fit int64. What fails is a DecodeError (the
record goes to the DLQ with the reason), never a value a sink would store wrongly."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fanout.debezium.envelope import Decoder
from fanout.errors import DecodeError
from fanout.events import Op, Origin
from tests.unit._envelope_messages import (
    KAFKA_TS,
    KEY_SCHEMA,
    ROW_FIELDS,
    TOPIC,
    decode,
    decode_field,
    decoded,
    dumps,
    envelope,
    envelope_schema,
    key,
    pg_source,
    wrapped,
)


def refused(value: bytes | None, decoder: Decoder | None = None, **kwargs: Any) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(value, decoder, **kwargs)
    return str(caught.value)


def field_refused(field: dict[str, Any], value: Any) -> str:
    with pytest.raises(DecodeError) as caught:
        decode_field(field, value)
    return str(caught.value)


# -- what the real connector writes ----------------------------------------------------------

# Captured from Debezium 3.6.1's PostgreSQL connector (JsonConverter, schemas on) for
# CREATE TABLE t (id int PRIMARY KEY, b boolean, s smallint, i int, g bigint, r real,
# d double precision, n numeric(10,2), nn numeric): two inserts at the types' limits, with
# NaN and infinities in the float columns, which Jackson writes as JSON text.
REAL_ROW_FIELDS = [
    {"type": "int32", "optional": False, "field": "id"},
    {"type": "boolean", "optional": True, "field": "b"},
    {"type": "int16", "optional": True, "field": "s"},
    {"type": "int32", "optional": True, "field": "i"},
    {"type": "int64", "optional": True, "field": "g"},
    {"type": "float", "optional": True, "field": "r"},
    {"type": "double", "optional": True, "field": "d"},
    {
        "type": "bytes",
        "optional": True,
        "name": "org.apache.kafka.connect.data.Decimal",
        "version": 1,
        "parameters": {"scale": "2", "connect.decimal.precision": "10"},
        "field": "n",
    },
    {
        "type": "struct",
        "fields": [
            {"type": "int32", "optional": False, "field": "scale"},
            {"type": "bytes", "optional": False, "field": "value"},
        ],
        "optional": True,
        "name": "io.debezium.data.VariableScaleDecimal",
        "version": 1,
        "doc": "Variable scaled decimal",
        "field": "nn",
    },
]
REAL_AFTERS = [
    b'{"id":1,"b":true,"s":32767,"i":-2147483648,"g":9223372036854775807,"r":"NaN","d":"NaN",'
    b'"n":null,"nn":null}',
    b'{"id":2,"b":false,"s":-32768,"i":2147483647,"g":-9223372036854775808,"r":"Infinity",'
    b'"d":"-Infinity","n":"BOI=","nn":null}',
]


def real_message(after: bytes) -> bytes:
    text = wrapped(envelope_schema(REAL_ROW_FIELDS), envelope(after={"id": 0}))
    return text.replace(b'{"id":0}', after)


def test_the_connectors_limits_and_non_finite_floats_decode_to_what_the_source_held() -> None:
    decoder = Decoder()
    first = decoded(real_message(REAL_AFTERS[0]), decoder, key_bytes=key(1)).row
    second = decoded(real_message(REAL_AFTERS[1]), decoder, key_bytes=key(2)).row
    assert first is not None and second is not None
    assert (first["b"], first["s"], first["i"], first["g"]) == (True, 32767, -(2**31), 2**63 - 1)
    assert math.isnan(first["r"]) and math.isnan(first["d"])
    assert type(first["r"]) is float and type(first["d"]) is float
    assert (second["b"], second["s"], second["i"], second["g"]) == (
        False,
        -(2**15),
        2**31 - 1,
        -(2**63),
    )
    assert (second["r"], second["d"]) == (math.inf, -math.inf)


# -- integers of the declared width ----------------------------------------------------------


@pytest.mark.parametrize(
    ("connect_type", "low", "high"),
    [
        ("int8", -(2**7), 2**7 - 1),
        ("int16", -(2**15), 2**15 - 1),
        ("int32", -(2**31), 2**31 - 1),
        ("int64", -(2**63), 2**63 - 1),
    ],
)
def test_integers_are_kept_within_their_declared_width(
    connect_type: str, low: int, high: int
) -> None:
    field = {"type": connect_type, "optional": True}
    assert decode_field(field, low)[0] == low
    assert decode_field(field, high)[0] == high
    for beyond in (low - 1, high + 1):
        reason = field_refused(field, beyond)
        assert reason.startswith(f"column 'x': value does not match its schema ({connect_type})")
        assert f"{beyond} is out of the {connect_type} range" in reason


@pytest.mark.parametrize(
    ("text", "shown"),
    [(b"NaN", "got NaN"), (b"Infinity", "got Infinity"), (b'"NaN"', "got text 'NaN'")],
)
def test_no_nan_or_infinity_where_an_integer_is_declared(text: bytes, shown: str) -> None:
    message = wrapped(envelope_schema([*ROW_FIELDS, {"type": "int64", "field": "x"}]), envelope())
    message = message.replace(b'"name":"ann"', b'"name":"ann","x":' + text)
    reason = refused(message)
    assert reason == f"column 'x': value does not match its schema (int64): {shown}"


DECIMAL = {
    "type": "bytes",
    "optional": True,
    "name": "org.apache.kafka.connect.data.Decimal",
    "parameters": {"scale": "2"},
}


@pytest.mark.parametrize("text", [b"NaN", b"Infinity", b"-Infinity"])
def test_no_nan_or_infinity_where_a_decimal_is_declared(text: bytes) -> None:
    # decimal.format=NUMERIC writes plain JSON numbers; a non-finite one has no Decimal column.
    message = wrapped(envelope_schema([*ROW_FIELDS, {**DECIMAL, "field": "x"}]), envelope())
    message = message.replace(b'"name":"ann"', b'"name":"ann","x":' + text)
    reason = refused(message)
    assert "column 'x': value does not match its schema (org.apache.kafka.connect" in reason
    assert "expected base64 text or a finite number" in reason


def test_a_variable_scale_decimal_needs_an_integer_scale() -> None:
    field = {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"}
    assert "expected an integer scale, got text '2'" in field_refused(
        field, {"scale": "2", "value": "AQ=="}
    )


# -- floats ----------------------------------------------------------------------------------


@pytest.mark.parametrize("connect_type", ["double", "float"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b'"NaN"', math.nan),  # Kafka Connect's JsonConverter
        (b'"Infinity"', math.inf),
        (b'"-Infinity"', -math.inf),
        (b"NaN", math.nan),  # a JSON literal other writers use
        (b"-Infinity", -math.inf),
        (b"3", 3),  # a whole double without its fraction
    ],
)
def test_non_finite_floats_are_kept_as_floats(
    connect_type: str, text: bytes, expected: float
) -> None:
    field = {"type": connect_type, "field": "x"}
    message = wrapped(envelope_schema([*ROW_FIELDS, field]), envelope())
    row = decoded(message.replace(b'"name":"ann"', b'"name":"ann","x":' + text)).row
    assert row is not None
    assert repr(row["x"]) == repr(expected) and type(row["x"]) is type(expected)


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ({"type": "double"}, "nan", "got text 'nan'"),
        ({"type": "double"}, True, "got a boolean True"),
        ({"type": "float"}, 1e39, "1e+39 is out of the float range"),
    ],
)
def test_float_columns_take_numbers_only(field: dict[str, Any], value: Any, shown: str) -> None:
    assert shown in field_refused(field, value)


# -- booleans, text and the other declared types ---------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "declared", "shown"),
    [
        ({"type": "boolean"}, "yes", "boolean", "got text 'yes'"),
        ({"type": "boolean"}, "true", "boolean", "got text 'true'"),
        ({"type": "boolean"}, 1, "boolean", "got an integer 1"),
        ({"type": "int32"}, "12", "int32", "got text '12'"),
        ({"type": "int32"}, True, "int32", "got a boolean True"),
        ({"type": "int16"}, 1.5, "int16", "got a number 1.5"),
        ({"type": "int64"}, {"v": 1}, "int64", "got an object {'v': 1}"),
        ({"type": "string"}, 12, "string", "got an integer 12"),
        ({"type": "string"}, ["a"], "string", "got an array ['a']"),
        ({"type": "struct", "fields": []}, "x", "struct", "got text 'x'"),
        (
            {"type": "int32", "name": "io.debezium.time.Date"},
            True,
            "io.debezium.time.Date (int32)",
            "expected an integer, got a boolean True",
        ),
        (
            {"type": "int32", "name": "io.debezium.time.Year"},
            "2024",
            "io.debezium.time.Year (int32)",
            "got text '2024'",
        ),
        (
            {"type": "string", "name": "io.debezium.data.Uuid"},
            7,
            "io.debezium.data.Uuid (string)",
            "got an integer 7",
        ),
        (
            {"type": "array", "items": {"type": "int32"}},
            [1, "2"],
            "array",
            "got text '2'",
        ),
        (
            {"type": "array", "items": {"type": "string"}},
            ["a", 2],
            "array",
            "an item is an integer 2, not string",
        ),
        ({"type": "array", "items": {"type": "string"}}, "a", "array", "expected an array"),
    ],
)
def test_a_value_that_lies_about_its_declared_type_names_the_column_and_the_type(
    field: dict[str, Any], value: Any, declared: str, shown: str
) -> None:
    reason = field_refused(field, value)
    assert reason.startswith(f"column 'x': value does not match its schema ({declared}): ")
    assert shown in reason


def test_well_typed_values_pass_unchanged() -> None:
    assert decode_field({"type": "boolean"}, False)[0] is False
    assert decode_field({"type": "string"}, "yes")[0] == "yes"
    assert decode_field({"type": "array", "items": {"type": "int16"}}, [1, None])[0] == [1, None]
    assert decode_field({"type": "map", "keys": {"type": "string"}}, {"a": 1})[0] == {"a": 1}
    assert decode_field({"type": "int32"}, None)[0] is None


def test_key_columns_are_checked_against_the_key_schema() -> None:
    reason = refused(dumps(envelope()), key_bytes=wrapped(KEY_SCHEMA, {"id": "1"}))
    assert reason == "column 'id': value does not match its schema (int32): got text '1'"


def test_values_without_a_schema_are_not_type_checked() -> None:
    after = {"id": 1, "flag": "yes", "n": 2**70, "f": "NaN"}
    event = decoded(dumps(envelope(after=after)), key_bytes=key(1, schemas=False))
    assert event.row == after


# -- versions --------------------------------------------------------------------------------


def test_versions_fit_int64() -> None:
    assert decoded(dumps(envelope(source=pg_source(lsn=2**63 - 1)))).version == 2**63 - 1
    reason = refused(dumps(envelope(source=pg_source(lsn=2**63))))
    assert reason == f"lsn {2**63} does not fit a version (a signed 64-bit integer)"
    assert "does not fit a version" in refused(dumps(envelope(source=pg_source(lsn=2**64 + 1))))
    flattened = dumps({"id": 1, "__lsn": 2**63, "__table": "customers"})
    assert "lsn 9223372036854775808 does not fit a version" in refused(flattened)
    ts_only = {"schema": "inventory", "table": "customers", "ts_ms": 2**63}
    assert "ts_ms 9223372036854775808 does not fit" in refused(dumps(envelope(source=ts_only)))


def test_a_boolean_is_not_a_position() -> None:
    assert "lsn is not a non-negative integer: True" in refused(
        dumps(envelope(source=pg_source(lsn=True)))
    )


# -- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key_bytes",
    [
        b'{"id": null}',
        wrapped(
            {**KEY_SCHEMA, "fields": [{"type": "int32", "optional": True, "field": "id"}]},
            {"id": None},
        ),
        b'{"tenant": 1, "id": null}',
    ],
)
def test_a_null_key_column_is_refused(key_bytes: bytes) -> None:
    reason = refused(dumps(envelope()), key_bytes=key_bytes)
    assert reason == "key column 'id' is null: the row cannot be identified"
    assert "is null" in refused(None, Decoder(tombstones="delete"), key_bytes=key_bytes)


@pytest.mark.parametrize("schemas", [True, False])
def test_a_key_that_disagrees_with_its_row_is_refused(schemas: bool) -> None:
    after = {"id": 2, "name": "ann"}
    value = (
        wrapped(envelope_schema(), envelope(after=after))
        if schemas
        else dumps(envelope(after=after))
    )
    reason = refused(value, key_bytes=key(1, schemas))
    assert reason == (
        "key and value disagree: key column 'id' is 1 in the key but 2 in the value;"
        " sinks would apply it under different ids"
    )


def test_a_delete_whose_before_image_disagrees_with_its_key_is_refused() -> None:
    delete = envelope("d", before={"id": 2, "name": None})
    assert "key column 'id' is 1 in the key but 2" in refused(dumps(delete), key_bytes=key(1))
    event = decoded(dumps(envelope("d", before={"id": 1, "name": None})), key_bytes=key(1))
    assert event.op is Op.DELETE


def test_a_flattened_row_that_disagrees_with_its_key_is_refused() -> None:
    row = {"id": 2, "name": "x", "__deleted": "false"}
    assert "key column 'id' is 1 in the key but 2" in refused(dumps(row), key_bytes=key(1))
    deleted = {"id": 2, "name": None, "__deleted": "true"}
    assert "key column 'id' is 1 in the key but 2" in refused(dumps(deleted), key_bytes=key(1))


def test_keys_and_rows_agree_whatever_side_has_a_schema() -> None:
    date_key = {
        "type": "struct",
        "name": "dbserver1.inventory.visits.Key",
        "fields": [{"type": "int32", "name": "io.debezium.time.Date", "field": "day"}],
    }
    fields = [{"type": "int32", "name": "io.debezium.time.Date", "field": "day"}]
    after = {"day": 19_000}
    wrapped_value = wrapped(envelope_schema(fields), envelope(after=after))
    wrapped_key, bare_key = wrapped(date_key, {"day": 19_000}), dumps({"day": 19_000})
    for key_bytes in (wrapped_key, bare_key):  # a bare key is typed by the value's schema
        event = decoded(wrapped_value, key_bytes=key_bytes)
        assert event.row is not None and event.key["day"] == event.row["day"]
        # A value without a schema is compared as sent (its row stays as JSON gives it).
        assert decoded(dumps(envelope(after=after)), key_bytes=key_bytes).row == after
    other_day = wrapped(envelope_schema(fields), envelope(after={"day": 19_001}))
    for key_bytes in (wrapped_key, bare_key):
        assert "key column 'day'" in refused(other_day, key_bytes=key_bytes)


def test_a_composite_key_must_agree_on_every_column() -> None:
    after = {"tenant": 1, "id": 7, "name": "x"}
    assert decoded(dumps(envelope(after=after)), key_bytes=b'{"tenant": 1, "id": 7}').row == after
    reason = refused(dumps(envelope(after=after)), key_bytes=b'{"tenant": 2, "id": 7}')
    assert "key column 'tenant' is 2 in the key but 1 in the value" in reason


# -- what is a change event at all -----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        dumps({"id": 1, "name": "ann"}),  # a row without any ExtractNewRecordState marker
        dumps({"hello": "world"}),
        dumps({}),
        wrapped({"type": "struct", "fields": [{"type": "int32", "field": "id"}]}, {"id": 1}),
    ],
)
def test_an_object_of_another_shape_is_not_applied(value: bytes) -> None:
    reason = refused(value)
    assert reason.startswith(
        "value is neither a Debezium envelope (before/after/source/op) nor a known flattened"
        " row: topic 'dbserver1.inventory.customers' is not in kafka.flattened_topics"
    )


def test_a_schema_without_its_payload_is_not_applied() -> None:
    lone = dumps({"schema": envelope_schema()})
    expected = "value is a JsonConverter schema without a payload: nothing to apply"
    assert refused(lone) == expected
    assert refused(lone, Decoder(flattened_topics=["*"])) == expected


def test_rows_on_a_topic_declared_flattened_need_no_marker() -> None:
    declared = Decoder(flattened_topics=["dbserver1.inventory.*"])
    event = decoded(dumps({"id": 1, "name": "ann"}), declared)
    assert (event.op, event.table, event.row) == (
        Op.UPSERT,
        "inventory.customers",
        {"id": 1, "name": "ann"},
    )
    assert "not in kafka.flattened_topics" in refused(
        dumps({"id": 1}), declared, topic="other.inventory.customers"
    )


def test_extract_new_record_state_headers_mark_the_row_and_carry_its_metadata() -> None:
    headers = (
        ("__debezium.context.connectorName", b"postgresql"),  # on every Debezium record
        ("__op", b"c"),
        ("__source_ts_ms", b"1714000000000"),
        ("__lsn", b"26904880"),
    )
    value = dumps({"id": 1, "name": "ann"})
    event = Decoder().decode(Origin(TOPIC, 0, 42, KAFKA_TS, key(1), value, headers))
    assert event is not None
    assert (event.op, event.row, event.version, event.source_ts_ms) == (
        Op.UPSERT,
        {"id": 1, "name": "ann"},
        26904880,
        1714000000000,
    )
    context_only = Origin(TOPIC, 0, 42, KAFKA_TS, key(1), value, headers[:1])
    with pytest.raises(DecodeError, match=r"not in kafka\.flattened_topics"):
        Decoder().decode(context_only)


def test_flattened_output_of_the_real_connector_is_recognised() -> None:
    # ExtractNewRecordState with add.fields=op,table,lsn, add.headers=op,source.ts_ms,lsn and
    # delete.tombstone.handling.mode=rewrite, as Debezium 3.6.1 wrote it (schema left out).
    row = (
        b'{"id":2,"b":null,"s":null,"i":null,"g":null,"r":null,"d":null,"n":null,"nn":null,'
        b'"__deleted":"true","__op":"d","__table":"expl_74b098","__lsn":26905416}'
    )
    event = decoded(row, key_bytes=key(2), topic="expl.public.expl_74b098")
    assert (event.op, event.table, event.key, event.version) == (
        Op.DELETE,
        "public.expl_74b098",
        {"id": 2},
        26905416,
    )
