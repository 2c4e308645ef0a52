"""Events -> Elasticsearch documents: ids, JSON values, tombstones, index names (no services).

Which events reach the documents (the newest valid one per key) is the batch template's: its
collapse is tested in ``test_base_batch``, the sink's use of it through ``ElasticsearchSink.write``
in ``tests/integration/test_elasticsearch_sink.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from elasticsearch.helpers import expand_action
from elasticsearch.serializer import JsonSerializer

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Json, Op, Origin
from sinks.elasticsearch.schema import index_name
from sinks.elasticsearch.types import (
    bulk_lines,
    document_id,
    index_action,
    json_document,
    json_value,
)


def event(
    key: dict[str, Any] | int,
    version: int,
    row: dict[str, Any] | None = None,
    op: Op = Op.UPSERT,
    target: str = "t",
    offset: int = 0,
) -> ChangeEvent:
    key = {"id": key} if isinstance(key, int) else key
    if op is Op.UPSERT and row is None:
        row = dict(key)
    return ChangeEvent(
        op, "src.t", key, row, version, 1_700_000_000_000, Origin("tp", 0, offset), (), target
    )


# Every logical type's value, and the ones JSON has no number for.
EVERY_LOGICAL_TYPE: dict[str, Any] = {
    "price": Decimal("12345678901234567890.0100"),
    "big": Decimal("1E+3"),
    "day": dt.date(2024, 2, 29),
    "at": dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
    "at_utc": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    "clock": dt.time(23, 59, 1, 5),
    "blob": b"\x00\xff",
    "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "doc": {"a": [1, Decimal("2.5")], "b": None},
    "tags": ["x", "y"],
    "nan": float("nan"),
    "inf": float("-inf"),
    "ok": 1.5,
}


def test_values_become_json_that_keeps_their_meaning() -> None:
    out = json_document(EVERY_LOGICAL_TYPE)
    assert out == {
        "price": "12345678901234567890.0100",  # every digit kept
        "big": "1000",  # plain notation, not 1E+3
        "day": "2024-02-29",
        "at": "2024-01-02T03:04:05.678901",
        "at_utc": "2024-01-02T03:04:05+00:00",
        "clock": "23:59:01.000005",
        "blob": "AP8=",
        "uid": "12345678-1234-5678-1234-567812345678",
        "doc": {"a": [1, "2.5"], "b": None},
        "tags": ["x", "y"],
        "nan": None,  # JSON has no NaN / infinity
        "inf": None,
        "ok": 1.5,
    }
    json.dumps(out, allow_nan=False)  # strictly valid JSON


def test_a_value_without_json_form_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="object"):
        json_value(object())


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ({"id": 42}, "42"),
        ({"code": "A/1 é"}, "A/1 é"),
        ({"id": uuid.UUID(int=1)}, "00000000-0000-0000-0000-000000000001"),
        ({"flag": True}, "true"),
        ({"amount": Decimal("1.10")}, "1.10"),
        ({"order_id": 7, "line_no": 2}, "[7,2]"),
        ({"a": "x,y", "b": 1}, '["x,y",1]'),
        ({"a": 1, "b": None}, "[1,null]"),
    ],
)
def test_document_ids_are_stable_and_unambiguous(key: dict[str, Any], expected: str) -> None:
    assert document_id(key) == expected


@pytest.mark.parametrize(
    "values",
    [
        ('quote " and \\ backslash', 1),
        ("controls \x00\x01\x1f\x7f\b\f\n\r\t", -(2**63)),
        ("é ü \u2028 \u2029 \ufeff 😀", True, None),
        ("beyond 64 bits", 2**64),
    ],
)
def test_composite_ids_are_the_compact_json_the_standard_library_writes(
    values: tuple[Any, ...],
) -> None:
    key = {f"k{i}": value for i, value in enumerate(values)}
    assert document_id(key) == json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)


def test_composite_ids_differ_when_values_differ_even_with_separators() -> None:
    assert document_id({"a": "1,2", "b": "3"}) != document_id({"a": "1", "b": "2,3"})


def test_keyless_keys_are_rejected_and_ids_over_512_bytes_are_hashed() -> None:
    with pytest.raises(MappingError, match="no key"):
        document_id({})
    assert document_id({"id": int("9" * 512)}) == "9" * 512
    assert document_id({"id": "é" * 256}) == "é" * 256  # 512 bytes: the limit is in bytes
    for key, unhashed in [
        ({"id": "x" * 513}, "x" * 513),
        ({"id": "é" * 257}, "é" * 257),
        ({"id": int("9" * 513)}, "9" * 513),
        ({"a": "x" * 300, "b": "y" * 300}, json.dumps(["x" * 300, "y" * 300]).replace(" ", "")),
        ({"id": "[" + "z" * 600}, "~[" + "z" * 600),
    ]:
        assert document_id(key) == "~#" + hashlib.sha256(unhashed.encode()).hexdigest()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ({"code": ""}, "~"),
        ({"code": '[7,"a"]'}, '~[7,"a"]'),  # never the composite key (7, "a")
        ({"code": "~"}, "~~"),
        ({"code": "~#abc"}, "~~#abc"),  # never a hashed id
        ({"code": "a[b~"}, "a[b~"),  # only a leading [ or ~ is escaped
        ({"tags": ["a", "b"]}, '~["a","b"]'),  # an array key is one value, not a composite
        ({"doc": Json('{"a": 1}')}, '{"a": 1}'),  # a JSON column: its text
        ({"doc": Json("[1]"), "n": 2}, '["[1]",2]'),  # in a composite key: its text, quoted
    ],
)
def test_every_key_has_an_id_and_no_two_kinds_of_key_share_one(
    key: dict[str, Any], expected: str
) -> None:
    assert document_id(key) == expected
    assert document_id({"order_id": 7, "line_no": "a"}) == '[7,"a"]'


def test_upserts_carry_the_row_and_bookkeeping_with_an_external_version() -> None:
    action = index_action("p-t", "7", event({"id": 7}, 12, {"name": "x"}), "2024-01-01T00:00:00Z")
    assert action == {
        "_op_type": "index",
        "_index": "p-t",
        "_id": "7",
        "version": 12,
        "version_type": "external_gte",
        "_source": {
            "name": "x",
            "id": 7,  # key columns the row lacks are added
            "_fanout_version": 12,
            "_fanout_source_ts_ms": 1_700_000_000_000,
        },
    }


def test_deletes_are_versioned_tombstone_documents() -> None:
    now = "2024-01-01T00:00:00+00:00"
    action = index_action("t", "[1,2]", event({"a": 1, "b": 2}, 30, op=Op.DELETE), now)
    assert action["_op_type"] == "index"
    assert (action["version"], action["version_type"]) == (30, "external_gte")
    assert action["_source"] == {
        "a": 1,
        "b": 2,
        "_fanout_deleted": True,
        "_fanout_deleted_at": now,
        "_fanout_version": 30,
        "_fanout_source_ts_ms": 1_700_000_000_000,
    }


@pytest.mark.parametrize(
    ("prefix", "target", "derived"),
    [
        ("", "Orders", "orders"),
        ("", "Order Items", "order_items"),
        ("", "a*b?c", "a_b_c"),
        ("", "a\nb", "a_b"),
        ("", "_x", "x"),
        ("", "-+.x", "x"),
        ("cdc-", "_Underscore", "_underscore"),  # a leading _ is fine after a prefix
        ("", "Ärger", "ärger"),  # not only ASCII letters have a lowercase
    ],
)
def test_targets_that_cannot_name_an_index_derive_one(
    prefix: str, target: str, derived: str
) -> None:
    assert index_name(prefix, target) == derived
    assert index_name(prefix, derived) == derived  # a derived name derives itself


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("x.fanout", "reserved"),
        ("fanout.meta", "reserved"),
        ("", "empty name"),
        ("__", "empty name"),
    ],
)
def test_targets_that_derive_no_usable_name_are_refused(target: str, reason: str) -> None:
    with pytest.raises(MappingError, match=f"invalid Elasticsearch index name .*{reason}"):
        index_name("", target)


def test_valid_targets_keep_their_name() -> None:
    assert index_name("", "inventory.orders") == "inventory.orders"
    assert index_name("cdc-", "_underscore_ok_after_prefix") == "_underscore_ok_after_prefix"
    assert index_name("cdc-", "_fanout_x") == "_fanout_x"  # no index of the sink's


def test_a_name_too_long_for_its_prefix_is_cut_and_ended_by_a_hash() -> None:
    longest = "a" * (255 - len(".fanout"))
    assert index_name("", longest) == longest
    cut = index_name("cdc-", longest)
    assert len(("cdc-" + cut + ".fanout").encode()) == 255
    assert cut.startswith("aaaa") and cut != index_name("cdc-", longest + "b")
    wide = index_name("", "é" * 125)  # bytes, not characters; never half a character
    assert len((wide + ".fanout").encode()) <= 255 and wide.startswith("é")


def client_lines(action: dict[str, Any]) -> bytes:
    """What the Elasticsearch client's bulk helpers sent for ``action``."""
    header, source = expand_action(action)
    serializer = JsonSerializer()
    return serializer.dumps(header) + b"\n" + serializer.dumps(source) + b"\n"


