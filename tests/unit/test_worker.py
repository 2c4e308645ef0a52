"""The pipelined consumer loop, against a scripted consumer and sink.

What a user of the worker can observe: which records the sink was asked to write and in what
order, which offsets were committed and when, and whether the worker returns on a stop.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from confluent_kafka import Message, TopicPartition

from fanout.errors import RetryableError
from fanout.events import ChangeEvent, Failure
from fanout.runtime import dlq as dlq_module
from fanout.runtime import kafka as kafka_clients
from fanout.runtime.worker import SinkWorker
from fanout.settings import load_settings
from tests.support.debezium import generate_stream

TOPIC = "app.inventory"
Entry = tuple[Any, ...]
WAIT_S = 10.0


class Journal:
    """Everything the worker did to the consumer and the sink, in the order it happened."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.entries: list[Entry] = []

    def add(self, *entry: Any) -> None:
        with self._changed:
            self.entries.append(entry)
            self._changed.notify_all()

    def wait_until(self, what: str, condition: Callable[[list[Entry]], bool]) -> None:
        with self._changed:
            met = self._changed.wait_for(lambda: condition(self.entries), WAIT_S)
        assert met, f"timed out waiting for {what}; journal: {self.entries}"

    def of(self, kind: str) -> list[Entry]:
        return [entry for entry in self.entries if entry[0] == kind]

    def consumed(self) -> int:
        return sum(entry[1] for entry in self.of("consumed"))

    def index(self, *entry: Any) -> int:
        return self.entries.index(entry)


class ScriptedConsumer:
    """Hands out its queue like ``consume`` would; a requested revoke runs inside ``consume``."""

    def __init__(self, journal: Journal, messages: list[Message]) -> None:
        self._journal = journal
        self._queue: deque[Message] = deque(messages)
        self._arrived = threading.Condition()
        self._callbacks: dict[str, Callable[[Any, list[TopicPartition]], None]] = {}
        self._assignment = [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
        self._revoke: list[TopicPartition] = []
        self._paused = False

    def add(self, messages: list[Message]) -> None:
        with self._arrived:
            self._queue.extend(messages)
            self._arrived.notify_all()

    def revoke(self, partition: int) -> None:
        with self._arrived:
            self._revoke.append(TopicPartition(TOPIC, partition))
            self._arrived.notify_all()

    def wake(self) -> None:
        with self._arrived:
            self._arrived.notify_all()

    def subscribe(self, _topics: list[str], **callbacks: Any) -> None:
        self._callbacks = callbacks
        callbacks["on_assign"](self, list(self._assignment))

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        with self._arrived:
            if not self._revoke and (self._paused or not self._queue):
                self._arrived.wait(timeout)  # blocks like librdkafka's consume
            revoked, self._revoke = self._revoke, []
            batch = [] if self._paused else self._take(num_messages)
        if revoked:
            self._assignment = [tp for tp in self._assignment if tp not in revoked]
            self._callbacks["on_revoke"](self, revoked)
            self._journal.add("revoked", tuple(tp.partition for tp in revoked))
        return batch

    def _take(self, count: int) -> list[Message]:
        owned = {tp.partition for tp in self._assignment}
        taken: list[Message] = []
        while self._queue and len(taken) < count:
            message = self._queue.popleft()
            if message.partition() in owned:
                taken.append(message)
        if taken:
            self._journal.add("consumed", len(taken))
        return taken

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not asynchronous
        self._journal.add("commit", {tp.partition: tp.offset for tp in offsets})

    def assignment(self) -> list[TopicPartition]:
        return list(self._assignment)

    def pause(self, _partitions: list[TopicPartition]) -> None:
        self._paused = True
        self._journal.add("pause")

    def resume(self, _partitions: list[TopicPartition]) -> None:
        self._paused = False
        self._journal.add("resume")

    def seek(self, _partition: TopicPartition) -> None: ...

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, -1) for tp in partitions]

    def get_watermark_offsets(self, _partition: TopicPartition, cached: bool) -> tuple[int, int]:
        return -1, -1

    def close(self) -> None:
        self._journal.add("consumer closed")


class ScriptedSink:
    """Writes succeed unless scripted: ``gates`` hold call N until set, ``down`` calls fail."""

    name: ClassVar[str] = "postgres"

    def __init__(self, journal: Journal, down: Sequence[int] = ()) -> None:
        self._journal = journal
        self._in_use = threading.Lock()
        self.gates: dict[int, threading.Event] = {}
        self.down = set(down)
        self.always_down = False
        self.calls = 0
        self.overlapping_calls = 0

    def open(self) -> None: ...

    def close(self) -> None:
        self._journal.add("sink closed")

    def write(self, batch: Sequence[ChangeEvent]) -> Sequence[Failure]:
        if not self._in_use.acquire(blocking=False):
            self.overlapping_calls += 1
            self._in_use.acquire()
        try:
            call, self.calls = self.calls, self.calls + 1
            offsets = tuple((e.origin.partition, e.origin.offset) for e in batch)
            self._journal.add("write", call, offsets)
            if call in self.gates:
                assert self.gates[call].wait(WAIT_S)
            if self.always_down or call in self.down:
                raise RetryableError("connection refused")
            self._journal.add("written", call, offsets)
            return []
        finally:
            self._in_use.release()


