"""Time arguments and the reset plan's JSON shape."""

import pytest

from fanout.errors import ConfigError
from fanout.ops.offsets import GroupInfo, Member, ResetPlan, ResetRow, iso_ms, parse_time


def test_iso_times_without_a_zone_are_utc() -> None:
    assert parse_time("2025-01-31T02:00:00Z") == 1738288800000
    assert parse_time("2025-01-31T02:00:00") == 1738288800000
    assert parse_time("2025-01-31T03:00:00+01:00") == 1738288800000
    assert parse_time("2025-01-31") == 1738281600000


def test_durations_count_back_from_now() -> None:
    now = 1_000_000.0
    assert parse_time("90s", now_s=now) == (now - 90) * 1000
    assert parse_time("15m", now_s=now) == (now - 900) * 1000
    assert parse_time("2h", now_s=now) == (now - 7200) * 1000
    assert parse_time("7d", now_s=now) == (now - 7 * 86400) * 1000


def test_a_bad_time_names_the_accepted_forms() -> None:
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_time("yesterday")


def test_iso_ms_round_trips() -> None:
    assert iso_ms(1738288800123) == "2025-01-31T02:00:00.123Z"
    assert iso_ms(None) is None
    assert parse_time(iso_ms(1738288800123) or "") == 1738288800123


def test_reset_plan_json_shape() -> None:
    plan = ResetPlan(
        "fanout-postgres", "earliest", (ResetRow("t", 0, None, 0), ResetRow("t", 1, 7, 3))
    )
    assert plan.as_json() == {
        "group": "fanout-postgres",
        "to": "earliest",
        "partitions": [
            {"topic": "t", "partition": 0, "current": None, "new": 0},
            {"topic": "t", "partition": 1, "current": 7, "new": 3},
        ],
    }


def test_group_owner_of_a_partition() -> None:
    member = Member("fanout", "/10.0.0.1", "m-1", (("t", 0), ("t", 2)))
    info = GroupInfo("g", "STABLE", (member,))
    assert info.active and info.owner_of(("t", 2)) is member and info.owner_of(("t", 1)) is None
    assert not GroupInfo("g", "EMPTY", ()).active