@pytest.mark.parametrize(
    "row",
    [
        {"id": 7, "name": "x", "n": None, "ok": True, "f": 1.5, "tags": ["a", "b"]},
        {
            **EVERY_LOGICAL_TYPE,
            "nan_decimal": Decimal("NaN"),
            "doc": {"a": [1, Decimal("2.5")], "b": None, "t": (1, "é\u2028\n")},
        },
        {  # what orjson does not take as is: sent as the client would have sent it
            "huge": 2**70,
            "keys": {1: "a", None: "b"},
            "zoned_clock": dt.time(1, 2, tzinfo=dt.UTC),
            "surrogate": "a\ud800",
        },
    ],
)
def test_bulk_lines_are_what_the_client_would_have_sent(row: dict[str, Any]) -> None:
    upsert = event({"id": 7}, 12, row)
    expected = client_lines(index_action("p-t", "7", upsert, "now"))
    assert bulk_lines("p-t", "7", upsert, "now") == expected


def test_bulk_lines_of_a_tombstone_are_what_the_client_would_have_sent() -> None:
    delete = event({"a": 1, "b": "x"}, 30, op=Op.DELETE)
    now = "2024-01-01T00:00:00+00:00"
    expected = client_lines(index_action("t", '[1,"x"]', delete, now))
    assert bulk_lines("t", '[1,"x"]', delete, now) == expected


def test_bulk_lines_reject_what_json_value_rejects() -> None:
    with pytest.raises(MappingError, match="cannot write a"):
        bulk_lines("t", "1", event({"id": 1}, 1, {"id": 1, "x": object()}), "now")
    with pytest.raises(MappingError, match="without a row"):
        bulk_lines(
            "t",
            "1",
            ChangeEvent(Op.UPSERT, "s.t", {"id": 1}, None, 1, 1, Origin("tp", 0, 0)),
            "now",
        )