class NullProducer:
    def __init__(self) -> None:
        self.produced = 0

    def produce(self, *_args: Any, **_kwargs: Any) -> None:
        self.produced += 1

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


def kafka_messages(count: int, partitions: int = 2, first: int = 0) -> list[Message]:
    """Debezium records spread round-robin over ``partitions``, offsets counted per partition."""
    records = [m for m in generate_stream(first + count, n_keys=50, seed=4) if m.value][first:]
    return [
        Message(
            topic=TOPIC,
            partition=(first + i) % partitions,
            offset=(first + i) // partitions,
            key=record.key,
            value=record.value,
            timestamp=(1, record.timestamp_ms),
        )
        for i, record in enumerate(records[:count])
    ]


class Harness:
    def __init__(self, worker: SinkWorker, consumer: ScriptedConsumer, journal: Journal) -> None:
        self.worker, self.consumer, self.journal = worker, consumer, journal
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="worker")

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:
            self.errors.append(exc)
            self.journal.add("crashed", repr(exc))

    def start(self) -> Harness:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.worker.stop()
        self.consumer.wake()
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "the worker did not return after stop()"
        assert self.errors == []


@pytest.fixture
def make_harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[Harness, ScriptedSink]]]:
    started: list[Harness] = []

    def make(
        messages: list[Message],
        max_events: int = 10,
        max_wait_ms: int = 50,
        down: Sequence[int] = (),
    ) -> tuple[Harness, ScriptedSink]:
        config = tmp_path / "fanout.yaml"
        config.write_text(
            f"kafka: {{topics: [{TOPIC}]}}\nmetrics: {{enabled: false}}\n"
            "sinks:\n  postgres:\n    enabled: true\n"
            f"    batch: {{max_events: {max_events}, max_wait_ms: {max_wait_ms}}}\n"
            "    retry: {initial_backoff_ms: 1, max_backoff_ms: 5}\n"
        )
        journal = Journal()
        consumer = ScriptedConsumer(journal, messages)
        sink = ScriptedSink(journal, down)
        monkeypatch.setattr(kafka_clients, "make_consumer", lambda *_a, **_k: consumer)
        monkeypatch.setattr(kafka_clients, "make_producer", lambda *_a, **_k: NullProducer())
        monkeypatch.setattr(kafka_clients, "make_admin", lambda *_a, **_k: None)
        monkeypatch.setattr(kafka_clients, "ensure_topic", lambda *_a, **_k: None)
        monkeypatch.setattr(dlq_module, "ensure_dlq_topic", lambda *_a, **_k: 1_000_000)
        worker = SinkWorker("postgres", load_settings(config), sink)
        harness = Harness(worker, consumer, journal)
        started.append(harness)
        return harness, sink

    yield make
    for harness in started:  # a failed test still ends its worker thread
        harness.worker.stop()
        harness.consumer.wake()


def committed(journal: Journal) -> dict[int, int]:
    """The offsets committed last, per partition."""
    last: dict[int, int] = {}
    for _, offsets in journal.of("commit"):
        last.update(offsets)
    return last


def ends(messages: list[Message]) -> dict[int, int]:
    highest: dict[int, int] = {}
    for m in messages:
        partition, offset = m.partition(), m.offset()
        assert partition is not None and offset is not None
        highest[partition] = max(highest.get(partition, -1), offset + 1)
    return highest


