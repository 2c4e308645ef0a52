"""Watching a run: lag of a consumer group, and the CPU and memory of a process tree."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psutil
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

POLL_S = 0.25  # lag poll interval: the drain time is known to within this


@dataclass
class Drain:
    """When a consumer group reached the end of the topic, and what it used on the way."""

    seconds: float  # from process start to lag 0
    first_commit_s: float  # from process start to the first committed offset
    peak_rss_mib: float
    cpu_s: float  # user + system of the process tree
    disturbed: list[str] = field(default_factory=list)  # Kafka unreachable during the drain
    peak_rss_sum_mib: float | None = None  # several processes: the sum of each one's peak


class LagWatcher:
    """Committed offsets of one group against the topic's (fixed) end offsets."""

    def __init__(self, bootstrap: str, topic: str, ends: dict[int, int]) -> None:
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._topic = topic
        self._ends = ends
        self.errors: list[str] = []  # lag polls that failed: Kafka was not answering

    def committed(self, group: str) -> dict[int, int]:
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(self._topic, p) for p in self._ends]
        )
        future = self._admin.list_consumer_group_offsets([request])[group]
        result = future.result(timeout=10)
        return {tp.partition: tp.offset for tp in result.topic_partitions}

    def lag(self, group: str) -> int:
        committed = self.committed(group)
        return sum(max(0, end - max(committed.get(p, 0), 0)) for p, end in self._ends.items())

    def wait_drained(
        self,
        group: str,
        started: float,
        alive: Callable[[], bool],
        timeout_s: float,
        stall_s: float | None = None,
    ) -> tuple[float, float]:
        """Seconds from ``started`` (monotonic) to the first commit and to lag 0."""
        return self.wait_all_drained((group,), started, alive, timeout_s, stall_s)

    def wait_all_drained(
        self,
        groups: Sequence[str],
        started: float,
        alive: Callable[[], bool],
        timeout_s: float,
        stall_s: float | None = None,
    ) -> tuple[float, float]:
        """Seconds from ``started`` until every group has committed, and until every one is at
        lag 0; all groups are polled in each round, so each one's first commit is seen."""
        total = sum(self._ends.values())
        first: dict[str, float] = {}
        drained: dict[str, float] = {}
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            for group in [g for g in groups if g not in drained]:
                try:
                    lag = self.lag(group)
                except Exception as exc:  # Kafka away for a moment: the sample is marked disturbed
                    self.errors.append(f"{time.strftime('%H:%M:%S')} {exc!r}")
                    time.sleep(1)
                    break
                now = time.monotonic()
                if group not in first and lag < total:
                    first[group] = now - started
                if lag == 0:
                    drained[group] = now - started
                    first.setdefault(group, drained[group])
            if len(drained) == len(groups):
                return max(first.values()), max(drained.values())
            now = time.monotonic()
            if stall_s is not None and not first and now - started > stall_s:
                raise TimeoutError(f"{', '.join(groups)} committed nothing in {stall_s}s")
            if not alive():
                raise RuntimeError(f"a process draining {', '.join(groups)} died")
            time.sleep(POLL_S)
        pending = [g for g in groups if g not in drained]
        raise TimeoutError(f"{', '.join(pending)} not drained after {timeout_s}s")


@dataclass
class TreeSampler:
    """Samples RSS and CPU of a process and its children on a thread until stopped."""

    pid: int
    interval_s: float = 0.2
    peak_rss: int = 0
    _cpu: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> tuple[float, float]:
        """Peak RSS (MiB) and CPU seconds (user + system) of the tree."""
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.peak_rss / 2**20, sum(self._cpu.values())

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    self._cpu[proc.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                continue
        self.peak_rss = max(self.peak_rss, rss)
