"""DLQ entries as `fanout dlq ls/show` read them: the headers the runtime DLQ writes, filters."""

import json

import pytest

from fanout.errors import MappingError
from fanout.events import Failure, Origin
from fanout.ops.dlq import (
    DlqEntry,
    Filters,
    Selected,
    is_replayed,
    parse_ref,
    render_detail,
    render_table,
)
from fanout.ops.replay import EntryOutcome, ReplaySummary
from fanout.runtime.dlq import dlq_headers

VALUE = b'{"payload": {"op": "c", "after": {"id": 7}}}'


def entry(offset: int = 3, attempts: int = 1, headers: tuple = (), **origin: object) -> DlqEntry:
    source = Origin(
        topic=str(origin.get("topic", "dbserver1.inventory.customers")),
        partition=2,
        offset=41,
        timestamp_ms=1738288800000,
        key=b'{"id": 7}',
        value=VALUE,
        headers=headers,
    )
    failure = Failure(source, "write", MappingError("column age: 'x' is not an int32 " * 5))
    return DlqEntry(
        0, offset, source.key, source.value, tuple(dlq_headers(failure, "postgres", attempts))
    )


def test_an_entry_reads_back_what_the_dlq_wrote() -> None:
    e = entry()
    assert e.ref == "0:3"
    assert (e.stage, e.error_class, e.attempts) == ("write", "MappingError", 1)
    assert e.error_message.startswith("column age")
    origin = e.origin()
    assert (origin.topic, origin.partition, origin.offset) == (
        "dbserver1.inventory.customers",
        2,
        41,
    )
    assert origin.timestamp_ms == 1738288800000
    assert (origin.key, origin.value) == (b'{"id": 7}', VALUE)
    assert e.failed_at_ms is not None


def test_replaying_a_replayed_record_raises_its_attempts() -> None:
    first = entry(attempts=3)
    again = Failure(first.origin(), "write", MappingError("still bad"))
    headers = dict(dlq_headers(again, "postgres", 2))
    assert headers["fanout.attempts"] == b"5"
    assert headers["fanout.origin.topic"] == b"dbserver1.inventory.customers"


def test_summary_json_shape() -> None:
    summary = entry().summary("inventory.customers", replayed=False)
    assert set(summary) == {
        "entry",
        "partition",
        "offset",
        "failed_at",
        "failed_at_ms",
        "stage",
        "error_class",
        "error",
        "attempts",
        "table",
        "origin",
        "replayed",
        "truncated",
    }
    assert summary["origin"] == {
        "topic": "dbserver1.inventory.customers",
        "partition": 2,
        "offset": 41,
        "timestamp": "2025-01-31T02:00:00.000Z",
    }
    assert summary["failed_at"].endswith("Z")
    json.dumps(summary)


def test_detail_pretty_prints_json_key_and_value() -> None:
    e = entry()
    detail = e.detail("inventory.customers", replayed=True)
    assert detail["key"] == {"id": 7}
    assert detail["value"]["payload"]["after"] == {"id": 7}
    assert detail["headers"]["fanout.sink"] == "postgres"
    text = render_detail(Selected(e, "inventory.customers", True))
    assert '"after": {' in text and "fanout.error.class: MappingError" in text


def test_filters_combine() -> None:
    e = entry()
    at = e.failed_at_ms or 0
    assert Filters().matches(e, None, False)
    assert Filters(error_classes=("MappingError",)).matches(e, None, False)
    assert not Filters(error_classes=("DecodeError",)).matches(e, None, False)
    assert Filters(tables=("inventory.*",)).matches(e, "inventory.customers", False)
    assert not Filters(tables=("inventory.*",)).matches(e, None, False)  # undecodable
    assert Filters(since_ms=at, until_ms=at + 1).matches(e, None, False)
    assert not Filters(since_ms=at + 1).matches(e, None, False)
    assert not Filters(until_ms=at).matches(e, None, False)
    assert not Filters(pending_only=True).matches(e, None, True)
    assert Filters(entries=frozenset({(0, 3)})).matches(e, None, False)
    assert not Filters(entries=frozenset({(0, 4)})).matches(e, None, False)
    assert not Filters(stages=("decode",)).matches(e, None, False)


def test_replayed_only_when_the_ledger_names_the_same_failure() -> None:
    e = entry()
    assert is_replayed(e, {"0:3": e.failed_at_ms})
    assert not is_replayed(e, {"0:3": 1})  # a recreated DLQ topic reuses offsets
    assert not is_replayed(e, {})


