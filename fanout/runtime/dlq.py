"""The per-sink dead-letter queue: ``<dlq_prefix>.<sink>``.

A DLQ record keeps the original key and value byte for byte, so it can be replayed through the
sink after the cause is fixed, and says why it is there in headers (listed in docs/ARCHITECTURE.md).
Delivery guarantee: :meth:`DeadLetterQueue.flush` returns only when every record sent so far is
acknowledged by the brokers (acks=all); the runtime commits offsets only after that.

Limits: the topic is created with explicit settings (``cleanup.policy=delete``, ``retention.ms``,
``max.message.bytes``; ``kafka.dlq_*``) and the producer sends nothing larger than the topic
takes. A record that would not fit is stored truncated — key and value cut, headers
``fanout.truncated: true`` and the original sizes — next to the ``fanout.origin.*`` headers that
say where the whole record still lies. If the brokers refuse a record as too large anyway (a
topic created elsewhere with a smaller limit), it is sent again cut to half, so an oversized
record never fails the batch: the worker goes on and commits.

A DLQ the brokers will never take a record into — the producer failed fatally (librdkafka
``_FATAL``), the Kafka user may not write the topic, a topic created elsewhere that refuses the
record (a keyless entry on a compacted topic), a policy — is :class:`DlqRefused`, a
configuration error: the worker stops consuming, says why, and exits 2 (like a fatal consumer
error). A DLQ that does not answer (timeouts, a broker away) stays a RetryableError.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
)

from fanout.errors import ConfigError, RetryableError
from fanout.events import Failure
from fanout.runtime import kafka as kafka_clients
from fanout.settings import KafkaSettings

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000  # keep a huge exception text from bloating every header
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000  # librdkafka's default message.max.bytes
TRUNCATED = "fanout.truncated"
ORIGINAL_KEY_BYTES = "fanout.original.key_bytes"
ORIGINAL_VALUE_BYTES = "fanout.original.value_bytes"
ORIGINAL_HEADERS_BYTES = "fanout.original.headers_bytes"  # only when the source's were dropped
# What a record costs beyond its key, value and headers: the record's own framing (varints,
# attributes, deltas), the batch header around it and lz4's worst case on data that does not
# compress (a truncated record can be incompressible).
_FRAMING_BYTES = 1024
_LZ4_SLACK = 0.01
_HEADER_FRAMING_BYTES = 10  # per header: the length varints
# A replayed entry that fails again keeps saying it was truncated, and what the original was
# (`fanout dlq replay` itself reads a truncated entry's whole record back from its origin first:
# fanout/ops/originals.py).
_CARRIED = frozenset({TRUNCATED, ORIGINAL_KEY_BYTES, ORIGINAL_VALUE_BYTES, ORIGINAL_HEADERS_BYTES})
_SMALLEST_LIMIT = 4096  # below this, halving again would not help: the error is something else
_RESENDS = 6
Headers = list[tuple[str, str | bytes | None]]
_UNAUTHORIZED = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
    }
)
# The brokers' final word on a record: sending it again gets the same answer.
_REFUSED = _UNAUTHORIZED | {
    KafkaError.INVALID_RECORD,
    KafkaError.POLICY_VIOLATION,
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.INVALID_REQUIRED_ACKS,
}


class DlqRefused(ConfigError):
    """The DLQ will never take the records: nothing can be dead-lettered, so nothing more is
    committed; the worker stops as for any configuration error."""


def refused(topic: str, error: KafkaError) -> DlqRefused | None:
    """The :class:`DlqRefused` a producer error means, None if sending again may succeed."""
    if error.fatal():
        return DlqRefused(
            f"the producer of the DLQ {topic} failed fatally: {error.str()} (it sends nothing"
            " more; a restart makes a new one)"
        )
    if error.code() in _UNAUTHORIZED:
        return DlqRefused(
            f"the DLQ {topic} refuses the records: {error.str()}: the Kafka user needs WRITE and"
            " DESCRIBE on it, and CREATE to make it (kafka.dlq_prefix, kafka.sasl_username)"
        )
    if error.code() in _REFUSED:
        return DlqRefused(
            f"the DLQ {topic} refuses the records: {error.str()}: fanout creates it with"
            " cleanup.policy=delete; was it created elsewhere with other settings (a compacted"
            " topic refuses a keyless entry) or does a broker policy forbid it? (kafka.dlq_prefix)"
        )
    return None


def dlq_headers(failure: Failure, sink: str, attempts: int) -> Headers:
    origin = failure.origin
    previous = _previous_attempts(origin.headers)
    headers = {
        "fanout.error.stage": failure.stage,
        "fanout.error.class": failure.error_class,
        "fanout.error.message": str(failure.error)[:MAX_MESSAGE_CHARS],
        "fanout.origin.topic": origin.topic,
        "fanout.origin.partition": str(origin.partition),
        "fanout.origin.offset": str(origin.offset),
        "fanout.origin.timestamp": "" if origin.timestamp_ms is None else str(origin.timestamp_ms),
        "fanout.sink": sink,
        "fanout.attempts": str(previous + attempts),
        "fanout.failed_at": str(int(time.time() * 1000)),
    }
    kept: Headers = [
        (k, v) for k, v in origin.headers if not k.startswith("fanout.") or k in _CARRIED
    ]
    return kept + [(k, v.encode()) for k, v in headers.items()]


def _previous_attempts(headers: Sequence[tuple[str, bytes]]) -> int:
    """Attempts already spent on a record that came back from the DLQ (a replay)."""
    for key, value in headers:
        if key == "fanout.attempts":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


# -- fitting a record into the topic's limit ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: Headers


def _headers_size(headers: Headers) -> int:
    return sum(
        len(name.encode()) + len(value or b"") + _HEADER_FRAMING_BYTES for name, value in headers
    )


def record_size(record: Record) -> int:
    """An upper bound of what ``record`` costs against ``max.message.bytes`` (uncompressed)."""
    return len(record.key or b"") + len(record.value or b"") + _headers_size(record.headers)


def _budget(limit: int) -> int:
    return int(limit * (1 - _LZ4_SLACK)) - _FRAMING_BYTES


def fit(record: Record, limit: int) -> Record:
    """``record`` unchanged if it fits ``limit`` bytes, else truncated to fit, and saying so."""
    budget = _budget(limit)
    if record_size(record) <= budget:
        return record
    key, value = record.key or b"", record.value or b""
    marks: Headers = [
        (TRUNCATED, b"true"),
        (ORIGINAL_KEY_BYTES, str(len(key)).encode()),
        (ORIGINAL_VALUE_BYTES, str(len(value)).encode()),
    ]
    headers = [*record.headers, *marks]
    if _headers_size(headers) > budget // 2:  # the source's own headers are the bulk: drop them
        source = [(k, v) for k, v in record.headers if not k.startswith("fanout.")]
        ours = [(k, v) for k, v in record.headers if k.startswith("fanout.")]
        marks.append((ORIGINAL_HEADERS_BYTES, str(_headers_size(source)).encode()))
        headers = [*ours, *marks]
    room = max(0, budget - _headers_size(headers))
    key_room = min(len(key), max(room // 2, room - len(value)))
    value_room = min(len(value), room - key_room)
    return Record(
        _cut(key, key_room) if record.key is not None else None,
        _cut(value, value_room) if record.value is not None else None,
        headers,
    )


def _cut(data: bytes, size: int) -> bytes:
    """The first ``size`` bytes, back to a UTF-8 character boundary (text stays readable)."""
    if size >= len(data):
        return data
    end = size
    while end > max(0, size - 3) and data[end] & 0xC0 == 0x80:  # inside a character
        end -= 1
    return data[:size] if data[end] & 0xC0 == 0x80 else data[:end]  # not UTF-8: as is


# -- the producer side -------------------------------------------------------------------------


class DeadLetterQueue:
    """Sends failures to ``topic``; ``max_message_bytes`` is the producer's and the topic's
    limit (records above it are truncated, see the module docstring)."""

    def __init__(
        self,
        producer: Producer,
        topic: str,
        sink: str,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._producer = producer
        self.topic = topic
        self._sink = sink
        self.max_message_bytes = max_message_bytes
        self._errors: list[KafkaError] = []
        self._too_large: list[tuple[Record, int]] = []  # refused by the brokers: send again

    def send(self, failure: Failure, attempts: int) -> None:
        origin = failure.origin
        headers = dlq_headers(failure, self._sink, attempts)
        self._send(Record(origin.key, origin.value, headers), self.max_message_bytes)
        self._producer.poll(0)

    def _send(self, original: Record, limit: int) -> None:
        for _ in range(_RESENDS):
            record = fit(original, limit)
            if record is not original:
                self._note_truncated(original, limit)
            try:
                self._produce(record, partial(self._on_delivery, original, limit))
                return
            except KafkaException as exc:
                error = exc.args[0]
                stop = refused(self.topic, error)
                if stop is not None:
                    raise stop from exc
                if error.code() != KafkaError.MSG_SIZE_TOO_LARGE or limit <= _SMALLEST_LIMIT:
                    raise RetryableError(f"DLQ {self.topic}: {error.str()}") from exc
                limit //= 2  # our estimate of the framing was short: cut deeper
        raise RetryableError(f"DLQ {self.topic}: record still too large after {_RESENDS} cuts")

    def _produce(self, record: Record, on_delivery: Any) -> None:
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    key=record.key,
                    value=record.value,
                    headers=record.headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain, then again
                self._producer.poll(0.1)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything sent is acknowledged; raise RetryableError otherwise, or
        :class:`DlqRefused` if the brokers will never take a record."""
        deadline = time.monotonic() + timeout_s
        remaining = self._producer.flush(timeout_s)
        for _ in range(_RESENDS):
            if not self._too_large:
                break
            again, self._too_large = self._too_large, []
            for original, limit in again:
                self._send(original, limit)
            remaining = self._producer.flush(max(0.0, deadline - time.monotonic()))
        errors, self._errors = self._errors, []
        errors.extend(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) for _ in self._too_large)
        self._too_large = []
        for error in errors:
            stop = refused(self.topic, error)
            if stop is not None:
                raise stop
        if remaining or errors:
            reason = errors[0].str() if errors else f"{remaining} record(s) unacknowledged"
            raise RetryableError(f"DLQ {self.topic} not acknowledged: {reason}")

    def _on_delivery(
        self, original: Record, limit: int, error: KafkaError | None, _message: Message
    ) -> None:
        if error is None:
            return
        if error.code() == KafkaError.MSG_SIZE_TOO_LARGE and limit > _SMALLEST_LIMIT:
            # The topic takes less than we were told (created elsewhere): cut it to half.
            self._too_large.append((original, min(limit, record_size(original)) // 2))
            return
        self._errors.append(error)

    def _note_truncated(self, original: Record, limit: int) -> None:
        log.warning(
            "DLQ record truncated to fit the topic's max.message.bytes",
            extra={
                "sink": self._sink,
                "dlq_topic": self.topic,
                "limit_bytes": limit,
                "key_bytes": len(original.key or b""),
                "value_bytes": len(original.value or b""),
            },
        )


# -- the topic ---------------------------------------------------------------------------------


def topic_config(kafka: KafkaSettings) -> dict[str, str]:
    """The settings a DLQ topic is created with."""
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(kafka.dlq_retention_ms),
        "max.message.bytes": str(kafka.dlq_max_message_bytes),
    }


def ensure_dlq_topic(admin: AdminClient, topic: str, kafka: KafkaSettings) -> int:
    """Create ``topic`` with ``topic_config`` unless it exists; the record size limit to use:
    ``kafka.dlq_max_message_bytes``, or less if an existing topic takes less."""
    timeout_s = 30.0
    limit = kafka.dlq_max_message_bytes
    if topic not in admin.list_topics(timeout=timeout_s).topics:
        new = NewTopic(
            topic,
            num_partitions=kafka.dlq_partitions,
            replication_factor=kafka.dlq_replication_factor or -1,
            config=topic_config(kafka),
        )
        try:
            admin.create_topics([new])[topic].result(timeout=timeout_s)
            return limit
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    existing = _topic_limit(admin, topic, timeout_s)
    if existing is not None and existing < limit:
        log.warning(
            "DLQ topic takes smaller records than kafka.dlq_max_message_bytes; larger entries"
            " are truncated to its limit",
            extra={"dlq_topic": topic, "max_message_bytes": existing, "configured": limit},
        )
        return existing
    return limit


def _topic_limit(admin: AdminClient, topic: str, timeout_s: float) -> int | None:
    """The topic's ``max.message.bytes``, None if it cannot be read (no DescribeConfigs ACL):
    then a refused record is cut again on delivery (``DeadLetterQueue``)."""
    resource = ConfigResource("topic", topic)
    try:
        config = admin.describe_configs([resource])[resource].result(timeout=timeout_s)
        return int(config["max.message.bytes"].value)
    except (KafkaException, KeyError, ValueError, TypeError):
        return None


def open_dead_letter_queue(kafka: KafkaSettings, sink: str) -> DeadLetterQueue:
    """The sink's DLQ: its topic ensured, a producer that sends nothing the topic refuses."""
    topic = kafka_clients.dlq_topic(kafka, sink)
    try:
        limit = ensure_dlq_topic(kafka_clients.make_admin(kafka), topic, kafka)
    except KafkaException as exc:  # e.g. no CREATE on the topic: a configuration error
        stop = refused(topic, exc.args[0])
        if stop is None:
            raise
        raise stop from exc
    producer = kafka_clients.make_producer(kafka, **{"message.max.bytes": limit})
    return DeadLetterQueue(producer, topic, sink, limit)
