"""A DLQ record too large for the topic is cut to fit, and says so (fanout/runtime/dlq.py)."""

from __future__ import annotations

from fanout.runtime.dlq import Record, fit, record_size

LIMIT = 100_000
OURS = [("fanout.error.stage", b"decode"), ("fanout.origin.offset", b"41")]


def headers(record: Record) -> dict[str, str | bytes | None]:
    return dict(record.headers)


def test_a_record_that_fits_is_sent_as_it_is() -> None:
    record = Record(b'{"id": 1}', b"x" * 90_000, [("trace", b"abc"), *OURS])
    assert fit(record, LIMIT) is record


def test_a_large_value_is_cut_and_the_record_says_what_it_was() -> None:
    record = Record(b'{"id": 1}', b"x" * 500_000, [("trace", b"abc"), *OURS])
    cut = fit(record, LIMIT)
    assert record_size(cut) < LIMIT
    assert cut.key == b'{"id": 1}'  # the key fits: kept whole
    assert cut.value is not None and set(cut.value) == {ord("x")}
    assert len(cut.value) > LIMIT * 0.9  # cut no more than it has to
    assert headers(cut) == {
        "trace": b"abc",
        **dict(OURS),
        "fanout.truncated": b"true",
        "fanout.original.key_bytes": b"9",
        "fanout.original.value_bytes": b"500000",
    }


def test_a_large_key_and_value_share_the_room() -> None:
    cut = fit(Record(b"k" * 300_000, b"v" * 300_000, list(OURS)), LIMIT)
    assert cut.key is not None and cut.value is not None
    assert record_size(cut) < LIMIT
    assert abs(len(cut.key) - len(cut.value)) < 100
    assert headers(cut)["fanout.original.key_bytes"] == b"300000"


def test_a_small_value_leaves_its_room_to_a_large_key() -> None:
    cut = fit(Record(b"k" * 300_000, b"{}", list(OURS)), LIMIT)
    assert cut.value == b"{}" and cut.key is not None and len(cut.key) > LIMIT * 0.9


def test_text_is_cut_between_characters() -> None:
    value = ("é" * 100_000).encode()  # two bytes each
    for limit in (LIMIT, LIMIT + 1, LIMIT + 2, LIMIT + 3):
        cut = fit(Record(None, value, list(OURS)), limit)
        assert cut.key is None and cut.value is not None
        assert cut.value.decode() == "é" * (len(cut.value) // 2)


def test_huge_source_headers_are_dropped_and_counted() -> None:
    record = Record(b"k", b"v", [("big", b"h" * 200_000), *OURS])
    cut = fit(record, LIMIT)
    assert record_size(cut) < LIMIT
    assert "big" not in headers(cut)
    assert headers(cut)["fanout.original.headers_bytes"] == str(200_000 + 3 + 10).encode()
    assert (cut.key, cut.value) == (b"k", b"v")
    assert headers(cut)["fanout.error.stage"] == b"decode"  # ours are kept