def test_entry_refs() -> None:
    assert parse_ref("3:1200") == (3, 1200)
    assert parse_ref("42") == (0, 42)
    with pytest.raises(ValueError, match="partition"):
        parse_ref("a:b")


def test_table_truncates_long_messages() -> None:
    text = render_table([Selected(entry(), "inventory.customers", False)])
    header, row = text.splitlines()
    assert header.split()[:3] == ["ENTRY", "FAILED", "AT"]
    assert "0:3" in row and "inventory.customers" in row and row.endswith("…")
    assert "dbserver1.inventory.customers[2]@41" in row


def test_replay_summary_counts() -> None:
    summary = ReplaySummary(dry_run=False, already_replayed=4)
    summary.outcomes += [
        EntryOutcome("0:1", "written"),
        EntryOutcome("0:2", "failed", "write", "MappingError", "bad"),
        EntryOutcome("0:3", "skipped"),
        EntryOutcome("0:4", "unavailable", "fetch", "OriginalUnavailable", "gone"),
    ]
    assert summary.as_json() == {
        "dry_run": False,
        "selected": 4,
        "written": 1,
        "failed": 1,
        "skipped": 1,
        "unavailable": 1,
        "already_replayed": 4,
        "interrupted": False,
        "entries": [
            {"entry": "0:1", "outcome": "written"},
            {
                "entry": "0:2",
                "outcome": "failed",
                "stage": "write",
                "error_class": "MappingError",
                "error": "bad",
            },
            {"entry": "0:3", "outcome": "skipped"},
            {
                "entry": "0:4",
                "outcome": "unavailable",
                "stage": "fetch",
                "error_class": "OriginalUnavailable",
                "error": "gone",
            },
        ],
    }
    dry = ReplaySummary(dry_run=True, outcomes=[EntryOutcome("0:1", "would_write")])
    assert dry.as_json()["written"] == 1


def deep(levels: int) -> bytes:
    return b'{"a": ' * levels + b"1" + b"}" * levels


@pytest.mark.parametrize("levels", [100, 5_000, 200_000])
def test_show_cuts_deep_nesting_and_says_so(levels: int) -> None:
    e = DlqEntry(0, 9, b'{"id": 7}', deep(levels), entry().headers)
    detail = e.detail(None, replayed=False)
    text = render_detail(Selected(e, None, False))  # no RecursionError on the way
    json.dumps(detail)
    assert "note: JSON nested" in text
    if levels == 100:  # parsed: 32 levels shown, the rest cut
        assert detail["notes"]["value"].startswith("JSON nested deeper than 32 levels")
        shown = detail["value"]
        for _ in range(32):
            shown = shown["a"]
        assert shown == "… (object cut)"
    else:  # too deep for the parser: the start of the text
        assert detail["notes"]["value"].startswith("JSON nested too deep to parse")
        assert detail["value"] == deep(levels).decode()[:4000]


def test_a_truncated_entry_says_so_and_where_the_original_is() -> None:
    e = entry()
    headers = (
        *e.headers,
        ("fanout.truncated", b"true"),
        ("fanout.original.key_bytes", b"9"),
        ("fanout.original.value_bytes", b"2000000"),
    )
    cut = DlqEntry(0, 4, e.key, b'{"payload": {"op": "c", "aft', headers)
    assert cut.truncated and not e.truncated
    detail = cut.detail(None, replayed=False)
    assert detail["truncated"] and detail["original"] == {"key_bytes": 9, "value_bytes": 2000000}
    assert detail["value"] == '{"payload": {"op": "c", "aft'  # cut JSON: shown as text
    text = render_detail(Selected(cut, None, False))
    assert (
        "note: stored truncated to the DLQ topic's size limit (the original key had 9 bytes,"
        " the value 2000000); the whole record is at dbserver1.inventory.customers[2]@41"
    ) in text


def test_a_truncated_entry_replayed_and_failing_again_stays_marked_truncated() -> None:
    marks = (("fanout.truncated", b"true"), ("fanout.original.value_bytes", b"2000000"))
    stored = entry(headers=marks)
    again = Failure(stored.origin(), "decode", MappingError("value is not valid JSON"))
    headers = dict(dlq_headers(again, "postgres", 1))
    assert headers["fanout.truncated"] == b"true"
    assert headers["fanout.original.value_bytes"] == b"2000000"
    assert headers["fanout.error.message"] == b"value is not valid JSON"  # ours, not the old
