"""ClickHouse smoke test (chDB endpoint): ReplacingMergeTree, two versions, read with FINAL."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from tests.support.pipeline import unique


def test_replacing_merge_tree_final(clickhouse: Client) -> None:
    table = unique("smoke_ch")
    clickhouse.command(
        f"CREATE TABLE {table} (id UInt64, name String, _fanout_version UInt64, "
        "_fanout_deleted UInt8) "
        "ENGINE = ReplacingMergeTree(_fanout_version, _fanout_deleted) ORDER BY id"
    )
    try:
        columns = ["id", "name", "_fanout_version", "_fanout_deleted"]
        clickhouse.insert(table, [[1, "first", 1, 0], [2, "gone", 1, 0]], column_names=columns)
        clickhouse.insert(table, [[1, "second", 2, 0], [2, "gone", 2, 1]], column_names=columns)

        assert clickhouse.query(f"SELECT count() FROM {table}").result_rows == [(4,)]
        final = clickhouse.query(
            f"SELECT id, name, _fanout_version FROM {table} FINAL ORDER BY id"
        ).result_rows
        assert final == [(1, "second", 2)]  # id 2's newest version is a delete
    finally:
        clickhouse.command(f"DROP TABLE IF EXISTS {table}")
