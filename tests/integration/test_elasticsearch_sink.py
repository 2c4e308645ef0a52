"""The Elasticsearch sink against the devstack's real Elasticsearch (``scripts/devstack up``).

``write()`` is called directly with ChangeEvents (from the Debezium generator where realistic
rows matter). Every test uses its own index prefix (uuid) and deletes its indices afterwards.
Failures of the store itself (down, timeouts, 429) are in ``test_elasticsearch_sink_overload``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from elasticsearch import ConflictError, Elasticsearch, helpers

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Column, Json, Op, Origin
from fanout.runtime.metrics import EVENTS_WRITTEN, STALE_SKIPPED
from fanout.settings import ElasticsearchSettings
from sinks.elasticsearch.sink import ElasticsearchSink
from sinks.elasticsearch.types import json_document
from tests.integration.conftest import Endpoints
from tests.support.debezium import (
    CUSTOMERS,
    ORDER_LINES,
    LogicalEvent,
    expected_state,
    generate_events,
)
from tests.support.pipeline import unique, wait_for

SinkFactory = Callable[..., ElasticsearchSink]


@pytest.fixture
def prefix(es: Elasticsearch) -> Iterator[str]:
    name = unique("essink").lower() + "-"
    yield name
    es.options(ignore_status=404).indices.delete(index=f"{name}*", expand_wildcards="all")


@pytest.fixture
def make_sink(es: Elasticsearch, endpoints: Endpoints, prefix: str) -> Iterator[SinkFactory]:
    sinks: list[ElasticsearchSink] = []

    def make(**overrides: Any) -> ElasticsearchSink:
        values: dict[str, Any] = {
            "hosts": endpoints.es_hosts,
            "index_prefix": prefix,
            "refresh": "wait_for",
        }
        sink = ElasticsearchSink(ElasticsearchSettings(**{**values, **overrides}))
        sink.open()
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


def change(
    key: int,
    version: int,
    row: dict[str, Any] | None = None,
    op: Op = Op.UPSERT,
    target: str = "items",
    offset: int = 0,
) -> ChangeEvent:
    if op is Op.UPSERT and row is None:
        row = {"id": key, "v": version}
    elif row is not None:
        row = {"id": key, **row}
    key_dict = {} if op is Op.TRUNCATE else {"id": key}
    origin = Origin("cdc.items", 0, offset)
    return ChangeEvent(op, "src.items", key_dict, row, version, 1_000 + version, origin, (), target)


def from_logical(event: LogicalEvent, offset: int) -> ChangeEvent:
    return ChangeEvent(
        op=event.op,
        table=event.table,
        key=dict(event.key),
        row=None if event.row is None else dict(event.row),
        version=event.position.lsn,
        source_ts_ms=event.position.ts_ms,
        origin=Origin("dbserver1.inventory", 0, offset),
        target=event.spec.table,
    )


def searched(es: Elasticsearch, alias: str) -> dict[str, dict[str, Any]]:
    """Every document a search through the alias returns, by _id."""
    es.indices.refresh(index=alias)
    return {hit["_id"]: hit["_source"] for hit in helpers.scan(es, index=alias, size=2000)}


def rows_of(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        doc_id: {k: v for k, v in doc.items() if not k.startswith("_fanout_")}
        for doc_id, doc in docs.items()
    }


def expected_docs(events: Sequence[LogicalEvent]) -> dict[str, dict[str, dict[str, Any]]]:
    """The oracle's newest rows per table, as the documents the sink must hold."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for table, rows in expected_state(events).items():
        name = table.rpartition(".")[2]
        out[name] = {_doc_id(key): json_document(row) for key, row in rows.items()}
    return out


def _doc_id(key: tuple[Any, ...]) -> str:
    return str(key[0]) if len(key) == 1 else "[" + ",".join(str(v) for v in key) + "]"


def counted(target: str) -> tuple[float, float]:
    """fanout_events_written_total (every op) and fanout_stale_events_total of ``target``."""
    written = sum(
        EVENTS_WRITTEN.labels("elasticsearch", target, op.value)._value.get() for op in Op
    )
    return written, STALE_SKIPPED.labels("elasticsearch", target)._value.get()