def test_the_next_batch_is_read_while_the_sink_writes_and_commits_keep_stream_order(
    make_harness: Callable[..., tuple[Harness, ScriptedSink]],
) -> None:
    messages = kafka_messages(60)
    harness, sink = make_harness(messages)
    sink.gates[0] = threading.Event()
    harness.start()
    journal = harness.journal
    journal.wait_until("the first write", lambda entries: "write" in {e[0] for e in entries})
    journal.wait_until("the next batch read", lambda _: journal.consumed() >= 20)
    assert journal.of("commit") == []  # nothing committed while the first batch is in flight
    assert len(journal.of("write")) == 1  # and the sink has one batch at a time
    sink.gates[0].set()
    journal.wait_until("everything committed", lambda _: committed(journal) == ends(messages))
    harness.stop()

    writes = journal.of("written")
    assert [p for _, _, offsets in writes for p in offsets] == [
        (m.partition(), m.offset()) for m in messages
    ]
    for (_, call, _offsets), commit in zip(writes, journal.of("commit"), strict=True):
        assert journal.index("written", call, _offsets) < journal.index(*commit)
    for call, (_, _, offsets) in enumerate(writes[1:], start=1):
        previous_commit = journal.of("commit")[call - 1]
        assert journal.index(*previous_commit) < journal.index("write", call, offsets)
    per_partition: dict[int, list[int]] = {}
    for _, offsets in journal.of("commit"):
        for partition, offset in offsets.items():
            per_partition.setdefault(partition, []).append(offset)
    assert all(seq == sorted(set(seq)) for seq in per_partition.values())
    assert sink.overlapping_calls == 0


def test_stop_during_an_in_flight_write_finishes_commits_and_returns(
    make_harness: Callable[..., tuple[Harness, ScriptedSink]],
) -> None:
    messages = kafka_messages(30)
    harness, sink = make_harness(messages)
    sink.gates[0] = threading.Event()
    harness.start()
    journal = harness.journal
    journal.wait_until("the first write", lambda entries: bool(journal.of("write")))
    harness.worker.stop()
    sink.gates[0].set()
    harness.stop()

    written = [offset for _, _, offsets in journal.of("written") for offset in offsets]
    assert written, "the batch in flight was written"
    assert committed(journal) == ends_of(written)  # everything written is committed
    assert journal.entries[-2:] == [("consumer closed",), ("sink closed",)]


def ends_of(written: list[tuple[int, int]]) -> dict[int, int]:
    highest: dict[int, int] = {}
    for partition, offset in written:
        highest[partition] = max(highest.get(partition, -1), offset + 1)
    return highest


def test_a_failed_first_attempt_is_retried_before_the_already_read_next_batch(
    make_harness: Callable[..., tuple[Harness, ScriptedSink]],
) -> None:
    messages = kafka_messages(20)
    harness, sink = make_harness(messages, down=(0, 1))  # the first batch fails twice
    sink.gates[0] = threading.Event()
    harness.start()
    journal = harness.journal
    journal.wait_until("the next batch read", lambda _: journal.consumed() == 20)
    sink.gates[0].set()
    journal.wait_until("everything committed", lambda _: committed(journal) == ends(messages))
    harness.stop()

    first, second = messages[:10], messages[10:]
    assert [offsets for _, _, offsets in journal.of("written")] == [
        tuple((m.partition(), m.offset()) for m in first),
        tuple((m.partition(), m.offset()) for m in second),
    ]
    assert [call for _, call, _ in journal.of("write")] == [0, 1, 2, 3]
    kinds = [entry[0] for entry in journal.entries if entry[0] not in ("write", "consumed")]
    assert kinds[:5] == ["pause", "written", "resume", "commit", "written"]
    assert committed(journal) == ends(messages) and len(journal.of("commit")) == 2
    assert harness.worker.status.sink_up


def test_records_of_a_partition_revoked_during_a_write_are_not_committed(
    make_harness: Callable[..., tuple[Harness, ScriptedSink]],
) -> None:
    messages = kafka_messages(15)  # one full batch of 10, then 5 of the next
    harness, sink = make_harness(messages, max_wait_ms=5000)
    sink.gates[0] = threading.Event()
    harness.start()
    journal = harness.journal
    journal.wait_until("the next batch read", lambda _: journal.consumed() == 15)
    harness.consumer.revoke(0)
    journal.wait_until("the revoke", lambda entries: bool(journal.of("revoked")))
    sink.gates[0].set()
    journal.wait_until("the first commit", lambda entries: bool(journal.of("commit")))
    more = kafka_messages(10, first=15)
    harness.consumer.add(more)  # partition 1's half of these completes the second batch
    partition_1 = ends([m for m in messages + more if m.partition() == 1])
    journal.wait_until("partition 1 committed", lambda _: committed(journal) == partition_1)
    harness.stop()

    assert all(0 not in offsets for _, offsets in journal.of("commit"))
    assert {p for _, _, offsets in journal.of("written") for p, _ in offsets} == {0, 1}


def test_stop_while_the_sink_stays_down_abandons_the_batches_uncommitted(
    make_harness: Callable[..., tuple[Harness, ScriptedSink]],
) -> None:
    harness, sink = make_harness(kafka_messages(20))
    sink.always_down = True
    harness.start()
    harness.journal.wait_until("the pause", lambda entries: ("pause",) in entries)
    harness.stop()
    assert harness.journal.of("commit") == []
    assert not harness.worker.status.sink_up
