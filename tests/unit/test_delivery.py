"""Retry and bisection logic, against a sink that records what it was asked to write."""

from collections.abc import Sequence
from typing import ClassVar

import pytest

from fanout.errors import MappingError, PermanentError, RetryableError
from fanout.events import ChangeEvent, Failure, Op, Origin
from fanout.runtime.delivery import Delivery, DeliveryHooks
from fanout.settings import RetrySettings


def events(count: int) -> list[ChangeEvent]:
    return [
        ChangeEvent(Op.UPSERT, "s.t", {"id": i}, {"id": i}, i, None, Origin("t", 0, i))
        for i in range(count)
    ]


class RecordingSink:
    """Writes into a dict; poison ids fail the whole batch permanently, like a driver would."""

    name: ClassVar[str] = "recording"

    def __init__(self, poison: set[int] = frozenset(), down_for: int = 0) -> None:
        self.poison = poison
        self.down_for = down_for
        self.rows: dict[int, int] = {}
        self.calls = 0

    def open(self) -> None: ...

    def close(self) -> None: ...

    def write(self, batch: Sequence[ChangeEvent]) -> Sequence[Failure]:
        self.calls += 1
        if self.down_for:
            self.down_for -= 1
            raise RetryableError("connection refused")
        if any(e.key["id"] in self.poison for e in batch):
            raise PermanentError("value too long")
        for e in batch:
            self.rows[e.key["id"]] = e.version
        return []


class Hooks:
    def __init__(self, stop_after_waits: int | None = None) -> None:
        self.waits: list[float] = []
        self.events: list[str] = []
        self.stop_after_waits = stop_after_waits

    def build(self) -> DeliveryHooks:
        return DeliveryHooks(
            wait=self.waits.append,
            stopping=lambda: (
                self.stop_after_waits is not None and len(self.waits) >= self.stop_after_waits
            ),
            on_down=lambda exc: self.events.append("down"),
            on_up=lambda: self.events.append("up"),
            on_retry=lambda: self.events.append("retry"),
        )


RETRY = RetrySettings(initial_backoff_ms=100, max_backoff_ms=1000, multiplier=2.0)


def test_a_down_sink_is_retried_with_growing_capped_backoff_until_it_is_back() -> None:
    sink, hooks = RecordingSink(down_for=6), Hooks()
    outcome = Delivery(sink, RETRY, hooks.build()).write(events(3))
    assert outcome.failures == []
    assert sink.rows == {0: 0, 1: 1, 2: 2}
    assert len(hooks.waits) == 6
    assert all(0 <= w <= 1.0 for w in hooks.waits)
    assert hooks.events.count("up") == 1 and hooks.events[-1] == "up"


def test_stopping_while_the_sink_is_down_abandons_the_batch() -> None:
    sink, hooks = RecordingSink(down_for=100), Hooks(stop_after_waits=2)
    with pytest.raises(RetryableError):
        Delivery(sink, RETRY, hooks.build()).write(events(3))
    assert sink.rows == {}


def test_bisection_isolates_each_poison_record_and_writes_the_rest() -> None:
    sink, hooks = RecordingSink(poison={3, 11}), Hooks()
    outcome = Delivery(sink, RETRY, hooks.build()).write(events(16))
    assert sorted(f.origin.offset for f in outcome.failures) == [3, 11]
    assert all(f.stage == "write" and isinstance(f.error, PermanentError) for f in outcome.failures)
    assert sorted(sink.rows) == [i for i in range(16) if i not in (3, 11)]
    assert hooks.waits == []  # permanent errors are not retried


def test_failures_isolated_by_the_sink_pass_through() -> None:
    class PickySink(RecordingSink):
        def write(self, batch: Sequence[ChangeEvent]) -> Sequence[Failure]:
            bad = [e for e in batch if e.key["id"] == 1]
            return [Failure(e.origin, "write", MappingError("type change"), e) for e in bad]

    outcome = Delivery(PickySink(), RETRY, Hooks().build()).write(events(3))
    assert [f.origin.offset for f in outcome.failures] == [1]
    assert outcome.attempts == 1


def test_a_retryable_first_attempt_made_elsewhere_is_counted_and_the_batch_retried() -> None:
    sink, hooks = RecordingSink(down_for=1), Hooks()
    outcome = Delivery(sink, RETRY, hooks.build()).write(events(3), RetryableError("refused"))
    assert sink.rows == {0: 0, 1: 1, 2: 2}
    assert outcome.failures == [] and outcome.attempts == 3  # the one elsewhere, two here
    assert hooks.events == ["down", "retry", "down", "retry", "up"]


def test_a_permanent_first_attempt_made_elsewhere_goes_straight_to_bisection() -> None:
    sink, hooks = RecordingSink(poison={2}), Hooks()
    outcome = Delivery(sink, RETRY, hooks.build()).write(events(4), PermanentError("too long"))
    assert [f.origin.offset for f in outcome.failures] == [2]
    assert sorted(sink.rows) == [0, 1, 3]
    assert sink.calls == 4  # halves [0, 1] and [2, 3], then [2] and [3]: not the whole batch