def counted_since(before: tuple[float, float], target: str) -> tuple[float, float]:
    written, stale = counted(target)
    return written - before[0], stale - before[1]


def write_all(sink: ElasticsearchSink, batches: Sequence[Sequence[ChangeEvent]]) -> None:
    for batch in batches:
        assert list(sink.write(batch)) == []


def batched(events: Sequence[ChangeEvent], size: int) -> list[list[ChangeEvent]]:
    return [list(events[i : i + size]) for i in range(0, len(events), size)]


@pytest.fixture(scope="module")
def stream() -> list[LogicalEvent]:
    return list(generate_events(3000, n_keys=150, tables=(CUSTOMERS, ORDER_LINES), seed=7))


def test_final_documents_are_the_newest_event_per_key(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str, stream: list[LogicalEvent]
) -> None:
    sink = make_sink()
    events = [from_logical(e, i) for i, e in enumerate(stream)]
    write_all(sink, batched(events, 400))

    expected = expected_docs(stream)
    assert any(e.op is Op.DELETE for e in events), "the stream must contain deletes"
    for table in ("customers", "order_lines"):
        assert rows_of(searched(es, prefix + table)) == expected[table]
    assert "[1,1]" in expected["order_lines"]  # composite keys: JSON array ids


def test_replays_and_out_of_order_batches_change_nothing(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str, stream: list[LogicalEvent]
) -> None:
    sink = make_sink(refresh="false")
    events = [from_logical(e, i) for i, e in enumerate(stream)]
    batches = batched(events, 250)
    shuffled = random.Random(3).sample(batches, len(batches))
    before = counted("customers")

    write_all(sink, shuffled)  # out of order
    write_all(sink, list(reversed(batches)))  # a full replay, newest first
    write_all(sink, batches[: len(batches) // 2])  # a partial replay in order

    expected = expected_docs(stream)
    for table in ("customers", "order_lines"):
        docs = searched(es, prefix + table)
        assert rows_of(docs) == expected[table]
    written, stale = counted_since(before, "customers")
    assert stale > 0
    # each event written is counted once: applied, or stale (superseded in its batch, or older
    # than the indexed version)
    sent = [e for batch in [*shuffled, *batches, *batches[: len(batches) // 2]] for e in batch]
    assert written + stale == sum(e.target == "customers" for e in sent)
    # the stored (external) version of every document is the version of its newest event
    newest: dict[str, int] = {}
    for e in events:
        if e.target == "customers":
            newest[str(e.key["id"])] = max(e.version, newest.get(str(e.key["id"]), 0))
    stored = {
        hit["_id"]: hit["_version"]
        for hit in helpers.scan(es, index=prefix + "customers.fanout", version=True)
    }
    assert stored == newest  # tombstones included: every key ever seen, at its newest version


def test_deletes_disappear_from_search_but_are_remembered(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    sink = make_sink()
    write_all(sink, [[change(1, 10), change(2, 10), change(1, 11, op=Op.DELETE)]])
    assert set(searched(es, prefix + "items")) == {"2"}
    assert es.count(index=prefix + "items")["count"] == 1
    tombstone = es.get(index=prefix + "items.fanout", id="1")
    assert tombstone["_version"] == 11
    assert tombstone["_source"]["_fanout_deleted"] is True

    write_all(sink, [[change(1, 10, {"v": -1})]])  # an older insert, replayed
    assert set(searched(es, prefix + "items")) == {"2"}


def test_deletes_stay_deleted_after_gc_deletes_has_passed(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    sink = make_sink(index_settings={"index": {"gc_deletes": "1s"}})
    write_all(sink, [[change(1, 5), change(1, 6, op=Op.DELETE), change(2, 5)]])
    physical = prefix + "items.fanout"

    # Control: a plain versioned Elasticsearch delete on the same index. Once gc_deletes has
    # passed, an older version is accepted again: that is the resurrection tombstones prevent.
    es.index(index=physical, id="control", document={}, version=6, version_type="external")
    es.delete(index=physical, id="control", version=7, version_type="external")

    def older_write_accepted() -> bool:
        es.indices.refresh(index=physical)  # refreshes prune expired delete versions
        try:
            es.index(index=physical, id="control", document={}, version=5, version_type="external")
        except ConflictError:
            return False
        return True

    wait_for(older_write_accepted, 30, "the deleted control document's version to be forgotten")

    write_all(sink, [[change(1, 5, {"v": -1})]])  # older than the delete
    assert set(searched(es, prefix + "items")) - {"control"} == {"2"}
    assert es.get(index=physical, id="1")["_source"]["_fanout_deleted"] is True


def test_a_document_that_conflicts_with_the_mapping_fails_alone(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    mappings = {
        "dynamic": "strict",
        "properties": {"id": {"type": "long"}, "qty": {"type": "long"}},
    }
    sink = make_sink(mappings=mappings)
    write_all(sink, [[change(5, 9, {"qty": 5})]])
    batch = [
        change(1, 1, {"qty": 1}, offset=1),
        change(2, 1, {"qty": "not a number"}, offset=2),
        change(3, 1, {"qty": 3, "surprise": True}, offset=3),
        change(4, 1, {"qty": 4}, offset=4),
        change(5, 8, {"qty": 5}, offset=5),  # older than the indexed version: stale
    ]
    before = counted("items")
    failures = list(sink.write(batch))
    written, stale = counted_since(before, "items")
    assert (written, stale) == (2, 1)  # the rejected documents are neither

    assert {f.origin.offset for f in failures} == {2, 3}
    by_offset = {f.origin.offset: str(f.error) for f in failures}
    assert all(isinstance(f.error, MappingError) and f.stage == "write" for f in failures)
    assert "document_parsing_exception" in by_offset[2] and "[qty]" in by_offset[2]
    assert "strict_dynamic_mapping_exception" in by_offset[3] and "surprise" in by_offset[3]
    assert set(searched(es, prefix + "items")) == {"1", "4", "5"}


def test_a_refused_newest_event_leaves_the_older_events_of_its_key_applied(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    sink = make_sink(mappings={"properties": {"id": {"type": "long"}, "qty": {"type": "long"}}})
    write_all(sink, [[change(1, 1, {"qty": 1}), change(2, 1, {"qty": 1})]])
    batch = [
        change(1, 2, {"qty": 2}, offset=1),
        change(1, 3, op=Op.DELETE, offset=2),
        change(1, 4, {"qty": "not a number"}, offset=3),  # the newest of key 1: refused
        change(2, 2, {"qty": 20}, offset=4),
        change(2, 3, {"qty": "nan either"}, offset=5),
        change(2, 4, {"qty": "nor this"}, offset=6),
        change(3, 1, {"qty": 3, "doc": Json('{"a": [1]}')}, offset=7),
        change(3, 2, {"qty": 3, "doc": Json('{"a":\n [1, }')}, offset=8),  # not JSON
    ]
    before = counted("items")
    failures = list(sink.write(batch))
    assert sorted(f.origin.offset for f in failures) == [3, 5, 6, 8]
    assert all("document_parsing_exception" in str(f.error) for f in failures)
    # key 1: the delete before the refused upsert is applied; keys 2 and 3: the newest that can
    assert rows_of(searched(es, prefix + "items")) == {
        "2": {"id": 2, "qty": 20},
        "3": {"id": 3, "qty": 3, "doc": {"a": [1]}},
    }
    tombstone = es.get(index=prefix + "items.fanout", id="1")["_source"]
    assert tombstone["_fanout_deleted"] is True and tombstone["_fanout_version"] == 3
    assert counted_since(before, "items") == (3, 1)  # delete + 2 upserts; one superseded


def test_truncate_clears_older_documents_and_keeps_out_older_replays(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    live, backfill = make_sink(), make_sink()  # two processes, e.g. live consumer + backfill
    before = [change(k, 10 + k) for k in range(1, 6)] + [change(9, 15, op=Op.DELETE)]
    write_all(live, [before])
    write_all(live, [[change(0, 30, op=Op.TRUNCATE), change(7, 31)]])
    assert set(searched(es, prefix + "items")) == {"7"}

    write_all(backfill, [before])  # the backfill replays the old events: dropped
    write_all(live, [[change(0, 30, op=Op.TRUNCATE), change(0, 20, op=Op.TRUNCATE)]])
    assert set(searched(es, prefix + "items")) == {"7"}  # a replayed truncate keeps newer rows
    assert es.count(index=prefix + "items.fanout")["count"] == 1  # old tombstones cleared too
    write_all(backfill, [[change(3, 40)]])
    assert set(searched(es, prefix + "items")) == {"3", "7"}


def test_tombstones_are_purged_after_the_retention(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    sink = make_sink(index_settings={"index": {"gc_deletes": "1s"}})
    write_all(sink, [[change(1, 1), change(2, 1), change(2, 2, op=Op.DELETE)]])
    assert sink.delete_tombstones() == 0  # younger than the retention (a week by default)
    assert sink.purge_tombstones() is False  # the periodic step: nothing left over
    assert sink.delete_tombstones(older_than=dt.timedelta(0)) == 1

    physical = prefix + "items.fanout"
    assert set(searched(es, physical)) == {"1"}

    # The documented caveat: once purged and gc_deletes has passed, an upsert older than the
    # delete resurrects the row.
    def resurrected() -> bool:
        write_all(sink, [[change(2, 1)]])
        return "2" in searched(es, prefix + "items")

    wait_for(resurrected, 30, "the purged delete to be forgotten")


def test_open_creates_routed_indices_with_the_alias_and_bookkeeping_fields(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    routing = {"tables": {"inventory.orders": {"target": "orders"}}}
    make_sink(routing=routing, mappings={"properties": {"note": {"type": "keyword"}}})
    physical = prefix + "orders.fanout"
    aliases = es.indices.get_alias(index=physical)[physical]["aliases"]
    assert aliases[prefix + "orders"]["filter"] == {
        "bool": {"must_not": {"term": {"_fanout_deleted": True}}}
    }
    properties = es.indices.get_mapping(index=physical)[physical]["mappings"]["properties"]
    assert {name: spec["type"] for name, spec in properties.items()} == {
        "note": "keyword",
        "_fanout_version": "long",
        "_fanout_source_ts_ms": "long",
        "_fanout_deleted": "boolean",
        "_fanout_deleted_at": "date",
    }
    assert es.indices.exists(index=prefix + "fanout.meta")


def test_an_index_deleted_behind_the_sinks_back_is_recreated_with_its_alias(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    sink = make_sink()
    write_all(sink, [[change(1, 1)]])
    es.indices.delete(index=prefix + "items.fanout")
    write_all(sink, [[change(2, 1)]])
    assert set(searched(es, prefix + "items")) == {"2"}
    assert (
        prefix + "items"
        in es.indices.get_alias(index=prefix + "items.fanout")[prefix + "items.fanout"]["aliases"]
    )


def test_json_columns_of_any_shape_are_stored_and_mapped_again_on_a_recreated_index(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    columns = (Column("id", "int64", False), Column("doc", "json"))

    def doc(key: int, version: int, text: str | None) -> ChangeEvent:
        row = {"id": key, "doc": None if text is None else Json(text)}
        origin = Origin("cdc.items", 0, version)
        return ChangeEvent(Op.UPSERT, "src.items", {"id": key}, row, version, 1, origin, columns)

    sink = make_sink()
    shapes = ['{"a": {"b": 1}}', "[1, {}]", '"x"', "12345678901234567890.5", "null", None]
    write_all(sink, [[doc(k, 1, text) for k, text in enumerate(shapes)]])
    physical = prefix + "items.fanout"
    es.indices.delete(index=physical)
    write_all(sink, [[doc(k, 2, text) for k, text in enumerate(reversed(shapes))]])
    mapping = es.indices.get_mapping(index=physical)[physical]["mappings"]["properties"]["doc"]
    assert mapping == {"type": "object", "enabled": False}
    assert {
        k: d.get("doc", "absent") for k, d in rows_of(searched(es, prefix + "items")).items()
    } == {
        "0": "absent",  # SQL NULL
        "1": None,  # JSON null
        "2": 12345678901234567890.5,
        "3": "x",
        "4": [1, {}],
        "5": {"a": {"b": 1}},
    }


def test_numbers_beyond_long_and_float_in_dynamic_fields_are_not_refused(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    sink = make_sink()
    write_all(sink, [[change(1, 1, {"n": 5, "f": 1.5})]])  # maps n long, f double
    write_all(sink, [[change(2, 1, {"n": 2**70, "f": 1e300}), change(3, 1, {"n": -(2**64)})]])
    docs = rows_of(searched(es, prefix + "items"))
    assert {k: (d["n"], d.get("f")) for k, d in docs.items()} == {
        "1": (5, 1.5),
        "2": (2**70, 1e300),  # kept in _source exactly
        "3": (-(2**64), None),
    }
    stored = es.search(index=prefix + "items", query={"term": {"_ignored": "n"}})["hits"]["hits"]
    assert sorted(hit["_id"] for hit in stored) == ["2", "3"]  # not indexed, and says so


def test_a_target_whose_alias_name_is_taken_fails_its_events_with_the_reason(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    es.indices.create(index=prefix + "taken")
    sink = make_sink()
    before = counted("taken")
    batch = [
        change(1, 1, target="taken", offset=1),
        change(0, 2, op=Op.TRUNCATE, target="taken", offset=2),
        change(2, 1, offset=3),
    ]
    failures = list(sink.write(batch))
    assert sorted(f.origin.offset for f in failures) == [1, 2]  # the truncate fails too
    assert all("invalid_alias_name_exception" in str(f.error) for f in failures)
    assert set(searched(es, prefix + "items")) == {"2"}
    assert counted("taken") == before
    assert not es.exists(index=prefix + "fanout.meta", id="taken")


def test_events_with_invalid_targets_or_keys_fail_alone(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    sink = make_sink()
    keyless = ChangeEvent(
        Op.UPSERT, "src.items", {}, {"v": 1}, 1, 1, Origin("t", 0, 12), (), "items"
    )
    batch = [
        change(1, 1, target="Not Valid.fanout", offset=10),  # derives a reserved name
        change(2, -1, offset=11),  # outside Elasticsearch's external versions
        keyless,
        change(3, 1, {"v": "x" * 10}, offset=13),
        ChangeEvent(  # an _id over 512 bytes: hashed (docs/sinks/elasticsearch.md)
            Op.UPSERT, "src.items", {"id": "k" * 513}, {}, 1, 1, Origin("t", 0, 14), (), "items"
        ),
        change(2, 1, offset=15),
    ]
    failures = list(sink.write(batch))
    assert [f.origin.offset for f in failures] == [10, 11, 12]
    assert all(isinstance(f.error, MappingError) and f.stage == "write" for f in failures)
    assert "invalid Elasticsearch index name 'Not Valid.fanout'" in str(failures[0].error)
    hashed = "~#" + hashlib.sha256(b"k" * 513).hexdigest()
    assert set(searched(es, prefix + "items")) == {"2", "3", hashed}
    assert searched(es, prefix + "items")[hashed]["id"] == "k" * 513


def test_the_same_key_in_two_targets_is_two_documents_and_truncates_stay_in_their_target(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    sink = make_sink()
    batch = [
        change(1, 10, {"v": "a"}, target="a"),
        change(1, 2, {"v": "b"}, target="b"),
        change(0, 5, op=Op.TRUNCATE, target="a"),
        change(0, 4, op=Op.TRUNCATE, target="a"),  # older: the newest truncate counts
    ]
    before = counted("a")
    write_all(sink, [batch])
    assert rows_of(searched(es, prefix + "a")) == {"1": {"id": 1, "v": "a"}}
    assert rows_of(searched(es, prefix + "b")) == {"1": {"id": 1, "v": "b"}}
    meta = es.get(index=prefix + "fanout.meta", id="a")["_source"]
    assert meta["truncate_version"] == 5
    assert not es.exists(index=prefix + "fanout.meta", id="b")
    assert counted_since(before, "a") == (3, 0)  # one upsert and both truncates


def test_refresh_wait_for_makes_writes_searchable_when_write_returns(
    make_sink: SinkFactory, es: Elasticsearch, prefix: str
) -> None:
    sink = make_sink(refresh="wait_for")
    write_all(sink, [[change(1, 1), change(2, 1), change(2, 2, op=Op.DELETE)]])
    hits = es.search(index=prefix + "items")["hits"]["hits"]  # no explicit refresh
    assert [hit["_id"] for hit in hits] == ["1"]
