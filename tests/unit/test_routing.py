import dataclasses

import pytest

from fanout.errors import MappingError
from fanout.events import ChangeEvent, Column, Op, Origin
from fanout.runtime.metrics import KEYLESS_SKIPPED
from fanout.runtime.routing import Router
from fanout.settings import ClickHouseSettings, PostgresSettings, RoutingSettings, TableRoute


def event(table: str = "inventory.customers") -> ChangeEvent:
    return ChangeEvent(
        op=Op.UPSERT,
        table=table,
        key={"id": 1},
        row={"id": 1, "email": "a@b.c", "ssn": "123", "name": "Ann"},
        version=10,
        source_ts_ms=None,
        origin=Origin("t", 0, 0),
        columns=(Column("id", "int64", False), Column("email", "string"), Column("ssn", "string")),
    )


def test_default_target_is_the_table_name_without_schema() -> None:
    routed = Router(RoutingSettings()).route(event())
    assert routed is not None and routed.target == "customers"


def test_an_event_routed_as_is_keeps_everything_but_its_target() -> None:
    original = event()
    routed = Router(RoutingSettings()).route(original)
    assert routed == dataclasses.replace(original, target="customers")
    assert original.target == ""


def test_target_format_can_keep_the_schema() -> None:
    routed = Router(RoutingSettings(target_format="{schema}_{table}")).route(event())
    assert routed is not None and routed.target == "inventory_customers"


def test_include_and_exclude_globs() -> None:
    router = Router(RoutingSettings(include=["inventory.*"], exclude=["*.audit_*"]))
    assert router.route(event("inventory.customers")) is not None
    assert router.route(event("inventory.audit_log")) is None
    assert router.route(event("billing.invoices")) is None


def test_drop_and_rename_apply_to_row_and_columns() -> None:
    route = TableRoute(target="people", drop=["ssn"], rename={"email": "email_address"})
    routed = Router(RoutingSettings(tables={"inventory.customers": route})).route(event())
    assert routed is not None
    assert routed.target == "people"
    assert routed.row == {"id": 1, "email_address": "a@b.c", "name": "Ann"}
    assert [c.name for c in routed.columns] == ["id", "email_address"]


def test_renaming_a_key_column_renames_the_key() -> None:
    route = TableRoute(rename={"id": "customer_id"})
    routed = Router(RoutingSettings(tables={"inventory.customers": route})).route(event())
    assert routed is not None and routed.key == {"customer_id": 1}


def test_dropping_a_key_column_is_a_mapping_error() -> None:
    route = TableRoute(drop=["id"])
    with pytest.raises(MappingError, match="primary-key"):
        Router(RoutingSettings(tables={"inventory.customers": route})).route(event())


def test_unknown_placeholder_in_target_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        RoutingSettings(target_format="{database}_{table}")


def keyless(op: Op = Op.UPSERT, table: str = "logs.events") -> ChangeEvent:
    row = {"n": 7, "note": "hi"} if op is Op.UPSERT else None
    return ChangeEvent(op, table, {}, row, 42, None, Origin("t", 0, 0), (Column("n", "int32"),))


def test_rows_without_a_key_are_skipped_and_counted_by_default() -> None:
    skipped = KEYLESS_SKIPPED.labels("pg", "logs.events")
    before = skipped._value.get()
    router = Router(PostgresSettings().routing, "pg")
    assert router.route(keyless()) is None and router.route(keyless(Op.DELETE)) is None
    assert skipped._value.get() == before + 2


def test_appended_rows_are_keyed_by_their_source_position() -> None:
    routed = Router(ClickHouseSettings().routing, "ch").route(keyless())
    assert routed is not None
    assert routed.key == {"_fanout_position": 42}
    assert routed.row == {"n": 7, "note": "hi", "_fanout_position": 42}
    assert routed.columns[-1] == Column("_fanout_position", "int64", optional=False)
    # A delete cannot name the row it removed: skipped, even when appending.
    assert Router(ClickHouseSettings().routing, "ch").route(keyless(Op.DELETE)) is None


def test_the_keyless_policy_is_set_per_table_and_excluded_tables_are_not_counted() -> None:
    routing = RoutingSettings(
        keyless="skip",
        exclude=["audit.*"],
        tables={"logs.events": TableRoute(keyless="append")},
    )
    router = Router(routing, "pg")
    assert router.route(keyless()) is not None
    counter = KEYLESS_SKIPPED.labels("pg", "audit.trail")
    before = counter._value.get()
    assert router.route(keyless(table="audit.trail")) is None
    assert counter._value.get() == before
