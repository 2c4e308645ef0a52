"""Prometheus metrics, one registry for the process (listed in docs/ARCHITECTURE.md).

What a sink applied or skipped is counted by the batch template (``sinks.base.batch``) only;
the worker counts what it consumed, dead-lettered, retried and how long batches took.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "fanout_events_consumed_total", "Kafka messages consumed, per sink.", ["sink"]
)
EVENTS_WRITTEN = Counter(
    "fanout_events_written_total", "Events applied to the sink.", ["sink", "table", "op"]
)
STALE_SKIPPED = Counter(
    "fanout_stale_events_total",
    "Events skipped because the sink already held a newer version of the key.",
    ["sink", "table"],
)
KEYLESS_SKIPPED = Counter(
    "fanout_keyless_skipped_total",
    "Rows of tables without a primary key skipped by routing.keyless (or deletes, which cannot"
    " name a row).",
    ["sink", "table"],
)
COLUMNS_UNKNOWN = Counter(
    "fanout_columns_unknown_total",
    "Columns an applied event did not carry (or carried as unavailable) while the target held"
    " no value for its key: left NULL or absent.",
    ["sink", "table"],
)
DLQ_RECORDS = Counter("fanout_dlq_total", "Records sent to the DLQ.", ["sink", "stage"])
RETRIES = Counter(
    "fanout_retries_total", "Batch write attempts that failed and were retried.", ["sink"]
)
BATCH_SECONDS = Histogram(
    "fanout_batch_seconds",
    "Time to deliver one batch (write + DLQ + commit).",
    ["sink"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
END_TO_END_LATENCY = Histogram(
    "fanout_end_to_end_latency_seconds",
    "Time from the Kafka message timestamp to the batch being committed.",
    ["sink"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
CONSUMER_LAG = Gauge(
    "fanout_consumer_lag", "Messages behind the partition end.", ["sink", "topic", "partition"]
)
SINK_UP = Gauge("fanout_sink_up", "1 while the sink accepts writes, 0 while it is down.", ["sink"])


def observe_all(histogram: Histogram, amounts: Iterable[float]) -> None:
    """``histogram.observe(amount)`` for every amount, with one increment per bucket touched.

    The worker observes one latency per record; ``observe`` takes a lock twice per call. This
    counts the batch first, then adds to prometheus_client's own bucket and sum values (a
    unit test keeps the exposition identical to calling ``observe`` for each amount).
    """
    bounds: list[float] = histogram._upper_bounds  # ascending, ends with +Inf
    counts = [0] * len(bounds)
    total = 0.0
    for amount in amounts:
        counts[bisect_left(bounds, amount)] += 1
        total += amount
    if not any(counts):
        return
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
