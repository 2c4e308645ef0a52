"""Worker settings for the fidelity tests: one private prefix per test, all sinks on the stack."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tests.integration.conftest import Endpoints

ALL_SINKS = ("postgres", "clickhouse", "elasticsearch")


def stack_config(
    prefix: str,
    topic: str,
    endpoints: Endpoints,
    batch: dict[str, int],
    sinks: Iterable[str] = ALL_SINKS,
    **es: Any,
) -> dict[str, Any]:
    """``fanout`` settings reading ``topic`` into ``sinks`` of the local stack, every name
    (group, DLQ, schema, database, index prefix) made from ``prefix``; ``es`` goes to the
    Elasticsearch section."""
    sections: dict[str, dict[str, Any]] = {
        "postgres": {"schema": prefix, **endpoints.pg},
        "clickhouse": {
            "mode": "server",
            "host": endpoints.ch_host,
            "port": endpoints.ch_port,
            "database": prefix,
        },
        "elasticsearch": {"hosts": endpoints.es_hosts, "index_prefix": f"{prefix}-", **es},
    }
    return {
        "kafka": {
            "topics": [topic],
            "group_prefix": prefix,
            "dlq_prefix": f"{prefix}.dlq",
            "session_timeout_ms": 6000,
        },
        "metrics": {"port": 0},
        "sinks": {name: {"enabled": True, **sections[name], "batch": batch} for name in sinks},
    }
