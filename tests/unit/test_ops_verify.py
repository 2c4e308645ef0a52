"""verify's pure parts: range hashes narrowed to the keys that differ, the canonical value
forms that make a sink's copy equal to its source row, table choice and routing, the ``source:``
settings section."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from fanout.errors import ConfigError
from fanout.ops.verify.canonical import canonical, row_digest
from fanout.ops.verify.plan import TablePlan, choose_tables, route_for, tables_of_topics
from fanout.ops.verify.ranges import narrow, range_hash
from fanout.ops.verify.source import SourceColumn, SourceTable
from fanout.redact import masked, secret_values
from fanout.settings import RoutingSettings, load_settings


def side(rows: dict[int, str]) -> list[tuple[tuple[int], int]]:
    return sorted(((k,), row_digest((k,), [v])) for k, v in rows.items())


# --- ranges ---------------------------------------------------------------------------------


def test_equal_ranges_are_settled_by_one_hash_comparison() -> None:
    rows = {i: f"v{i}" for i in range(1000)}
    diff = narrow(side(rows), side(rows))
    assert diff.equal and diff.ranges_compared == 1


def test_narrowing_finds_each_missing_extra_and_different_key() -> None:
    source = {i: f"v{i}" for i in range(1000)}
    target = dict(source)
    del target[17]
    target[5000] = "added"
    target[600] = "changed"
    diff = narrow(side(source), side(target))
    assert (diff.missing, diff.extra, diff.different) == ([(17,)], [(5000,)], [(600,)])


def test_narrowing_compares_far_fewer_ranges_than_rows_for_a_few_differences() -> None:
    source = {i: f"v{i}" for i in range(4096)}
    target = {**source, 100: "x"}
    diff = narrow(side(source), side(target))
    assert diff.different == [(100,)]
    assert diff.ranges_compared <= 2 * 13  # two halves per level, log2(4096) levels


def test_a_range_hash_does_not_depend_on_row_order() -> None:
    entries = side({1: "a", 2: "b", 3: "c"})
    assert range_hash(entries) == range_hash(list(reversed(entries)))


def test_every_difference_in_an_empty_side_is_found() -> None:
    diff = narrow(side({1: "a", 2: "b"}), [])
    assert diff.missing == [(1,), (2,)]
    assert narrow([], side({3: "c"})).extra == [(3,)]


# --- canonical forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "source", "sink"),
    [
        ("numeric", Decimal("1.50"), "1.5"),  # Elasticsearch: text; Debezium drops the zero
        ("numeric", Decimal("1E+3"), Decimal("1000.000")),  # ClickHouse Decimal(p, s)
        ("float4", 1.100000023841858, 1.1),  # a real, carried as the shortest float32 text
        ("float8", 1 / 3, Decimal(repr(1 / 3))),  # Elasticsearch parsed exactly
        ("json", '{"b": 1, "a": [1.10, null]}', '{"a":[1.1,null],"b":1}'),  # jsonb sorts keys
        ("json", "1e2", "100"),
        ("date", dt.date(2024, 1, 2), "2024-01-02"),
        ("time", dt.time(1, 2, 3), "01:02:03.000000"),  # ClickHouse String
        (
            "timestamptz",
            dt.datetime(2024, 1, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2024-01-01T07:00:00+00:00",
        ),
        ("timestamp", dt.datetime(2024, 1, 1, 7), dt.datetime(2024, 1, 1, 7, tzinfo=dt.UTC)),
        ("uuid", uuid.UUID(int=5), "00000000-0000-0000-0000-000000000005"),
        ("bytes", b"\x00\xff", "AP8="),  # Elasticsearch: base64
        ("bool", True, True),
    ],
)
def test_a_value_and_its_copy_in_a_sink_have_one_canonical_form(
    kind: str, source: object, sink: object
) -> None:
    assert canonical(kind, source) == canonical(kind, sink)


@pytest.mark.parametrize(
    ("kind", "one", "other"),
    [
        ("json", "null", None),  # a JSON null is not SQL NULL
        ("json", '"5"', "5"),  # a JSON string is not a number
        ("json", f'{{"n": 1.{"0" * 20}1}}', '{"n": 1.0}'),  # every digit counts
        ("numeric", Decimal("1.5"), Decimal("1.50001")),
        ("text", "", None),
        ("float8", 0.1, 0.1000000001),
    ],
)
def test_different_values_stay_different(kind: str, one: object, other: object) -> None:
    assert canonical(kind, one) != canonical(kind, other)


def test_parsed_json_from_elasticsearch_equals_the_source_text() -> None:
    text = '{"n": 1234567890.1234567890123456789, "s": "5", "z": null}'
    parsed = {"z": None, "s": "5", "n": Decimal("1234567890.1234567890123456789")}
    assert canonical("json", text) == canonical("json", parsed, parsed_json=True)
    assert canonical("json", '"5"') == canonical("json", "5", parsed_json=True)


def test_arrays_compare_element_by_element() -> None:
    assert canonical("int", [1, None], is_array=True) == canonical("int", (1, None), True)
    assert canonical("text", ["a"], is_array=True) != canonical("text", ["a", None], True)


# --- tables and routing ---------------------------------------------------------------------


def test_tables_come_from_the_topics_and_routing() -> None:
    captured = tables_of_topics(["dbz.public.orders", "dbz.public.items", "dbz.inv.stock"])
    assert captured == ["inv.stock", "public.items", "public.orders"]
    routing = RoutingSettings(exclude=["public.items"])
    assert choose_tables(captured, [], routing) == ["inv.stock", "public.orders"]
    assert choose_tables(captured, ["public.*"], routing) == ["public.orders"]
    assert choose_tables(captured, ["other"], routing) == ["public.other"]
    with pytest.raises(ConfigError, match="no table to compare"):
        choose_tables(captured, ["public.items"], routing)


def test_a_plan_maps_renamed_columns_and_leaves_dropped_ones_out() -> None:
    routing = RoutingSettings.model_validate(
        {"tables": {"public.t": {"target": "tt", "rename": {"a": "b"}, "drop": ["c"]}}}
    )
    route = route_for(routing, "public.t")
    assert route is not None and route.target == "tt"
    columns = tuple(SourceColumn(n, "int") for n in ("a", "id", "c"))
    plan = TablePlan.of(SourceTable("public", "t", columns, ("id",)), route)
    assert plan.target_columns == ("id", "b") and plan.target_key == ("id",)


# --- settings -------------------------------------------------------------------------------


def test_the_source_password_comes_from_a_file_and_is_never_printed(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("source-Passw0rd-value\n")
    settings = load_settings(
        source={"host": "db", "dbname": "app", "password_file": str(secret), "signal_table": "a.b"}
    )
    assert settings.source is not None
    assert settings.source.conninfo()["password"] == "source-Passw0rd-value"
    shown = json.dumps(masked(settings.model_dump(mode="json"), secrets=secret_values(settings)))
    assert "source-Passw0rd-value" not in shown


def test_a_bad_source_section_fails_at_start_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"source\.signal_table"):
        load_settings(source={"signal_table": "no_schema"})
    with pytest.raises(ConfigError, match=r"source\.sslmode"):
        load_settings(source={"sslmode": "sometimes"})


# --- metrics --------------------------------------------------------------------------------


def test_a_verify_result_becomes_metrics_per_table_and_kind() -> None:
    from prometheus_client import generate_latest

    from fanout.ops.verify.compare import TableResult
    from fanout.ops.verify.metrics import registry_of
    from fanout.ops.verify.report import VerifyReport

    table = TableResult("public.t", "t", source_rows=10, target_rows=9)
    table.counts["missing"] = 1
    report = VerifyReport("postgres", {"public.t": ("id",)}, settled=True, tables=[table])
    text = generate_latest(registry_of(report, 2.5, now_s=1000.0)).decode()
    for line in (
        "fanout_verify_equal 0.0",
        'fanout_verify_rows{side="target",table="public.t"} 9.0',
        'fanout_verify_differences{kind="missing",table="public.t"} 1.0',
        'fanout_verify_differences{kind="extra",table="public.t"} 0.0',
        "fanout_verify_duration_seconds 2.5",
        "fanout_verify_last_run_timestamp_seconds 1000.0",
    ):
        assert line in text.splitlines(), text
