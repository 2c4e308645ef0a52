"""The clickhouse sink."""

from sinks.clickhouse.sink import ClickHouseSink

__all__ = ["ClickHouseSink"]
