"""The batch template every sink shares: grouping, validation, collapse, watermarks, counting.

The template is exercised through a minimal sink that keeps what it is asked to apply, so what
is tested is the template's own behaviour; each real sink's tests cover its hooks against the
real store.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import pytest

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Column, Failure, Op, Origin
from fanout.runtime.metrics import EVENTS_WRITTEN, STALE_SKIPPED
from sinks.base.batch import BatchSink, Failures, Prepared, TargetBatch
from sinks.base.collapse import collapse
from sinks.base.errors import ErrorClass, Verdict
from sinks.base.names import NameRules

KEY = ("id",)


def upsert(ident: Any, version: int, target: str = "t", **row: Any) -> ChangeEvent:
    return ChangeEvent(
        Op.UPSERT, "src.t", {"id": ident}, {"id": ident, **row}, version, None,
        Origin("x", 0, version), (), target,
    )  # fmt: skip


def delete(ident: Any, version: int, target: str = "t") -> ChangeEvent:
    return ChangeEvent(
        Op.DELETE, "src.t", {"id": ident}, None, version, None, Origin("x", 0, version), (), target
    )


def truncate(version: int, target: str = "t") -> ChangeEvent:
    return ChangeEvent(Op.TRUNCATE, "src.t", {}, None, version, None, Origin("x", 0, 0), (), target)


def newest_rows(events: list[ChangeEvent], payloads: list[Any] | None = None) -> dict[Any, Any]:
    collapsed = collapse(events, payloads or [True] * len(events), KEY)
    return {
        ident: (event.op, event.version, event.row)
        for ident, (event, _) in collapsed.newest.items()
    }


# --- collapse --------------------------------------------------------------------------------


def test_collapse_keeps_the_newest_version_per_key() -> None:
    rows = newest_rows([upsert(1, 5, name="new"), upsert(1, 4, name="old"), upsert(2, 1)])
    assert rows == {(1,): (Op.UPSERT, 5, {"id": 1, "name": "new"}), (2,): (Op.UPSERT, 1, {"id": 2})}


def test_collapse_ties_go_to_the_later_event() -> None:
    rows = newest_rows([upsert(1, 5, name="first"), upsert(1, 5, name="second")])
    assert rows[(1,)][2] == {"id": 1, "name": "second"}


def test_collapse_lets_a_newer_delete_win_over_an_upsert() -> None:
    assert newest_rows([upsert(1, 5), delete(1, 6)]) == {(1,): (Op.DELETE, 6, None)}


def test_an_event_a_sink_rejected_does_not_hide_an_older_valid_one() -> None:
    events = [upsert(1, 5, name="valid"), upsert(1, 6, name="bad")]
    assert newest_rows(events, [True, None])[(1,)][2] == {"id": 1, "name": "valid"}


def test_collapse_matches_keys_listed_in_another_column_order_and_counts_superseded() -> None:
    def line(order: tuple[str, str], version: int) -> ChangeEvent:
        key = {name: {"order_id": 7, "line_no": 1}[name] for name in order}
        return ChangeEvent(Op.UPSERT, "s.l", key, dict(key), version, None, Origin("x", 0, 0))

    events = [line(("order_id", "line_no"), 1), line(("line_no", "order_id"), 2)]
    collapsed = collapse(events, [True, True], ("order_id", "line_no"))
    assert list(collapsed.newest) == [(7, 1)] and collapsed.superseded == 1
    assert collapsed.newest[(7, 1)][0].version == 2


def test_collapse_rejects_a_key_of_other_columns_and_hashes_array_keys() -> None:
    other = ChangeEvent(Op.UPSERT, "s.t", {"code": 1}, {"code": 1}, 1, None, Origin("x", 0, 0))
    arrays = [upsert([1, 2], 1), upsert([1, 2], 2)]
    collapsed = collapse([other, *arrays], [True] * 3, KEY)
    assert [event for event, _ in collapsed.rejected] == [other]
    assert "do not match the target's key (id)" in str(collapsed.rejected[0][1])
    assert list(collapsed.newest) == [((1, 2),)] and collapsed.superseded == 1


# --- the template ----------------------------------------------------------------------------


class KeepingSink(BatchSink[bool, None]):
    """Applies nothing anywhere: keeps each batch it is handed; ``stored`` is what the store
    reports applied (a key it already holds newer is stale there)."""

    name: ClassVar[str] = "keeping"
    rules = NameRules(what="test table", max_chars=10)

    def __init__(self, watermarks: dict[str, int] | None = None, newer_in_store: int = 0) -> None:
        super().__init__()
        self.applied: list[TargetBatch[bool, None]] = []
        self.watermarks = watermarks or {}
        self.newer_in_store = newer_in_store
        self.reject_rows_named: str | None = None

    def check_target(self, target: str) -> str:
        return self.rules.check(target)

    def truncate_watermarks(self, targets: list[str]) -> dict[str, int]:
        return {t: v for t, v in self.watermarks.items() if t in targets}

    def prepare(
        self, target: str, changes: list[ChangeEvent], failures: Failures
    ) -> Prepared[bool, None]:
        payloads: list[bool | None] = []
        for event in changes:
            if self.reject_rows_named and (event.row or {}).get("name") == self.reject_rows_named:
                failures.reject(event, MappingError("the store cannot take this row"))
                payloads.append(None)
            else:
                payloads.append(True)
        return Prepared(None, payloads, KEY)

    def apply(self, batches: list[TargetBatch[bool, None]], failures: Failures) -> None:
        for batch in batches:
            self.applied.append(batch)
            applied = Counter(event.op for event, _ in batch.newest)
            applied[Op.UPSERT] -= min(self.newer_in_store, applied[Op.UPSERT])
            batch.report(applied)

    def classify(self, exc: BaseException) -> Verdict | None:
        if isinstance(exc, ConnectionError):
            return Verdict(ErrorClass.TRANSIENT, f"store away: {exc}")
        return None


def counted(target: str) -> tuple[float, float]:
    written = sum(EVENTS_WRITTEN.labels("keeping", target, op.value)._value.get() for op in Op)
    return written, STALE_SKIPPED.labels("keeping", target)._value.get()


def reasons(failures: list[Failure]) -> list[str]:
    return [str(failure.error) for failure in failures]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (upsert(None, 1), "key column 'id' is NULL"),
        (upsert({"a": 1}, 1), "key column 'id' is a JSON object"),
        (
            ChangeEvent(Op.UPSERT, "s.t", {}, {"a": 1}, 1, None, Origin("x", 0, 0), (), "t"),
            "the event has no key",
        ),
        (
            ChangeEvent(Op.UPSERT, "s.t", {"id": 1}, None, 1, None, Origin("x", 0, 0), (), "t"),
            "an upsert event without a row",
        ),
        (upsert(1, 2**63), "outside 0..2^63-1"),
        (upsert(1, -1), "outside 0..2^63-1"),
    ],
)
def test_events_no_sink_can_apply_fail_alone_with_their_reason(
    event: ChangeEvent, reason: str
) -> None:
    sink = KeepingSink()
    failures = sink.write([event, upsert(2, 1)])
    assert [f.event for f in failures] == [event] and failures[0].stage == "write"
    assert reason in reasons(failures)[0]
    assert [e.key for batch in sink.applied for e, _ in batch.newest] == [{"id": 2}]


def test_a_target_name_the_store_cannot_hold_fails_its_events_and_only_those() -> None:
    sink = KeepingSink()
    bad = [upsert(1, 1, target="much_too_long_a_name"), upsert(2, 1, target="much_too_long_a_name")]
    failures = sink.write([*bad, upsert(3, 1, target="fine")])
    assert [f.event for f in failures] == bad
    assert "invalid test table name 'much_too_long_a_name'" in reasons(failures)[0]
    assert [batch.target for batch in sink.applied] == ["fine"]


def test_a_sink_rejection_keeps_the_older_valid_event_of_the_key() -> None:
    sink = KeepingSink()
    sink.reject_rows_named = "bad"
    failures = sink.write([upsert(1, 1, name="good"), delete(1, 2), upsert(1, 3, name="bad")])
    assert reasons(failures) == ["the store cannot take this row"]
    (batch,) = sink.applied
    assert [(event.op, event.version) for event, _ in batch.newest] == [(Op.DELETE, 2)]


def test_events_older_than_a_truncate_are_stale_and_truncates_come_first() -> None:
    sink = KeepingSink(watermarks={"w": 10})
    events = [
        upsert(1, 5, target="w"),
        upsert(2, 12, target="w"),
        truncate(15, "w"),
        truncate(14, "w"),
        upsert(3, 16, target="w"),
    ]
    before = counted("w")
    sink.write(events)
    (batch,) = sink.applied
    assert batch.truncate_version == 15 and batch.truncates == 2
    assert [event.key["id"] for event, _ in batch.newest] == [3]
    written, stale = counted("w")
    assert (written - before[0], stale - before[1]) == (3, 2)  # 1 upsert + 2 truncates; 2 stale


def test_each_change_is_counted_once_written_or_stale() -> None:
    sink = KeepingSink(newer_in_store=1)
    events = [upsert(1, 1), upsert(1, 2), upsert(2, 1), delete(3, 4), upsert(4, 1)]
    before = counted("t")
    assert sink.write(events) == []
    written, stale = counted("t")
    # key 1: one superseded in the batch; key 2 or 4: one the store held newer.
    assert (written - before[0], stale - before[1]) == (3, 2)
    assert written - before[0] + stale - before[1] == len(events)


def test_driver_errors_are_raised_as_their_class_and_nothing_is_counted() -> None:
    class AwaySink(KeepingSink):
        def apply(self, batches: list[TargetBatch[bool, None]], failures: Failures) -> None:
            raise ConnectionError("refused")

    from fanout.errors import RetryableError

    before = counted("away")
    with pytest.raises(RetryableError, match="store away: refused"):
        AwaySink().write([upsert(1, 1, target="away")])
    assert counted("away") == before


# --- cases the Elasticsearch sink's own collapse was tested with ------------------------------


def test_collapse_of_a_mixed_batch_keeps_the_newest_per_key_and_counts_each_superseded() -> None:
    events = [
        upsert(1, 5, v="new"),
        upsert(1, 3, v="older, later in the batch"),
        upsert(2, 7, v="first"),
        upsert(2, 7, v="second"),
        delete(3, 4),
        upsert(3, 2, v="before the delete, later in the batch"),
    ]
    collapsed = collapse(events, [True] * len(events), KEY)
    assert {ident: (e.op, e.row) for ident, (e, _) in collapsed.newest.items()} == {
        (1,): (Op.UPSERT, {"id": 1, "v": "new"}),
        (2,): (Op.UPSERT, {"id": 2, "v": "second"}),
        (3,): (Op.DELETE, None),
    }
    assert collapsed.superseded == 3 and collapsed.rejected == []


def test_the_same_key_in_two_targets_is_kept_apart_and_the_newest_truncate_counts() -> None:
    sink = KeepingSink()
    events = [upsert(1, 10, "ta"), upsert(1, 2, "tb"), truncate(9, "ta"), truncate(4, "ta")]
    assert sink.write(events) == []
    by_target = {batch.target: batch for batch in sink.applied}
    assert sorted(by_target) == ["ta", "tb"]
    assert [e.version for e, _ in by_target["ta"].newest] == [10]
    assert [e.version for e, _ in by_target["tb"].newest] == [2]
    assert (by_target["ta"].truncate_version, by_target["ta"].truncates) == (9, 2)
    assert by_target["tb"].truncate is None


# --- per-column merge ------------------------------------------------------------------------

COLUMNS = (Column("id", "int32", False), Column("n", "int32"), Column("txt", "string"))


def declared(ident: int, version: int, **row: Any) -> ChangeEvent:
    """An upsert with a schema declaring id, n, txt; a column left out of ``row`` is one the
    decoder removed (Debezium's unavailable-value placeholder)."""
    return ChangeEvent(
        Op.UPSERT, "src.t", {"id": ident}, {"id": ident, **row}, version, None,
        Origin("x", 0, version), COLUMNS, "t",
    )  # fmt: skip


def applied_rows(events: list[ChangeEvent]) -> dict[Any, Any]:
    sink = KeepingSink()
    assert sink.write(events) == []
    return {event.key["id"]: event.row for batch in sink.applied for event, _ in batch.newest}


def test_a_column_the_newest_event_lacks_comes_from_an_older_event_of_the_key() -> None:
    rows = applied_rows(
        [
            declared(1, 1, n=1, txt="long text"),
            declared(2, 2, n=5, txt="other"),
            declared(1, 3, n=2),
        ]
    )
    assert rows == {1: {"id": 1, "n": 2, "txt": "long text"}, 2: {"id": 2, "n": 5, "txt": "other"}}


def test_a_null_is_a_value_and_a_delete_in_between_leaves_nothing_to_take() -> None:
    nulled = applied_rows([declared(1, 1, n=1, txt="x"), declared(1, 2, n=2, txt=None)])
    assert nulled[1] == {"id": 1, "n": 2, "txt": None}
    rows = applied_rows([declared(1, 1, n=1, txt="x"), delete(1, 2), declared(1, 3, n=3)])
    assert rows[1] == {"id": 1, "n": 3}  # the sink keeps what it stores (nothing, here)


def test_an_event_without_older_events_of_its_key_stays_partial() -> None:
    assert applied_rows([declared(7, 4, n=9)]) == {7: {"id": 7, "n": 9}}


# --- falling back when the store refuses a key's newest event in apply ----------------------


class RefusingSink(KeepingSink):
    """Refuses, while applying, every upsert whose row is named ``refuse`` (as Elasticsearch
    refuses a document its mapping cannot take); applies the rest."""

    def __init__(self, refuse: str = "bad", watermarks: dict[str, int] | None = None) -> None:
        super().__init__(watermarks)
        self.refuse = refuse

    def apply(self, batches: list[TargetBatch[bool, None]], failures: Failures) -> None:
        for batch in batches:
            self.applied.append(batch)
            applied: Counter[Op] = Counter()
            for event, _ in batch.newest:
                if (event.row or {}).get("name") == self.refuse:
                    failures.reject(event, MappingError("the store refused this document"))
                else:
                    applied[event.op] += 1
            batch.applied.update(applied)


def refused(failures: list[Failure]) -> list[ChangeEvent]:
    events = [failure.event for failure in failures]
    assert None not in events
    return [event for event in events if event is not None]


def offered(sink: KeepingSink) -> list[list[tuple[Op, int]]]:
    """What each apply round was given: (op, version) per event."""
    return [[(e.op, e.version) for e, _ in batch.newest] for batch in sink.applied]


def test_a_refused_newest_event_falls_back_to_the_delete_before_it() -> None:
    sink = RefusingSink()
    events = [upsert(1, 1, name="good"), delete(1, 2), upsert(1, 3, name="bad"), upsert(2, 1)]
    before = counted("t")
    failures = sink.write(events)
    assert [e.version for e in refused(failures)] == [3]
    assert reasons(failures) == ["the store refused this document"]
    # the delete is applied; the upsert before it stays superseded
    assert offered(sink) == [[(Op.UPSERT, 3), (Op.UPSERT, 1)], [(Op.DELETE, 2)]]
    written, stale = counted("t")
    assert (written - before[0], stale - before[1]) == (2, 1)  # + 1 failed = 4 events


def test_the_fallback_goes_on_until_the_store_takes_an_event_or_none_is_left() -> None:
    sink = RefusingSink()
    events = [
        upsert(1, 1, name="good"),
        upsert(1, 2, name="bad"),
        upsert(1, 3, name="bad"),
        upsert(2, 5, name="bad"),  # nothing older: it only fails
    ]
    before = counted("t")
    failures = sink.write(events)
    assert sorted(e.version for e in refused(failures)) == [2, 3, 5]
    assert offered(sink) == [[(Op.UPSERT, 3), (Op.UPSERT, 5)], [(Op.UPSERT, 2)], [(Op.UPSERT, 1)]]
    written, stale = counted("t")
    assert (written - before[0], stale - before[1]) == (1, 0)


def test_the_fallback_never_offers_an_event_older_than_a_truncate() -> None:
    sink = RefusingSink()
    events = [upsert(1, 1, target="tr"), truncate(2, "tr"), upsert(1, 3, name="bad", target="tr")]
    before = counted("tr")
    failures = sink.write(events)
    assert [e.version for e in refused(failures)] == [3]
    assert offered(sink) == [[(Op.UPSERT, 3)]]
    written, stale = counted("tr")
    assert (written - before[0], stale - before[1]) == (1, 1)  # the truncate; the old upsert


def test_equal_versions_fall_back_to_the_earlier_one_and_a_whole_batch_applies_once() -> None:
    sink = RefusingSink()
    failures = sink.write([upsert(1, 4, name="good"), upsert(1, 4, name="bad")])
    assert [e.row for e in refused(failures)] == [{"id": 1, "name": "bad"}]
    assert [[e.row for e, _ in batch.newest] for batch in sink.applied][1] == [
        {"id": 1, "name": "good"}
    ]
    whole = RefusingSink()
    assert whole.write([upsert(1, 1), upsert(1, 2)]) == [] and len(whole.applied) == 1
