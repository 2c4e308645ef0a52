"""Kafka clients built from settings: the one place librdkafka configuration is assembled.

librdkafka's own log goes through Python logging (the ``librdkafka`` logger, set up in
``fanout.runtime.logs``) instead of its own stderr printer, so it is formatted, masked and
thinned like every other line; :func:`probe` checks at start-up that a broker answers and says
in one line what is wrong if none does.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from fanout.errors import ConfigError
from fanout.runtime.connections import kafka_unreachable
from fanout.settings import KafkaSettings

LIBRDKAFKA_LOG = logging.getLogger("librdkafka")
PROBE_TIMEOUT_S = 10.0
END_OFFSETS_TIMEOUT_S = 2.0
OFFSET_LATEST = -1  # ListOffsets' timestamp for "the partition's end"
OFFSET_EARLIEST = -2  # and for "its beginning"
# Settings the KIP-848 consumer protocol (group.protocol=consumer) takes from the broker; the
# client refuses to start if they are set.
_CLASSIC_ONLY = ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy")


class KafkaUnreachable(Exception):
    """No broker answered at start-up; the message is the one line to print."""


class ConsumerFatal(ConfigError):
    """librdkafka declared the consumer dead (``_FATAL``): it consumes and commits nothing more.

    With static membership (``kafka.group_instance_id``) the group refuses or fences a member
    whose id another member holds. ``rejoinable`` marks the one case a new consumer can mend:
    the id is still held by a member that never left (the crashed process this one replaces,
    until the broker's session timeout). A fenced member (another process took the id) is not
    rejoinable: joining again would fence that process back, and the two would take turns.
    """

    def __init__(self, message: str, rejoinable: bool = False) -> None:
        super().__init__(message)
        self.rejoinable = rejoinable
        # How long the stopped worker still shows the reason before exiting; None: the sink's
        # config_error_exit_s.
        self.exit_after_s: float | None = None


def _logged(conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` with librdkafka logging to Python logging. Brokers close idle connections
    (connections.max.idle.ms) and librdkafka reconnects on its own: not worth a line each."""
    return {"logger": LIBRDKAFKA_LOG, "log.connection.close": False, **conf}


def group_id(kafka: KafkaSettings, sink: str) -> str:
    return f"{kafka.group_prefix}-{sink}"


def dlq_topic(kafka: KafkaSettings, sink: str) -> str:
    return f"{kafka.dlq_prefix}.{sink}"


def make_consumer(kafka: KafkaSettings, group: str, **overrides: Any) -> Consumer:
    return Consumer(_logged(consumer_config(kafka, group, **overrides)))


def consumer_config(kafka: KafkaSettings, group: str, **overrides: Any) -> dict[str, Any]:
    # Pre-fetch buffers first so raw settings (kafka.extra) can still replace them.
    conf: dict[str, Any] = {
        "fetch.min.bytes": 1,
        "queued.max.messages.kbytes": kafka.prefetch_max_kbytes,
        "fetch.max.bytes": kafka.fetch_max_bytes,
        # A full pre-fetch queue postpones the next fetch by this much (librdkafka: 1 s). With a
        # small queue that idled the worker: reading a 1 GB topic took 18 s instead of 2.4 s.
        "fetch.queue.backoff.ms": 10,
    }
    conf.update(kafka.client_config())
    conf.update(
        {
            "group.id": group,
            # Offsets are committed by the runtime only after a batch is durably delivered.
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": kafka.session_timeout_ms,
            "max.poll.interval.ms": kafka.max_poll_interval_ms,
        }
    )
    if kafka.group_instance_id:
        conf["group.instance.id"] = kafka.group_instance_id
    conf.update(overrides)
    if conf.get("group.protocol") == "consumer":
        for name in _CLASSIC_ONLY:
            conf.pop(name, None)
    return conf


def consumer_fatal(error: KafkaError, kafka: KafkaSettings, group: str) -> ConsumerFatal | None:
    """The :class:`ConsumerFatal` a consumer error means, None if the consumer lives on.

    librdkafka reports a fatal consumer error as ``_FATAL`` with the broker's error only in the
    text (``fatal()`` is not set on the consumer's error event), hence the text matching.
    """
    if error.code() != KafkaError._FATAL and not error.fatal():
        return None
    text, member = error.str(), kafka.group_instance_id
    where = f"consumer group {group!r}, group.instance.id {member!r} (kafka.group_instance_id)"
    if "still used by another member" in text:  # UNRELEASED_INSTANCE_ID (KIP-848 protocol)
        return ConsumerFatal(
            f"Kafka refused to let this consumer join {where}: a member with the same id has"
            " not left the group (a crashed predecessor, released after the broker's session"
            " timeout; or another process with the same id, which must be made unique)",
            rejoinable=True,
        )
    if "fenced" in text.lower():  # FENCED_INSTANCE_ID
        return ConsumerFatal(
            f"Kafka fenced this consumer out of {where}: another process joined with the same"
            " id. Every process needs its own kafka.group_instance_id (the Helm chart uses the"
            " pod name)"
        )
    return ConsumerFatal(f"the Kafka consumer of {group!r} failed fatally: {text}")


def end_offsets(
    consumer: Consumer, partitions: list[TopicPartition], timeout_s: float = END_OFFSETS_TIMEOUT_S
) -> dict[tuple[str, int], int]:
    """Each partition's end (high watermark) as the brokers say now: one ListOffsets request
    per partition leader, waited for at most ``timeout_s``; {} if they do not answer in time.

    ``get_watermark_offsets(cached=True)`` is free but only as fresh as the last fetch, and a
    paused partition fetches nothing.
    """
    return _offsets_at(consumer, partitions, OFFSET_LATEST, timeout_s)


def group_backlog(
    consumer: Consumer, topics: list[str], timeout_s: float = END_OFFSETS_TIMEOUT_S
) -> dict[tuple[str, int], int]:
    """Messages ``consumer``'s group has still to read in each partition of ``topics`` (names,
    or ``^regex`` as subscribed), as the brokers say now, without joining the group: one
    metadata request, one OffsetFetch, ListOffsets per partition leader, each waited for at
    most ``timeout_s``. A partition the group never committed in counts from its beginning
    (``auto.offset.reset`` earliest). {} if the brokers do not answer in time."""
    try:
        listed = consumer.list_topics(timeout=timeout_s).topics
        partitions = [
            TopicPartition(name, partition)
            for name, topic in sorted(listed.items())
            if topic.error is None and _subscribed(name, topics)
            for partition in topic.partitions
        ]
        if not partitions:
            return {}
        committed = consumer.committed(partitions, timeout=timeout_s)
    except KafkaException:
        return {}
    ends = end_offsets(consumer, partitions, timeout_s)
    never = [tp for tp in committed if tp.error is None and tp.offset < 0]
    starts = _offsets_at(consumer, never, OFFSET_EARLIEST, timeout_s) if never else {}
    backlog: dict[tuple[str, int], int] = {}
    for tp in committed:
        where = (tp.topic, tp.partition)
        read_up_to = tp.offset if tp.offset >= 0 else starts.get(where, -1)
        end = ends.get(where, -1)
        if tp.error is None and read_up_to >= 0 and end >= 0:
            backlog[where] = max(0, end - read_up_to)
    return backlog


Backlog = dict[tuple[str, int], int]  # (topic, partition) -> messages the group has to read


class BacklogProbe:
    """A group's backlog (:func:`group_backlog`) asked in the background, so the caller's loop
    keeps turning while the brokers answer (or do not): one ask at a time, through a consumer of
    the group that never subscribes, made at the first ask. ``report`` hears each answer."""

    def __init__(
        self,
        kafka: KafkaSettings,
        group: str,
        topics: list[str],
        report: Callable[[Backlog], None],
        **overrides: Any,
    ) -> None:
        self._config = consumer_config(kafka, group, **overrides)
        self._topics = topics
        self._report = report
        self._consumer: Consumer | None = None
        self._asking: threading.Thread | None = None

    def ask(self) -> None:
        """Ask again, unless the last ask is still waiting for its answer."""
        if self._asking is None or not self._asking.is_alive():
            self._asking = threading.Thread(target=self._ask, name="lag-probe", daemon=True)
            self._asking.start()

    def _ask(self) -> None:
        if self._consumer is None:
            self._consumer = Consumer(_logged(self._config))
        self._report(group_backlog(self._consumer, self._topics))

    def close(self) -> None:
        """After the ask in progress (bounded by its timeouts), so no answer comes later."""
        if self._asking is not None:
            self._asking.join()
        if self._consumer is not None:
            self._consumer.close()


def _subscribed(topic: str, subscription: list[str]) -> bool:
    return any(
        re.match(entry, topic) if entry.startswith("^") else entry == topic
        for entry in subscription
    )


def _offsets_at(
    consumer: Consumer, partitions: list[TopicPartition], timestamp: int, timeout_s: float
) -> dict[tuple[str, int], int]:
    """Each partition's offset at a ListOffsets ``timestamp`` (OFFSET_LATEST: the end)."""
    wanted = [TopicPartition(tp.topic, tp.partition, timestamp) for tp in partitions]
    try:
        answered = consumer.offsets_for_times(wanted, timeout=timeout_s)
    except KafkaException:
        return {}
    return {(tp.topic, tp.partition): tp.offset for tp in answered if tp.error is None}


def make_producer(kafka: KafkaSettings, **overrides: Any) -> Producer:
    conf = kafka.client_config()
    conf.update(
        {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": "lz4",
        }
    )
    conf.update(overrides)
    return Producer(_logged(conf))


def make_admin(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(_logged(kafka.client_config()))


def probe(kafka: KafkaSettings, timeout_s: float | None = None) -> None:
    """Return once a broker answers a metadata request; raise :class:`KafkaUnreachable` with
    one line (what failed, where, how to check) if none does within ``timeout_s``.

    What librdkafka logs meanwhile (a line per connection attempt) is kept for the reason, not
    printed. A failed authentication or TLS handshake ends the wait at once: waiting does not
    mend it.
    """
    timeout_s = PROBE_TIMEOUT_S if timeout_s is None else timeout_s
    seen = _Collector()
    quiet = logging.getLogger("librdkafka.probe")
    quiet.propagate, quiet.handlers[:] = False, [seen]
    quiet.setLevel(logging.DEBUG)
    errors: list[KafkaError] = []
    conf: dict[str, Any] = {**kafka.client_config(), "logger": quiet, "error_cb": errors.append}
    try:
        admin = AdminClient(conf)
    except KafkaException as exc:  # librdkafka refused the settings themselves
        raise KafkaUnreachable(_refused_settings(kafka, exc)) from None
    deadline = time.monotonic() + timeout_s
    last: str = ""
    while True:
        remaining = deadline - time.monotonic()
        try:
            if admin.list_topics(timeout=max(0.1, min(1.0, remaining))).brokers:
                return
        except KafkaException as exc:
            last = str(exc.args[0].str() if isinstance(exc.args[0], KafkaError) else exc)
        admin.poll(0)  # serves librdkafka's log lines and error callbacks
        said = [*seen.lines, *(error.str() for error in errors)]
        if remaining <= 0 or any(_hopeless(line) for line in said):
            raise KafkaUnreachable(kafka_unreachable(kafka, said or [last], timeout_s))


def _refused_settings(kafka: KafkaSettings, exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else exc
    text = error.str() if isinstance(error, KafkaError) else str(error)
    text = text.removeprefix("Failed to create admin client: ")
    hint = "check the kafka.* settings (fanout check-config prints them)"
    if "sasl.password" in text:
        hint = (
            "set kafka.sasl_password or kafka.sasl_password_file "
            "(FANOUT_KAFKA__SASL_PASSWORD[_FILE]) and kafka.sasl_username"
        )
    where = kafka.bootstrap_servers
    return f"cannot use Kafka at {where}: librdkafka refused the settings: {text} — {hint}"


def _hopeless(line: str) -> bool:
    lowered = line.lower()
    return any(s in lowered for s in ("authentication", "ssl handshake", "certificate verify"))


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Every level: a connection closed during the handshake is only an INFO line.
        self.lines = [*self.lines[-99:], record.getMessage()]


def ensure_topic(
    admin: AdminClient, topic: str, partitions: int = 1, timeout_s: float = 30
) -> None:
    """Create ``topic`` unless it exists (replication 1 locally; brokers may enforce more)."""
    metadata = admin.list_topics(timeout=timeout_s)
    if topic in metadata.topics:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions)])
    try:
        futures[topic].result(timeout=timeout_s)
    except KafkaException as exc:
        if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise
