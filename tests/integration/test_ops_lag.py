"""`fanout lag` against Kafka's own `kafka-consumer-groups --describe` on the same groups."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from fanout.ops.backfill import Mark
from fanout.ops.offsets import KafkaOffsets
from fanout.settings import KafkaSettings
from tests.integration.ops_support import fanout, write_config
from tests.integration.runtime_support import Pipeline, new_pipeline
from tests.support.debezium import generate_stream, produce_stream
from tests.support.pipeline import REPO, bootstrap, create_topic, produce, wait_caught_up

Row = dict[str, str]


def kafka_describe(*groups: str) -> dict[tuple[str, str, int], Row]:
    """Rows of `kafka-consumer-groups --describe`, keyed by (group, topic, partition)."""
    args = ["--bootstrap-server", bootstrap(), "--describe"]
    for group in groups:
        args += ["--group", group]
    done = subprocess.run(
        [str(REPO / "scripts" / "devstack"), "kafka-consumer-groups", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    rows: dict[tuple[str, str, int], Row] = {}
    columns: list[str] = []
    for line in done.stdout.splitlines():
        cells = line.split()
        if cells[:1] == ["GROUP"]:
            columns = cells
        elif columns and len(cells) == len(columns):
            row = dict(zip(columns, cells, strict=True))
            rows[(row["GROUP"], row["TOPIC"], int(row["PARTITION"]))] = row
    return rows


def fanout_lag(config: Path, *args: str) -> dict[str, Any]:
    result = fanout(config, "lag", "--json", *args)
    assert result.code == 0, result
    report: dict[str, Any] = result.json()
    return report


def as_rows(report: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {
        (group["group"], p["topic"], p["partition"]): p
        for group in report["groups"]
        for p in group["partitions"]
    }


def assert_agrees(
    ours: dict[tuple[str, str, int], dict[str, Any]], theirs: dict[tuple[str, str, int], Row]
) -> None:
    assert theirs, "kafka-consumer-groups listed nothing"
    for key, row in theirs.items():
        mine = ours[key]
        assert str(mine["committed"]) == row["CURRENT-OFFSET"], (key, mine, row)
        assert str(mine["end"]) == row["LOG-END-OFFSET"], (key, mine, row)
        assert str(mine["lag"]) == row["LAG"], (key, mine, row)
        if row["CLIENT-ID"] != "-":
            assert mine["consumer"] == f"{row['CLIENT-ID']}@{row['HOST']}", (key, mine, row)


@pytest.fixture
def line(pg_conninfo: dict[str, Any], kafka_bootstrap: str, tmp_path: Path) -> Pipeline:
    pipeline = new_pipeline(pg_conninfo, tmp_path)
    create_topic(pipeline.topic, partitions=4)
    return pipeline


def test_lag_of_a_stopped_group_part_way_matches_kafka(line: Pipeline, tmp_path: Path) -> None:
    records = [(f"k{i}".encode(), f'{{"n": {i}}}'.encode()) for i in range(200)]
    produce(line.topic, records)
    offsets = KafkaOffsets(KafkaSettings(bootstrap_servers=bootstrap()))
    ends = offsets.ends(offsets.partitions([line.topic]))
    # partition 0 part-way, 1 at the start, 2 at the end, 3 never committed
    offsets.alter(
        line.group,
        {
            (line.topic, 0): ends[(line.topic, 0)] // 2,
            (line.topic, 1): 0,
            (line.topic, 2): ends[(line.topic, 2)],
        },
    )
    backfill = f"{line.group}-backfill-b1"
    marks = {(line.topic, p): Mark(0, ends[(line.topic, p)], "x") for p in range(4)}
    offsets.alter(backfill, {tp: 1 for tp in marks}, {tp: m.encode() for tp, m in marks.items()})
    config = write_config(tmp_path, line.config())

    report = fanout_lag(config, "--sink", "postgres", "--backfills")

    assert_agrees(as_rows(report), kafka_describe(line.group, backfill))
    live, back = report["groups"]
    assert (live["group"], live["kind"], live["state"], live["members"]) == (
        line.group,
        "live",
        "EMPTY",
        0,
    )
    never = live["partitions"][3]
    assert never["committed"] is None and never["lag"] == never["end"]  # starts at earliest
    assert live["total_lag"] == sum(p["lag"] for p in live["partitions"]) > 0
    assert live["partitions"][2]["lag"] == 0 and live["partitions"][2]["oldest_unprocessed"] is None
    assert back["kind"] == "backfill" and [p["bound"] for p in back["partitions"]] == [
        ends[(line.topic, p)] for p in range(4)
    ]


def test_oldest_unprocessed_is_the_time_of_the_record_at_the_committed_offset(
    line: Pipeline, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap()})
    for i in range(10):
        producer.produce(line.topic, value=b"{}", partition=0, timestamp=1_700_000_000_000 + i)
    producer.flush(30)
    offsets = KafkaOffsets(KafkaSettings(bootstrap_servers=bootstrap()))
    offsets.alter(line.group, {(line.topic, 0): 4})

    report = fanout_lag(write_config(tmp_path, line.config()), "--sink", "postgres")

    (group,) = report["groups"]
    first = group["partitions"][0]
    assert (first["committed"], first["lag"]) == (4, 6)
    assert first["oldest_unprocessed_ms"] == 1_700_000_000_004
    assert first["oldest_unprocessed"] == "2023-11-14T22:13:20.004Z"
    assert group["oldest_unprocessed_ms"] == 1_700_000_000_004


def test_lag_of_a_running_sink_matches_kafka_and_names_its_consumer(
    line: Pipeline, tmp_path: Path, workers: list[Any]
) -> None:
    produce_stream(line.topic, list(generate_stream(400, n_keys=50, seed=3)))
    workers.append(line.worker())
    wait_caught_up(line.group, [line.topic])
    config = write_config(tmp_path, line.config())

    report = fanout_lag(config)  # no --sink: every enabled sink

    theirs = kafka_describe(line.group)
    assert_agrees(as_rows(report), theirs)
    (group,) = report["groups"]
    assert (group["state"], group["members"], group["total_lag"]) == ("STABLE", 1, 0)
    assert all(p["consumer"] for p in group["partitions"])
    assert {row["CLIENT-ID"] for row in theirs.values()} == {"fanout"}


def test_text_output_is_a_table_per_group(line: Pipeline, tmp_path: Path) -> None:
    produce(line.topic, [(b"k", b"{}")] * 5)
    KafkaOffsets(KafkaSettings(bootstrap_servers=bootstrap())).alter(
        line.group, {(line.topic, 0): 0}
    )
    result = fanout(write_config(tmp_path, line.config()), "lag", "--sink", "postgres")
    assert result.code == 0, result
    head, columns, *rows = result.stdout.splitlines()
    assert head.startswith(f"{line.group}  sink=postgres kind=live state=EMPTY")
    assert columns.split()[:5] == ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG"]
    assert len(rows) == 4
