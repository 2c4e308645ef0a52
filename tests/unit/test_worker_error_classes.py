"""What the worker does with each error class, against the scripted consumer and sink of
``test_worker``: a configuration error stops it (no commit, paused, not live, not ready, the
error raised after ``config_error_exit_s``), an error nobody classifies is retried a bounded
number of times, a slow ``open()`` keeps the loop alive, a hung call makes it unready but not
dead. And ``Delivery`` on its own: what it retries, bisects, and gives up on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from fanout.errors import ConfigError, MappingError, PermanentError, RetryableError, UnknownError
from fanout.events import ChangeEvent, Failure, Op, Origin
from fanout.runtime import dlq as dlq_module
from fanout.runtime import kafka as kafka_clients
from fanout.runtime import worker as worker_module
from fanout.runtime.delivery import Delivery, DeliveryHooks
from fanout.runtime.health import HealthRegistry
from fanout.runtime.worker import SinkWorker
from fanout.settings import RetrySettings, load_settings
from tests.unit.test_worker import (
    TOPIC,
    WAIT_S,
    Harness,
    Journal,
    NullProducer,
    ScriptedConsumer,
    ScriptedSink,
    committed,
    ends,
    kafka_messages,
)


class FailingSink(ScriptedSink):
    """A ScriptedSink whose calls listed in ``raises`` raise the given exception instead, and
    whose ``open()`` raises the exceptions in ``open_raises`` one per call first."""

    def __init__(self, journal: Journal) -> None:
        super().__init__(journal)
        self.raises: dict[int, BaseException] = {}
        self.open_raises: list[BaseException] = []
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        if self.open_raises:
            raise self.open_raises.pop(0)

    def write(self, batch: Sequence[ChangeEvent]) -> Sequence[Failure]:
        call = self.calls
        if call in self.raises:
            self.calls += 1
            self._journal.add("refused", call)
            raise self.raises[call]
        return super().write(batch)


@pytest.fixture
def harness_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[Harness, FailingSink]]]:
    started: list[Harness] = []

    def make(
        messages: list[Any], exit_s: float = 0.5, unknown_attempts: int = 3
    ) -> tuple[Harness, FailingSink]:
        config = tmp_path / "fanout.yaml"
        config.write_text(
            f"kafka: {{topics: [{TOPIC}]}}\nmetrics: {{enabled: false}}\n"
            "sinks:\n  postgres:\n    enabled: true\n"
            f"    config_error_exit_s: {exit_s}\n"
            "    batch: {max_events: 10, max_wait_ms: 50}\n"
            "    retry: {initial_backoff_ms: 1, max_backoff_ms: 5, "
            f"unknown_error_attempts: {unknown_attempts}}}\n"
        )
        journal = Journal()
        consumer = ScriptedConsumer(journal, messages)
        sink = FailingSink(journal)
        monkeypatch.setattr(kafka_clients, "make_consumer", lambda *_a, **_k: consumer)
        monkeypatch.setattr(kafka_clients, "make_producer", lambda *_a, **_k: NullProducer())
        monkeypatch.setattr(kafka_clients, "make_admin", lambda *_a, **_k: None)
        monkeypatch.setattr(kafka_clients, "ensure_topic", lambda *_a, **_k: None)
        monkeypatch.setattr(dlq_module, "ensure_dlq_topic", lambda *_a, **_k: 1_000_000)
        harness = Harness(SinkWorker("postgres", load_settings(config), sink), consumer, journal)
        started.append(harness)
        return harness, sink

    yield make
    for harness in started:
        harness.worker.stop()
        harness.consumer.wake()


def wait_crashed(harness: Harness) -> BaseException:
    harness.journal.wait_until("the worker to end", lambda _: bool(harness.errors))
    return harness.errors[0]


def registry_of(harness: Harness, stall_after_s: float = 60.0) -> HealthRegistry:
    registry = HealthRegistry(stall_after_s=stall_after_s)
    registry.register(harness.worker.status)
    return registry


# ---- configuration errors -------------------------------------------------------------------


def test_a_configuration_error_stops_the_worker_without_a_commit_and_ends_it_after_the_wait(
    harness_for: Callable[..., tuple[Harness, FailingSink]],
) -> None:
    messages = kafka_messages(40)
    harness, sink = harness_for(messages, exit_s=1.0)
    sink.raises[0] = ConfigError("postgres refused the sink's configuration: permission denied")
    registry = registry_of(harness)
    started = time.monotonic()
    harness.start()
    journal = harness.journal
    journal.wait_until("the refusal", lambda _: bool(journal.of("refused")))
    journal.wait_until("the pause", lambda entries: ("pause",) in entries)
    status = harness.worker.status
    assert status.config_error is not None and "permission denied" in status.config_error
    assert not registry.live() and not registry.ready()
    described = registry.describe(liveness=True)["postgres"]
    assert described["reason"].startswith("configuration error: postgres refused")

    error = wait_crashed(harness)
    assert isinstance(error, ConfigError)
    assert time.monotonic() - started >= 1.0  # the configured wait, not at once
    assert journal.of("commit") == []  # the failed batch and the next are not committed
    assert sink.calls == 1  # not retried, not bisected
    assert journal.entries[-3:-1] == [("consumer closed",), ("sink closed",)]  # then "crashed"


def test_a_configuration_error_at_open_ends_the_worker_before_it_consumes(
    harness_for: Callable[..., tuple[Harness, FailingSink]],
) -> None:
    harness, sink = harness_for(kafka_messages(10), exit_s=0.2)
    sink.open_raises = [ConfigError("elasticsearch open: HTTP 401 security_exception")]
    harness.start()
    error = wait_crashed(harness)
    assert isinstance(error, ConfigError)
    assert harness.journal.consumed() == 0 and sink.calls == 0
    assert harness.worker.status.config_error == "elasticsearch open: HTTP 401 security_exception"


def test_a_data_error_at_open_is_a_configuration_error(
    harness_for: Callable[..., tuple[Harness, FailingSink]],
) -> None:
    harness, sink = harness_for(kafka_messages(10), exit_s=0)
    sink.open_raises = [MappingError("elasticsearch open: HTTP 400 illegal index settings")]
    harness.start()
    error = wait_crashed(harness)
    assert isinstance(error, ConfigError) and "while opening the sink" in str(error)


def test_stop_during_the_wait_ends_the_worker_at_once_with_the_error(
    harness_for: Callable[..., tuple[Harness, FailingSink]],
) -> None:
    harness, sink = harness_for(kafka_messages(20), exit_s=600)
    sink.raises[0] = ConfigError("no grant")
    harness.start()
    harness.journal.wait_until("the pause", lambda entries: ("pause",) in entries)
    harness.worker.stop()
    harness.consumer.wake()
    assert isinstance(wait_crashed(harness), ConfigError)


# ---- errors nobody classifies -----------------------------------------------------------------


def test_an_error_nobody_classifies_is_retried_a_bounded_number_of_times_then_stops_the_worker(
    harness_for: Callable[..., tuple[Harness, FailingSink]],
) -> None:
    harness, sink = harness_for(kafka_messages(20), exit_s=0, unknown_attempts=3)
    for call in range(10):
        sink.raises[call] = KeyError("a column the code did not expect")
    harness.start()
    error = wait_crashed(harness)
    assert isinstance(error, ConfigError)
    assert "KeyError" in str(error) and "after 3 attempts" in str(error)
    assert isinstance(error.__cause__, UnknownError)
    assert sink.calls == 3  # the first attempt and two retries, never bisected
    assert harness.journal.of("commit") == []


def test_an_error_nobody_classifies_that_passes_is_forgotten(
    harness_for: Callable[..., tuple[Harness, FailingSink]],
) -> None:
    messages = kafka_messages(20)
    harness, sink = harness_for(messages, unknown_attempts=3)
    sink.raises[0] = RuntimeError("a hiccup")
    sink.raises[1] = RuntimeError("a hiccup")
    harness.start()
    journal = harness.journal
    journal.wait_until("everything committed", lambda _: committed(journal) == ends(messages))
    harness.stop()
    assert harness.worker.status.config_error is None and harness.worker.status.sink_up


def test_open_retries_an_unclassified_error_a_bounded_number_of_times(
    harness_for: Callable[..., tuple[Harness, FailingSink]],
) -> None:
    harness, sink = harness_for(kafka_messages(10), exit_s=0, unknown_attempts=4)
    sink.open_raises = [ValueError("bad host URL")] * 10
    harness.start()
    error = wait_crashed(harness)
    assert isinstance(error, ConfigError) and "bad host URL" in str(error)
    assert sink.opens == 4


# ---- the loop stays alive --------------------------------------------------------------------


def test_a_slow_open_keeps_the_loop_alive_and_says_why_it_is_not_ready(
    harness_for: Callable[..., tuple[Harness, FailingSink]],
) -> None:
    harness, sink = harness_for(kafka_messages(10))
    sink.open_raises = [RetryableError("connection refused")] * 150  # about a second
    registry = registry_of(harness, stall_after_s=0.3)
    harness.start()
    deadline = time.monotonic() + WAIT_S
    samples = []
    while sink.open_raises and time.monotonic() < deadline:
        sample = (registry.live(), registry.ready(), registry.describe()["postgres"]["reason"])
        if sink.open_raises:  # still failing after the sample: it saw the slow open
            samples.append(sample)
        time.sleep(0.01)  # sampling interval of a bounded observation, not a sync point
    assert samples and all(live and not ready for live, ready, _ in samples)
    opening = ("opening the sink", "waiting", "sink down")
    assert all(reason is None or reason.startswith(opening) for _, _, reason in samples)
    harness.journal.wait_until("a write", lambda _: bool(harness.journal.of("written")))
    harness.stop()


def test_a_call_that_hangs_makes_the_worker_unready_not_dead_and_it_recovers(
    harness_for: Callable[..., tuple[Harness, FailingSink]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "CALL_SLICE_S", 0.05)
    messages = kafka_messages(30)
    harness, sink = harness_for(messages)
    harness.worker.status.hung_after_s = 0.3
    sink.gates[0] = threading.Event()  # the first write hangs until released
    registry = registry_of(harness, stall_after_s=0.5)
    harness.start()
    journal = harness.journal
    journal.wait_until("the first write", lambda _: bool(journal.of("write")))
    deadline = time.monotonic() + WAIT_S
    while registry.ready() and time.monotonic() < deadline:
        time.sleep(0.02)  # polling interval of a deadline-bounded wait
    assert not registry.ready()
    assert registry.describe()["postgres"]["reason"].startswith("no answer from the store for")
    journal.wait_until("the pause while it hangs", lambda entries: ("pause",) in entries)
    for _ in range(20):  # a second of hang: the loop keeps turning
        assert registry.live()
        time.sleep(0.05)  # sampling interval of a bounded observation
    sink.gates[0].set()
    journal.wait_until("everything committed", lambda _: committed(journal) == ends(messages))
    assert registry.ready() and ("resume",) in journal.entries
    harness.stop()


def test_the_worker_is_ready_only_once_the_group_assigned_it_partitions(
    harness_for: Callable[..., tuple[Harness, FailingSink]],
) -> None:
    harness, _sink = harness_for(kafka_messages(10))
    status = harness.worker.status
    assert not status.assigned
    harness.start()
    harness.journal.wait_until("a write", lambda _: bool(harness.journal.of("written")))
    assert status.assigned and status.ready
    harness.stop()


# ---- Delivery ---------------------------------------------------------------------------------


def events(count: int) -> list[ChangeEvent]:
    return [
        ChangeEvent(Op.UPSERT, "s.t", {"id": i}, {"id": i}, i, None, Origin("t", 0, i))
        for i in range(count)
    ]


class Refusing:
    """A sink whose writes raise ``errors`` in turn (then succeed); ``poison`` ids fail DATA."""

    name: ClassVar[str] = "refusing"

    def __init__(self, *errors: BaseException, poison: frozenset[int] = frozenset()) -> None:
        self.errors = list(errors)
        self.poison = poison
        self.calls = 0
        self.written: list[int] = []

    def open(self) -> None: ...

    def close(self) -> None: ...

    def write(self, batch: Sequence[ChangeEvent]) -> Sequence[Failure]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        if any(event.key["id"] in self.poison for event in batch):
            raise MappingError("postgres rejected the batch: CharacterNotInRepertoire")
        self.written.extend(event.key["id"] for event in batch)
        return []


RETRY = RetrySettings(initial_backoff_ms=1, max_backoff_ms=2, unknown_error_attempts=3)


def delivery(sink: Refusing, waits: list[float]) -> Delivery:
    return Delivery(sink, RETRY, DeliveryHooks(wait=waits.append, stopping=lambda: False))


def test_a_configuration_error_is_raised_at_once_never_retried_nor_bisected() -> None:
    sink, waits = Refusing(ConfigError("no grant")), []
    with pytest.raises(ConfigError, match="no grant"):
        delivery(sink, waits).write(events(8))
    assert sink.calls == 1 and waits == []


def test_a_configuration_error_of_a_first_attempt_made_elsewhere_is_raised() -> None:
    sink, waits = Refusing(), []
    with pytest.raises(ConfigError):
        delivery(sink, waits).write(events(2), failed_first=ConfigError("bad password"))
    assert sink.calls == 0


def test_unknown_errors_in_a_row_become_a_configuration_error() -> None:
    sink, waits = Refusing(*[UnknownError("code 9999")] * 5), []
    with pytest.raises(ConfigError, match=r"code 9999.*after 3 attempts") as raised:
        delivery(sink, waits).write(events(4))
    assert sink.calls == 3 and len(waits) == 2
    assert isinstance(raised.value.__cause__, UnknownError)


def test_a_foreign_exception_counts_as_unknown_and_keeps_its_cause() -> None:
    original = AttributeError("'NoneType' object has no attribute 'x'")
    sink, waits = Refusing(original, original, original), []
    with pytest.raises(ConfigError, match="unexpected AttributeError") as raised:
        delivery(sink, waits).write(events(4))
    unknown = raised.value.__cause__
    assert isinstance(unknown, UnknownError) and unknown.__cause__ is original


def test_an_unknown_first_attempt_made_elsewhere_counts_towards_the_bound() -> None:
    sink, waits = Refusing(UnknownError("x"), UnknownError("x")), []
    with pytest.raises(ConfigError):
        delivery(sink, waits).write(events(2), failed_first=UnknownError("x"))
    assert sink.calls == 2


def test_a_transient_error_between_unknown_ones_starts_the_count_again() -> None:
    sink = Refusing(UnknownError("a"), UnknownError("b"), RetryableError("down"), UnknownError("c"))
    waits: list[float] = []
    outcome = delivery(sink, waits).write(events(3))
    assert outcome.failures == [] and sink.written == [0, 1, 2] and sink.calls == 5


def test_transient_errors_are_retried_for_as_long_as_they_last() -> None:
    sink, waits = Refusing(*[RetryableError("down")] * 50), []
    outcome = delivery(sink, waits).write(events(3))
    assert outcome.failures == [] and sink.calls == 51 and len(waits) == 50


def test_data_errors_are_isolated_to_their_records_by_bisection() -> None:
    sink, waits = Refusing(poison=frozenset({3, 7})), []
    outcome = delivery(sink, waits).write(events(10))
    assert sorted(f.origin.offset for f in outcome.failures) == [3, 7]
    assert all(isinstance(f.error, PermanentError) for f in outcome.failures)
    assert sorted(sink.written) == [0, 1, 2, 4, 5, 6, 8, 9] and waits == []
