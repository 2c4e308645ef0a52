"""`fanout offsets reset`: refused while the sink's group has members, applied once it stops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.ops_support import fanout, write_config
from tests.integration.runtime_support import Pipeline, new_pipeline
from tests.support.debezium import generate_stream, produce_stream
from tests.support.pipeline import (
    committed_offsets,
    create_topic,
    end_offsets,
    wait_caught_up,
    wait_for,
)


@pytest.fixture
def line(pg_conninfo: dict[str, Any], kafka_bootstrap: str, tmp_path: Path) -> Pipeline:
    pipeline = new_pipeline(pg_conninfo, tmp_path)
    create_topic(pipeline.topic, partitions=3)
    produce_stream(pipeline.topic, list(generate_stream(300, n_keys=40, seed=4)))
    return pipeline


def reset(config: Path, *args: str) -> Any:
    return fanout(config, "offsets", "reset", "--sink", "postgres", *args)


def test_reset_is_refused_while_the_sink_runs_and_applied_after_it_stops(
    line: Pipeline, tmp_path: Path
) -> None:
    config = write_config(tmp_path, line.config())
    worker = line.worker()
    try:
        wait_caught_up(line.group, [line.topic])
        refused = reset(config, "--to", "earliest", "--yes")
        assert refused.code == 3, refused
        assert "active member" in refused.stderr and line.group in refused.stderr
        assert committed_offsets(line.group, [line.topic]) == end_offsets([line.topic])
    finally:
        assert worker.stop() == 0

    # The consumer has left; the group is empty once the broker has seen it go.
    applied = wait_for(
        lambda: (r := reset(config, "--to", "earliest", "--yes", "--json")).code == 0 and r,
        60,
        "the reset to be accepted",
        interval_s=1,
    )
    plan = applied.json()
    assert plan["applied"] is True and plan["group"] == line.group
    assert {p["new"] for p in plan["partitions"]} == {0}
    assert committed_offsets(line.group, [line.topic]) == {
        tp: 0 for tp in end_offsets([line.topic])
    }


def test_dry_run_and_no_confirmation_change_nothing(line: Pipeline, tmp_path: Path) -> None:
    config = write_config(tmp_path, line.config())
    before = committed_offsets(line.group, [line.topic])

    dry = reset(config, "--to", "latest", "--dry-run", "--json")
    assert dry.code == 0, dry
    assert dry.json()["applied"] is False
    assert [p["new"] for p in dry.json()["partitions"]] == list(end_offsets([line.topic]).values())

    unconfirmed = reset(config, "--to", "latest")  # not a terminal, no --yes
    assert unconfirmed.code == 2 and "--yes" in unconfirmed.stderr
    assert committed_offsets(line.group, [line.topic]) == before


def test_reset_to_latest_and_to_a_time(line: Pipeline, tmp_path: Path) -> None:
    config = write_config(tmp_path, line.config())
    ends = end_offsets([line.topic])

    latest = reset(config, "--to", "latest", "--yes")
    assert latest.code == 0, latest
    assert "applied" in latest.stdout
    assert committed_offsets(line.group, [line.topic]) == ends

    back = reset(config, "--to", "2000-01-01T00:00:00Z", "--yes")  # before every record
    assert back.code == 0, back
    assert set(committed_offsets(line.group, [line.topic]).values()) == {0}

    future = reset(config, "--to", "2999-01-01", "--yes")  # after every record: the end
    assert future.code == 0, future
    assert committed_offsets(line.group, [line.topic]) == ends
