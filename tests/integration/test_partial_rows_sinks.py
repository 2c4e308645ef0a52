"""Partial rows written straight into the sinks whose targets hold whole rows (ClickHouse in
both modes, Elasticsearch): an upsert that lacks declared columns keeps the stored values, a
column carried as NULL becomes NULL, and a key the target holds no live row for gets
NULL/absent columns, counted in ``fanout_columns_unknown_total``.

The end-to-end proof with a real Debezium connector is ``test_fidelity_toast``; these tests
pin the cases it cannot steer: key types, deletes, truncates, stale events.
"""

from __future__ import annotations

import base64
import datetime as dt
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from prometheus_client import REGISTRY

from fanout.events import ChangeEvent, Column, Json, Op, Origin
from fanout.settings import ClickHouseSettings, ElasticsearchSettings
from sinks.clickhouse.sink import ClickHouseSink
from sinks.clickhouse.types import quote_identifier
from sinks.elasticsearch.sink import ElasticsearchSink
from sinks.elasticsearch.types import document_id
from tests.integration.conftest import Endpoints
from tests.support.pipeline import unique

COLUMNS = (
    Column("tenant", "uuid", optional=False),
    Column("at", "timestamptz", optional=False),
    Column("n", "int64"),
    Column("body", "string"),
    Column("title", "string", optional=False),
    Column("blob", "bytes"),
    Column("doc", "json"),
    Column("tags", "array", parameters=(("items", "string"),)),
    Column("price", "decimal", parameters=(("scale", "4"), ("precision", "20"))),
    Column("seen", "timestamp"),
    Column("note", "string"),
)
DATA = ("body", "title", "blob", "doc", "tags", "price", "seen", "note")  # what a partial lacks
KEY = {
    "tenant": str(uuid.UUID(int=7)),
    "at": dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
}
FULL = {
    **KEY,
    "n": 1,
    "body": "ü" + "x" * 5000,
    "title": "it's a \\ title",
    "blob": b"\xff\x00\xfe not utf-8",
    "doc": {"nested": {"list": ["x", None]}, "ok": True, "ratio": 2.5},
    "tags": ["a", None, "ü"],
    "price": Decimal("12345.6789"),
    "seen": dt.datetime(1899, 12, 31, 23, 0, 0, 1),
    "note": "kept until set to NULL",
}
_offsets = iter(range(10**9))


def change(
    key: dict[str, Any], row: dict[str, Any] | None, version: int, op: Op = Op.UPSERT
) -> ChangeEvent:
    origin = Origin("cdc.partial", 0, next(_offsets))
    return ChangeEvent(op, "src.partial", key, row, version, 1000 + version, origin, COLUMNS, "pr")


def truncate(version: int) -> ChangeEvent:
    origin = Origin("cdc.partial", 0, next(_offsets))
    return ChangeEvent(Op.TRUNCATE, "src.partial", {}, None, version, 1, origin, (), "pr")


def other_key(i: int) -> dict[str, Any]:
    return {**KEY, "tenant": str(uuid.UUID(int=1000 + i))}


def unknown_total(sink: str, table: str) -> float:
    labels = {"sink": sink, "table": table}
    return REGISTRY.get_sample_value("fanout_columns_unknown_total", labels) or 0.0


def write(sink: ClickHouseSink | ElasticsearchSink, *events: ChangeEvent) -> None:
    failures = sink.write(list(events))
    assert failures == [], [str(failure.error) for failure in failures]


# ---- ClickHouse ----------------------------------------------------------------------------


@pytest.fixture(params=("embedded", "server"))
def clickhouse_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClickHouseSink]:
    database = f"partial_{uuid.uuid4().hex[:10]}"
    if request.param == "embedded":
        settings = ClickHouseSettings(data_dir=str(tmp_path / "chdb"), database=database)
    else:
        request.getfixturevalue("clickhouse")  # fails with the devstack hint if it is down
        endpoints: Endpoints = request.getfixturevalue("endpoints")
        settings = ClickHouseSettings(
            host=endpoints.ch_host, port=endpoints.ch_port, database=database
        )
    sink = ClickHouseSink(settings)
    sink.open()
    yield sink
    sink.backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(database)}")
    sink.close()


