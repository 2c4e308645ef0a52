"""A verify's result as Prometheus metrics, pushed to a Pushgateway (``--pushgateway URL``): a
scheduled verify (the chart's CronJob) ends before any scrape could reach it.

Per sink (the push's grouping key): ``fanout_verify_equal`` (1/0),
``fanout_verify_rows{table,side}`` (source / target), ``fanout_verify_differences{table,kind}``
(missing / extra / different), ``fanout_verify_settled`` (the sink caught up before the
re-check), ``fanout_verify_last_run_timestamp_seconds`` and ``fanout_verify_duration_seconds``.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from fanout.ops.verify.compare import KINDS
from fanout.ops.verify.report import VerifyReport

JOB = "fanout-verify"


def registry_of(
    report: VerifyReport, duration_s: float, now_s: float | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = _gauges(registry)
    gauge["equal"].set(1 if report.equal else 0)
    gauge["settled"].set(0 if report.settled is False else 1)
    gauge["last_run"].set(time.time() if now_s is None else now_s)
    gauge["duration"].set(duration_s)
    for table in report.tables:
        gauge["rows"].labels(table.table, "source").set(table.source_rows)
        gauge["rows"].labels(table.table, "target").set(table.target_rows)
        for kind in KINDS:
            gauge["differences"].labels(table.table, kind).set(table.counts[kind])
    return registry


def push(url: str, report: VerifyReport, duration_s: float) -> None:
    """Replace this sink's group of metrics in the Pushgateway at ``url``."""
    push_to_gateway(
        url, job=JOB, registry=registry_of(report, duration_s), grouping_key={"sink": report.sink}
    )


def _gauges(registry: CollectorRegistry) -> dict[str, Gauge]:
    def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"fanout_verify_{name}", text, labels, registry=registry)

    return {
        "equal": gauge("equal", "1 if the sink equalled the source at the last verify"),
        "settled": gauge("settled", "1 if the sink caught up before differences were re-checked"),
        "last_run": gauge("last_run_timestamp_seconds", "when the last verify finished"),
        "duration": gauge("duration_seconds", "how long the last verify took"),
        "rows": gauge("rows", "rows counted per table and side", ("table", "side")),
        "differences": gauge(
            "differences", "keys that differ per table and kind", ("table", "kind")
        ),
    }
