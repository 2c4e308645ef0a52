"""Sink implementations; ``sinks.base.contract`` holds only the contract.

Modules are imported on demand so a process running one sink loads only that sink's driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fanout.settings import SinkSettings
    from sinks.base.contract import Sink


def create_sink(name: str, settings: SinkSettings) -> Sink:
    """Build the sink called ``name`` from its settings section (not yet opened)."""
    if name == "postgres":
        from sinks.postgres.sink import PostgresSink

        return PostgresSink(settings)  # type: ignore[arg-type]
    if name == "elasticsearch":
        from sinks.elasticsearch.sink import ElasticsearchSink

        return ElasticsearchSink(settings)  # type: ignore[arg-type]
    if name == "clickhouse":
        from sinks.clickhouse.sink import ClickHouseSink

        return ClickHouseSink(settings)  # type: ignore[arg-type]
    raise ValueError(f"unknown sink {name!r}")
