"""Backfill naming, the bounds kept in commit metadata, progress arithmetic, --tables."""

import pytest

from fanout.errors import ConfigError
from fanout.events import ChangeEvent, Op, Origin
from fanout.ops.backfill import (
    BackfillRequest,
    Mark,
    Plan,
    TablesRouter,
    backfill_group,
    backfill_groups,
    is_backfill_group,
    parse_mark,
    resumed_plan,
)
from fanout.settings import KafkaSettings, RoutingSettings


def test_default_id_is_stable_for_the_same_arguments_and_differs_otherwise() -> None:
    a = BackfillRequest("postgres", "earliest", ("inventory.*", "billing.*"))
    b = BackfillRequest("postgres", "earliest", ("billing.*", "inventory.*"))
    assert a.id == b.id and len(a.id) == 10
    assert BackfillRequest("postgres", "2025-01-01").id != a.id
    assert BackfillRequest("clickhouse", "earliest", a.tables).id != a.id
    assert BackfillRequest("postgres", backfill_id="initial-load").id == "initial-load"


def test_bad_ids_and_times_are_usage_errors() -> None:
    with pytest.raises(ConfigError, match="--id"):
        BackfillRequest("postgres", backfill_id="has space")
    with pytest.raises(ConfigError, match="not a time"):
        BackfillRequest("postgres", start="last tuesday")


def test_group_names() -> None:
    kafka = KafkaSettings(group_prefix="acme")
    group = backfill_group(kafka, "postgres", "r7")
    assert group == "acme-postgres-backfill-r7" and is_backfill_group(group)
    assert not is_backfill_group("acme-postgres")
    groups = ["acme-postgres", group, "acme-clickhouse-backfill-r7", "other-postgres-backfill-x"]
    assert backfill_groups(kafka, "postgres", groups) == [group]


def test_marks_round_trip_through_commit_metadata() -> None:
    mark = Mark(start=5, end=120, args="abc")
    assert parse_mark(mark.encode()) == mark
    assert len(mark.encode()) < 100  # well inside offset.metadata.max.bytes
    for foreign in ("", "hello", "{}", '{"fanout.backfill": 2}', "[1]"):
        assert parse_mark(foreign) is None


def test_plan_progress_counts_within_the_bounds() -> None:
    plan = Plan(
        "g",
        {("t", 0): Mark(0, 100, "x"), ("t", 1): Mark(10, 10, "x"), ("t", 2): Mark(50, 80, "x")},
        resumed=False,
    )
    assert plan.total == 130
    assert plan.done({}) == 0
    # committed beyond the end counts as the end; below the start as the start
    assert plan.done({("t", 0): 150, ("t", 2): 20}) == 100
    assert plan.unfinished({("t", 0): 100}) == [("t", 2)]
    assert plan.unfinished({("t", 0): 100, ("t", 2): 80}) == []
    assert plan.metadata("t", 2) == Mark(50, 80, "x").encode()
    assert plan.metadata("t", 9) is None


def event(table: str) -> ChangeEvent:
    return ChangeEvent(Op.UPSERT, table, {"id": 1}, {"id": 1}, 1, None, Origin("t", 0, 0))


def test_tables_narrow_the_sinks_routing_never_widen_it() -> None:
    router = TablesRouter(RoutingSettings(include=["inventory.*"]), ["*.customers", "billing.*"])
    assert router.route(event("inventory.customers")) is not None
    assert router.route(event("inventory.orders")) is None  # not in --tables
    assert router.route(event("billing.invoices")) is None  # not taken by the sink at all


def test_a_resumed_backfill_keeps_its_marked_partitions_and_refuses_other_arguments() -> None:
    request = BackfillRequest("postgres", backfill_id="b1")
    mark = Mark(0, 50, request.fingerprint)
    # a partition added to the topic since the start has no mark: it is not part of the run
    plan = resumed_plan("g", {("t", 0): mark.encode(), ("t", 1): ""}, request)
    assert plan.resumed and plan.marks == {("t", 0): mark}
    other = BackfillRequest("postgres", start="2025-01-01", backfill_id="b1")
    with pytest.raises(ConfigError, match="other arguments"):
        resumed_plan("g", {("t", 0): mark.encode()}, other)
    with pytest.raises(ConfigError, match="not a fanout backfill"):
        resumed_plan("g", {("t", 0): ""}, request)
