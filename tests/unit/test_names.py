"""Target names: two source tables on one target, names a store derives, and their collisions."""

from __future__ import annotations

import re

import pytest

from fanout.errors import ConfigError, MappingError
from fanout.events import ChangeEvent, Op, Origin
from fanout.runtime.routing import Router
from fanout.settings import RoutingSettings, TableRoute
from sinks.base.names import NameClaims, NameRules


def event(table: str) -> ChangeEvent:
    return ChangeEvent(Op.UPSERT, table, {"id": 1}, {"id": 1}, 1, None, Origin("t", 0, 0))


def test_two_source_tables_on_one_target_stop_with_both_named() -> None:
    router = Router(RoutingSettings(), "postgres")
    first = router.route(event("public.orders"))
    assert first is not None and first.target == "orders"
    with pytest.raises(ConfigError) as raised:
        router.route(event("archive.orders"))
    message = str(raised.value)
    assert "public.orders" in message and "archive.orders" in message
    assert "'orders'" in message and "routing.allow_merge" in message
    with pytest.raises(ConfigError):  # every time, not only once
        router.route(event("archive.orders"))
    assert router.route(event("public.orders")) is not None  # the first keeps its target


def test_two_tables_the_settings_name_on_one_target_fail_at_start() -> None:
    tables = {"archive.orders": TableRoute(drop=["note"])}
    with pytest.raises(ConfigError, match=r"archive\.orders and public\.orders"):
        Router(RoutingSettings(include=["public.orders", "archive.*"], tables=tables))
    Router(RoutingSettings(include=["public.orders", "archive.*"]))  # a glob: at first sight
    Router(RoutingSettings(tables=tables, exclude=["archive.*"], include=["public.orders"]))


def test_a_merge_configured_on_purpose_is_taken() -> None:
    allowed = Router(RoutingSettings(allow_merge=["orders"]))
    assert allowed.route(event("public.orders")) is not None
    routed = allowed.route(event("archive.orders"))
    assert routed is not None and routed.target == "orders"

    both = {t: TableRoute(target="orders") for t in ("public.orders", "archive.orders")}
    explicit = Router(RoutingSettings(tables=both))
    assert explicit.route(event("public.orders")) is not None
    assert explicit.route(event("archive.orders")) is not None


def test_one_explicit_target_does_not_make_a_merge_on_purpose() -> None:
    tables = {"archive.orders": TableRoute(target="orders")}
    router = Router(RoutingSettings(tables=tables))  # archive.orders takes "orders" at start
    with pytest.raises(ConfigError, match=r"archive\.orders and public\.orders"):
        router.route(event("public.orders"))


def test_excluded_tables_and_distinct_targets_never_collide() -> None:
    router = Router(RoutingSettings(exclude=["archive.*"]))
    assert router.route(event("public.orders")) is not None
    assert router.route(event("archive.orders")) is None
    schema_kept = Router(RoutingSettings(target_format="{schema}_{table}"))
    assert schema_kept.route(event("public.orders")) is not None
    assert schema_kept.route(event("archive.orders")) is not None


def test_derived_names_are_deterministic_and_checked() -> None:
    rules = NameRules(
        "store index",
        max_bytes=20,
        invalid=re.compile(r"[ *]"),
        lowercase=True,
        invalid_leading=("_", "-"),
    )
    assert rules.derive("ok") == "ok"
    assert rules.derive("_My Table*") == "my_table_"
    long = rules.derive("x" * 30)
    assert len(long) == 20 and long == rules.derive("x" * 30) != rules.derive("x" * 31)
    with pytest.raises(MappingError, match="empty name"):
        rules.derive("__")


def test_two_targets_claiming_one_name_are_a_configuration_error() -> None:
    claims = NameClaims("elasticsearch")
    claims.claim("orders", "Orders", "public.Orders")
    claims.claim("orders", "Orders", "public.Orders")  # the same target again is fine
    with pytest.raises(ConfigError) as raised:
        claims.claim("orders", "orders", "public.orders")
    assert "public.Orders" in str(raised.value) and "public.orders" in str(raised.value)