def ch_current(sink: ClickHouseSink) -> dict[str, dict[str, Any]]:
    """The current rows by tenant, as ClickHouse returns them (String columns as bytes)."""
    names = [column.name for column in COLUMNS]
    result = sink.backend.client.query(
        f"SELECT {', '.join(map(quote_identifier, names))} FROM `pr_current`",
        column_formats={"blob": "bytes"},
    )
    return {str(row[0]): dict(zip(names, row, strict=True)) for row in result.result_rows}


def ch_expected(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` as ClickHouse reads it back (the sink's documented conversions)."""
    out = dict(row)
    out["tenant"] = uuid.UUID(row["tenant"])
    out["at"] = row["at"].replace(tzinfo=None)
    if out.get("doc") is not None:
        out["doc"] = '{"nested":{"list":["x",null]},"ok":true,"ratio":2.5}'
    return out


def test_clickhouse_partial_row_keeps_the_stored_columns(clickhouse_sink: ClickHouseSink) -> None:
    write(clickhouse_sink, change(KEY, FULL, 1))
    write(clickhouse_sink, change(KEY, {**KEY, "n": 2, "note": None}, 2))
    assert ch_current(clickhouse_sink) == {
        KEY["tenant"]: ch_expected({**FULL, "n": 2, "note": None})
    }


def test_clickhouse_unknown_columns_are_null_or_default_and_counted(
    clickhouse_sink: ClickHouseSink,
) -> None:
    deleted, fresh = other_key(1), other_key(2)
    write(clickhouse_sink, change(KEY, FULL, 1), change(deleted, {**FULL, **deleted}, 1))
    write(clickhouse_sink, change(deleted, None, 2, Op.DELETE))
    before = unknown_total("clickhouse", "pr")
    write(
        clickhouse_sink,
        change(deleted, {**deleted, "n": 3}, 3),  # its stored row is a delete
        change(fresh, {**fresh, "n": 4}, 3),  # never seen
    )
    assert unknown_total("clickhouse", "pr") - before == 2 * len(DATA)
    rows = ch_current(clickhouse_sink)
    blank = dict.fromkeys(DATA)
    blank.update(title="", tags=[])  # NOT NULL: the column's default; arrays are never NULL
    assert rows[deleted["tenant"]] == ch_expected({**deleted, "n": 3, **blank})
    assert rows[fresh["tenant"]] == ch_expected({**fresh, "n": 4, **blank})
    assert rows[KEY["tenant"]] == ch_expected(FULL)


def test_clickhouse_rows_older_than_a_truncate_are_not_carried(
    clickhouse_sink: ClickHouseSink,
) -> None:
    other = other_key(3)
    write(clickhouse_sink, change(other, {**FULL, **other}, 1))
    write(clickhouse_sink, truncate(5))
    # Another writer (a backfill) raced the truncate: a row older than it, of a key the
    # truncate did not see, is live in the table but not current.
    clickhouse_sink.backend.command(
        "INSERT INTO `pr` SELECT * REPLACE ({tenant:UUID} AS `tenant`, 3 AS `_fanout_version`) "
        "FROM `pr` WHERE `n` = 1",  # REPLACE's aliases shadow the columns in WHERE
        {"tenant": KEY["tenant"]},
    )
    write(clickhouse_sink, change(KEY, {**KEY, "n": 6}, 6))
    [row] = ch_current(clickhouse_sink).values()
    assert row["n"] == 6 and row["body"] is None and row["title"] == ""


def test_clickhouse_whole_rows_take_no_stored_values(clickhouse_sink: ClickHouseSink) -> None:
    write(clickhouse_sink, change(KEY, FULL, 1))
    whole = {**FULL, "n": 2, "body": None, "tags": [], "note": "new"}
    write(clickhouse_sink, change(KEY, whole, 2))
    assert ch_current(clickhouse_sink) == {KEY["tenant"]: ch_expected(whole)}


# ---- Elasticsearch -------------------------------------------------------------------------


@pytest.fixture
def es_sink(es: Elasticsearch, endpoints: Endpoints) -> Iterator[ElasticsearchSink]:
    prefix = unique("partial").lower() + "-"
    settings = ElasticsearchSettings(hosts=endpoints.es_hosts, index_prefix=prefix)
    sink = ElasticsearchSink(settings)
    sink.open()
    yield sink
    sink.close()
    es.options(ignore_status=404).indices.delete(index=f"{prefix}*", expand_wildcards="all")


EsGet = Callable[[dict[str, Any]], "dict[str, Any] | None"]


@pytest.fixture
def es_doc(es: Elasticsearch, es_sink: ElasticsearchSink) -> EsGet:
    """The live document of a key (None for none or a tombstone), bookkeeping fields apart."""

    def get(key: dict[str, Any]) -> dict[str, Any] | None:
        index = es_sink.indices.physical("pr")
        found = es.options(ignore_status=404).get(index=index, id=document_id(key))
        if not found.get("found") or found["_source"].get("_fanout_deleted"):
            return None
        return {k: v for k, v in found["_source"].items() if not k.startswith("_fanout_")}

    return get


def es_expected(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` as the document holds it (the sink's documented conversions)."""
    out = dict(row)
    out["at"] = row["at"].isoformat()
    for name, value in row.items():
        if isinstance(value, bytes):
            out[name] = base64.b64encode(value).decode()
        elif isinstance(value, Decimal):
            out[name] = format(value, "f")
        elif isinstance(value, dt.datetime):
            out[name] = value.isoformat()
    return out


def test_elasticsearch_partial_upsert_keeps_the_stored_fields(
    es_sink: ElasticsearchSink, es_doc: EsGet
) -> None:
    write(es_sink, change(KEY, FULL, 1))
    write(es_sink, change(KEY, {**KEY, "n": 2, "note": None}, 2))
    assert es_doc(KEY) == es_expected({**FULL, "n": 2, "note": None})


def test_elasticsearch_unknown_fields_are_absent_and_counted(
    es_sink: ElasticsearchSink, es_doc: EsGet
) -> None:
    deleted, fresh = other_key(1), other_key(2)
    write(es_sink, change(deleted, {**FULL, **deleted}, 1))
    write(es_sink, change(deleted, None, 2, Op.DELETE))
    before = unknown_total("elasticsearch", "pr")
    write(es_sink, change(deleted, {**deleted, "n": 3}, 3), change(fresh, {**fresh, "n": 4}, 3))
    assert unknown_total("elasticsearch", "pr") - before == 2 * len(DATA)
    assert es_doc(deleted) == es_expected({**deleted, "n": 3})
    assert es_doc(fresh) == es_expected({**fresh, "n": 4})


def test_elasticsearch_a_stale_partial_upsert_changes_nothing(
    es_sink: ElasticsearchSink, es_doc: EsGet
) -> None:
    write(es_sink, change(KEY, FULL, 5))
    before = unknown_total("elasticsearch", "pr")
    write(es_sink, change(KEY, {**KEY, "n": 99}, 3))
    assert es_doc(KEY) == es_expected(FULL)
    assert unknown_total("elasticsearch", "pr") == before


def test_elasticsearch_carried_json_keeps_every_digit(
    es_sink: ElasticsearchSink, endpoints: Endpoints
) -> None:
    text = (
        '{"exact":1234567890.1234567890123456789,"tiny":1e-30,"big":123456789012345678901234567890}'
    )
    write(es_sink, change(KEY, {**FULL, "doc": Json(text)}, 1))
    write(es_sink, change(KEY, {**KEY, "n": 2}, 2))  # lacks doc: carried from the document
    index = es_sink.indices.physical("pr")
    doc_id = urllib.parse.quote(document_id(KEY), safe="")
    url = f"{endpoints.es_hosts[0]}/{index}/_source/{doc_id}"
    with urllib.request.urlopen(url, timeout=10) as response:  # raw: a client would round
        raw = response.read()
    assert b'"n":2' in raw and text.encode() in raw, raw[raw.find(b'"doc"') :][:300]
