"""The batch form of a histogram observation exposes the same samples as one call per value."""

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from fanout.runtime.metrics import observe_all


def exposition(observe: bool, amounts: list[float]) -> bytes:
    registry = CollectorRegistry()
    histogram = Histogram("h", "test", ["sink"], buckets=(0.1, 1, 10), registry=registry)
    child = histogram.labels("s")
    if observe:
        for amount in amounts:
            child.observe(amount)
    else:
        observe_all(child, amounts)
    return b"\n".join(
        line for line in generate_latest(registry).splitlines() if b"_created" not in line
    )


def test_observe_all_equals_observing_each_value() -> None:
    amounts = [0.0, 0.05, 0.1, 0.100001, 1, 3.5, 10, 11, 1e9]
    assert exposition(False, amounts) == exposition(True, amounts)
    assert b'h_bucket{le="0.1",sink="s"} 3.0' in exposition(False, amounts)


def test_observe_all_of_nothing_changes_nothing() -> None:
    assert exposition(False, []) == exposition(True, [])
