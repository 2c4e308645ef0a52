"""Driving the real pipeline in tests, the demo and the benchmark: topics, workers, waiting.

Everything here talks to the real Kafka of the local stack; waits poll a condition with a
deadline and fail with what they last saw.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def bootstrap() -> str:
    """The local stack's Kafka, as this process knows it (``scripts/devstack env`` may say)."""
    return os.environ.get("FANOUT_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a ``fanout`` subprocess: this one's without any ``FANOUT_*`` variable,
    plus ``extra``.

    Env vars win over the YAML file, so a variable exported in the shell (``eval "$(scripts/
    devstack env)"`` sets the stores' addresses) would silently replace what the test wrote in
    its config, e.g. the proxy a test put in front of a store. A subprocess gets only the
    settings its caller means: its config file and ``extra``.
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FANOUT_")}
    env.update(extra or {})
    return env


def on_stack(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with ``kafka.bootstrap_servers`` set to the Kafka this process produces to,
    unless the config names one itself."""
    kafka = {"bootstrap_servers": bootstrap(), **config.get("kafka", {})}
    return {**config, "kafka": kafka}


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def wait_for(condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.2) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")
        time.sleep(interval_s)  # polling interval of a deadline-bounded wait, not a sync point


def create_topic(name: str, partitions: int = 6) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap()})
    admin.create_topics([NewTopic(name, num_partitions=partitions)])[name].result(timeout=30)
    wait_for(lambda: name in admin.list_topics(timeout=10).topics, 30, f"topic {name}")
    return name


def produce(topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap(),
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "enable.idempotence": True,
        }
    )
    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} messages not delivered to {topic}"
    return count


def end_offsets(topics: Iterable[str]) -> dict[tuple[str, int], int]:
    names = list(topics)
    return _when_settled(lambda: _end_offsets(names))


def committed_offsets(group: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    names = list(topics)
    return _when_settled(lambda: _committed_offsets(group, names))


def _end_offsets(topics: Iterable[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap(), "group.id": unique("probe")})
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            for partition in metadata.partitions:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                ends[(topic, partition)] = high
        return ends
    finally:
        consumer.close()


def _committed_offsets(group: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap(), "group.id": group})
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ]
        return {
            (tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=10)
        }
    finally:
        consumer.close()


_SETTLING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
}


def _when_settled(ask: Callable[[], T], timeout_s: float = 30) -> T:
    """``ask()``, asked again while the broker is still settling (a coordinator moving or
    loading just after start), up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ask()
        except KafkaException as exc:
            error = exc.args[0]
            settling = error.retriable() or error.code() in _SETTLING
            if not settling or time.monotonic() > deadline:
                raise
        time.sleep(0.2)  # polling interval of a deadline-bounded retry


def caught_up(group: str, topics: list[str]) -> bool:
    ends = end_offsets(topics)
    committed = committed_offsets(group, topics)
    return all(committed.get(tp, -1) >= end or end == 0 for tp, end in ends.items())


def wait_caught_up(group: str, topics: list[str], timeout_s: float = 120) -> None:
    wait_for(lambda: caught_up(group, topics), timeout_s, f"group {group} to reach the end")


def read_topic(topic: str, timeout_s: float = 20, expect: int | None = None) -> list[Any]:
    """Every message of ``topic`` from the start (waits until ``expect`` are there)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap(),
            "group.id": unique("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None:
                    messages.append(message)
            if expect is not None and len(messages) >= expect:
                break
            if expect is None and messages and sum(end_offsets([topic]).values()) <= len(messages):
                break
        return messages
    finally:
        consumer.close()


@dataclass
class WorkerProcess:
    """``fanout run [--sink NAME]`` in a subprocess, configured by a YAML file and ``extra_env``
    only (no ``FANOUT_*`` variable of this process reaches it: :func:`clean_env`). The file gets
    the Kafka this process talks to unless ``config`` names one (:func:`on_stack`).

    ``sink=None`` runs every enabled sink in the one process.
    """

    sink: str | None
    config: Mapping[str, Any]
    workdir: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None  # of the config file and log in workdir (default: sink + random)
    process: subprocess.Popen[bytes] | None = None
    config_path: Path | None = None
    log_path: Path | None = None

    def start(self) -> WorkerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        name = self.name or f"{self.sink or 'all'}-{uuid.uuid4().hex[:6]}"
        config_path = self.workdir / f"{name}.yaml"
        config_path.write_text(json.dumps(on_stack(self.config), indent=2) + "\n")  # JSON is YAML
        self.config_path = config_path
        self.log_path = config_path.with_suffix(".log")
        env = clean_env({**self.extra_env, "PYTHONPATH": str(REPO)})
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fanout.cli", "--config", str(config_path), "run"]
                + (["--sink", self.sink] if self.sink else []),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout_s: float = 60) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"worker did not exit; log tail:\n{self.log()[-3000:]}") from exc

    def stop(self) -> int | None:
        """SIGTERM, wait with a deadline, SIGKILL if it hangs. Returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None
