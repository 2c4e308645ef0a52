"""`fanout lag` output: the JSON shape scripts rely on and the text table."""

from fanout.ops.lag import GroupLag, PartitionLag, render_text


def report() -> GroupLag:
    return GroupLag(
        "postgres",
        "fanout-postgres",
        "live",
        "STABLE",
        1,
        [
            PartitionLag("cdc", 0, 10, 15, 5, 1738288800000, "fanout@/10.0.0.7"),
            PartitionLag("cdc", 1, None, 4, 4, 1738288700000, None),
            PartitionLag("cdc", 2, 9, 9, 0, None, "fanout@/10.0.0.7"),
        ],
    )


def test_totals_and_oldest_event() -> None:
    group = report()
    assert group.total_lag == 9
    assert group.oldest_unprocessed_ms == 1738288700000


def test_json_shape() -> None:
    body = report().as_json()
    assert body["total_lag"] == 9
    assert body["oldest_unprocessed"] == "2025-01-31T01:58:20.000Z"
    assert body["partitions"][1] == {
        "topic": "cdc",
        "partition": 1,
        "committed": None,
        "end": 4,
        "lag": 4,
        "oldest_unprocessed": "2025-01-31T01:58:20.000Z",
        "oldest_unprocessed_ms": 1738288700000,
        "consumer": None,
    }
    assert "bound" not in body["partitions"][0]
    backfill = PartitionLag("cdc", 0, 3, 15, 12, None, None, bound=10)
    assert backfill.as_json()["bound"] == 10


def test_text_table() -> None:
    text = render_text([report()], now_s=1738288800)
    head, columns, *rows = text.splitlines()
    assert head.startswith("fanout-postgres  sink=postgres kind=live state=STABLE members=1")
    assert "total_lag=9" in head and "(100s ago)" in head
    assert columns.split()[:5] == ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG"]
    assert rows[1].split()[:5] == ["cdc", "1", "-", "4", "4"]
    assert rows[2].split()[-2:] == ["-", "fanout@/10.0.0.7"]
