"""JSON columns (``io.debezium.data.Json``) keep their exact text, from the decoder to each sink's
encoding: numbers beyond float64, JSON ``null`` apart from SQL NULL, shapes varying by row.

The real connector's side of it (a jsonb source, three sinks compared value by value) is
``tests/integration/test_fidelity_json.py``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from fanout.debezium.envelope import Decoder
from fanout.errors import DecodeError
from fanout.events import ChangeEvent, Column, Json, Op, Origin
from sinks.base.columns import infer_column
from sinks.clickhouse.types import converter_for, table_column_for
from sinks.elasticsearch.types import JsonColumnCache, bulk_lines, index_action
from sinks.postgres.check import resolve
from sinks.postgres.schema import TableInfo
from sinks.postgres.types import PgColumn
from tests.unit._envelope_messages import (
    ROW_FIELDS,
    decoded,
    dumps,
    envelope,
    envelope_schema,
    key,
    origin,
    wrapped,
)

JSON_FIELD = {"type": "string", "name": "io.debezium.data.Json", "optional": True, "field": "doc"}
JSON_ARRAY_FIELD = {
    "type": "array",
    "items": {"type": "string", "name": "io.debezium.data.Json", "optional": True},
    "optional": True,
    "field": "docs",
}
BIG = "1234567890.1234567890123456789"
# What PostgreSQL's jsonb output gives for rows whose shape varies.
TEXTS = [
    '{"n": 1234567890.1234567890123456789, "tags": ["a", null], "deep": {"a": {"b": [1e400]}}}',
    '[1, {"x": 123456789012345678901234567890}, [[]], "s"]',
    BIG,
    '"text with \\"quotes\\" and \\u00e9"',
    "null",
    "true",
    "{}",
    '"\\ud800"',  # a lone surrogate escape: valid JSON text
    "[" * 300 + "]" * 300,
    '{\n  "pretty": [1,\n 2]\n}',  # a json (not jsonb) column keeps its whitespace
]


def json_message(value: Any, *, schema: bool = True) -> bytes:
    after = {"id": 1, "name": None, "doc": value}
    if not schema:
        return dumps(envelope(after=after))
    return wrapped(envelope_schema([*ROW_FIELDS, JSON_FIELD]), envelope(after=after))


def decoded_doc(value: Any) -> Any:
    decoder = Decoder()
    rows = [decoded(json_message(value), decoder).row for _ in range(2)]  # parsed, then cached
    assert rows[0] is not None and rows[1] is not None
    assert rows[0]["doc"] == rows[1]["doc"]
    return rows[0]["doc"]


# --- the decoder ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_a_json_column_is_its_text_as_the_connector_sent_it(text: str) -> None:
    value = decoded_doc(text)
    assert type(value) is Json and value.text == text


def test_json_null_is_a_value_and_sql_null_is_none() -> None:
    assert decoded_doc("null") == Json("null")
    assert decoded_doc(None) is None


def test_the_parsed_value_keeps_every_digit() -> None:
    value = decoded_doc(TEXTS[0])
    assert value.value()["n"] == Decimal(BIG)
    assert decoded_doc(TEXTS[1]).value()[1]["x"] == 123456789012345678901234567890


@pytest.mark.parametrize(("text", "reason"), [("", "blank"), (" \n", "blank"), (5, "got int")])
def test_a_json_column_that_is_not_text_or_is_blank_is_a_decode_error(
    text: Any, reason: str
) -> None:
    with pytest.raises(DecodeError, match=f"column 'doc': value does not match .*{reason}"):
        Decoder().decode(origin(json_message(text), key()))


@pytest.mark.parametrize("text", ["{broken", '{"a": NaN}', '{"a": 1} {"b": 2}'])
def test_text_that_is_not_json_is_not_parsed_here_but_kept_for_the_sinks_to_refuse(
    text: str,
) -> None:
    # PostgreSQL and MySQL only store valid JSON; another producer's text is refused by
    # PostgreSQL and Elasticsearch as they write it (tests/integration/test_elasticsearch_sink).
    assert decoded_doc(text) == Json(text)


def test_an_array_of_json_items_holds_each_items_text() -> None:
    message = wrapped(
        envelope_schema([*ROW_FIELDS, JSON_ARRAY_FIELD]),
        envelope(after={"id": 1, "name": None, "docs": ['{"a": 1.10}', "null", None]}),
    )
    row = decoded(message).row
    assert row is not None and row["docs"] == [Json('{"a": 1.10}'), Json("null"), None]


def test_without_a_schema_values_stay_as_json_gives_them_and_objects_infer_as_json() -> None:
    row = decoded(json_message('{"a": 1}', schema=False), key_bytes=key(1, schemas=False)).row
    assert row is not None and row["doc"] == '{"a": 1}'  # nothing says it is JSON: text
    assert infer_column("doc", {"a": [1, 2]}).type == "json"
    assert infer_column("doc", [{"a": 1}]).type == "json"
    assert infer_column("doc", Json("[1]")).type == "json"


# --- PostgreSQL: the text goes into json/jsonb as it is ------------------------------------

PG_TABLE = TableInfo(
    schema="s",
    name="t",
    columns={
        "id": PgColumn("id", "bigint", "int8"),
        "doc": PgColumn("doc", "jsonb", "jsonb"),
        "docs": PgColumn("docs", "json", "json"),
        "_fanout_version": PgColumn("_fanout_version", "bigint", "int8"),
    },
    unique_keys=(("id",),),
)
PG_COLUMNS = (
    Column("id", "int64", False),
    Column("doc", "json"),
    Column("docs", "array", parameters=(("items", "json"),)),
)


def upsert(row: dict[str, Any], columns: tuple[Column, ...] = PG_COLUMNS) -> ChangeEvent:
    return ChangeEvent(
        Op.UPSERT, "src.t", {"id": row["id"]}, row, 3, None, Origin("x", 0, 0), columns, "t"
    )


@pytest.mark.parametrize("text", TEXTS)
def test_postgres_stages_the_text_in_text_and_binary_copy(text: str) -> None:
    event = upsert({"id": 1, "doc": Json(text), "docs": None})
    layout = resolve(PG_TABLE, ("id",), event).layout
    assert layout is not None and layout.columns == ("id", "doc", "docs", "_fanout_version")
    assert layout.values(event) == [1, text, None, 3]
    staged = layout.stage([event])
    assert staged.types is not None  # binary COPY: jsonb takes the text's bytes
    assert staged.rows == [[1, text.encode("utf-8", "surrogatepass"), None, 3]]


def test_postgres_writes_json_items_and_big_integers_inside_values_exactly() -> None:
    event = upsert({"id": 1, "doc": {"n": 2**70, "j": Json(BIG)}, "docs": [Json(BIG), None]})
    layout = resolve(PG_TABLE, ("id",), event).layout
    assert layout is not None
    _, doc, docs, _ = layout.values(event)
    assert json.loads(doc, parse_float=Decimal) == {"n": 2**70, "j": Decimal(BIG)}
    assert json.loads(docs, parse_float=Decimal) == [Decimal(BIG), None]
    assert layout.stage([event]).rows[0][2] == f"[{BIG},null]".encode()


# --- ClickHouse: a String holding the text -------------------------------------------------


def test_clickhouse_stores_the_text_and_json_items_exactly() -> None:
    column = table_column_for(Column("doc", "json"), key=False, low_cardinality=False)
    assert column.ch_type == "Nullable(String)"
    convert = converter_for(column)
    assert convert is not None
    for text in TEXTS:
        assert convert(Json(text)) == text
    assert convert([Json(BIG), Json("null")]) == f"[{BIG},null]"
    assert convert({"n": 2**70, "d": Decimal("1.5")}) == '{"n":1180591620717411303424,"d":"1.5"}'


# --- Elasticsearch: the document embeds the text -------------------------------------------

ES_COLUMNS = (Column("id", "int64", False), Column("doc", "json"), Column("name", "string"))


def es_source(row: dict[str, Any], columns: tuple[Column, ...] = ES_COLUMNS) -> dict[str, Any]:
    event = upsert(row, columns)
    nullable = JsonColumnCache().of(event).nullable
    lines = bulk_lines("p-t", "1", event, "now", nullable)
    header, source, end = lines.split(b"\n")
    assert end == b"" and json.loads(header)["index"]["_id"] == "1"
    parsed: dict[str, Any] = json.loads(source, parse_float=Decimal)
    return parsed


@pytest.mark.parametrize("text", TEXTS)
def test_elasticsearch_documents_carry_the_json_value_exactly_on_one_line(text: str) -> None:
    source = es_source({"id": 1, "doc": Json(text), "name": None})
    assert source["doc"] == json.loads(text, parse_float=Decimal)
    assert source["name"] is None


def test_elasticsearch_leaves_out_a_json_column_holding_sql_null_but_writes_json_null() -> None:
    assert "doc" not in es_source({"id": 1, "doc": None, "name": None})
    assert es_source({"id": 1, "doc": Json("null"), "name": None})["doc"] is None


def test_elasticsearch_embeds_json_on_the_standard_librarys_path_too() -> None:
    # An integer beyond 64 bits elsewhere in the row sends the document through the stdlib.
    row = {"id": 1, "doc": Json('{\n"n": ' + BIG + "}"), "name": None, "huge": 2**70}
    source = es_source(row)
    assert source == {
        "id": 1,
        "doc": {"n": Decimal(BIG)},
        "name": None,
        "huge": 2**70,
        "_fanout_version": 3,
        "_fanout_source_ts_ms": None,
    }
    action = index_action("p-t", "1", upsert({**row, "doc": None}, ES_COLUMNS), "now", ["doc"])
    assert "doc" not in action["_source"]


def test_json_columns_of_a_schema_and_inferred_without_one() -> None:
    cache = JsonColumnCache()
    with_schema = upsert({"id": 1, "doc": None, "docs": []})
    found = cache.of(with_schema)
    assert (found.mapped, found.nullable) == (("doc", "docs"), ("doc",))
    assert cache.of(with_schema) is found  # cached by the columns tuple
    schemaless = upsert({"id": 1, "a": {"x": 1}, "b": [1, 2], "c": [{"y": 1}], "d": "s"}, ())
    assert cache.of(schemaless).mapped == ("a", "c")
    assert cache.of(upsert({"id": 1, "n": 1}, (Column("id", "int64"),))).mapped == ()
