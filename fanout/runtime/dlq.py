"""The per-sink dead-letter queue: ``<dlq_prefix>.<sink>``.

A DLQ record keeps the original key and value byte for byte, so it can be replayed through the
sink after the cause is fixed, and says why it is there in headers (listed in docs/ARCHITECTURE.md).
Delivery guarantee: :meth:`DeadLetterQueue.flush` returns only when every record sent so far is
acknowledged by the brokers (acks=all); the runtime commits offsets only after that.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from confluent_kafka import KafkaError, Message, Producer

from fanout.errors import RetryableError
from fanout.events import Failure

MAX_MESSAGE_CHARS = 2000  # keep a huge exception text from bloating every header


def dlq_headers(failure: Failure, sink: str, attempts: int) -> list[tuple[str, str | bytes | None]]:
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
    kept: list[tuple[str, str | bytes | None]] = [
        (k, v) for k, v in origin.headers if not k.startswith("fanout.")
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


class DeadLetterQueue:
    def __init__(self, producer: Producer, topic: str, sink: str) -> None:
        self._producer = producer
        self.topic = topic
        self._sink = sink
        self._errors: list[KafkaError] = []

    def send(self, failure: Failure, attempts: int) -> None:
        origin = failure.origin
        self._producer.produce(
            self.topic,
            key=origin.key,
            value=origin.value,
            headers=dlq_headers(failure, self._sink, attempts),
            on_delivery=self._on_delivery,
        )
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything sent is acknowledged; raise RetryableError otherwise."""
        remaining = self._producer.flush(timeout_s)
        errors, self._errors = self._errors, []
        if remaining or errors:
            reason = errors[0].str() if errors else f"{remaining} record(s) unacknowledged"
            raise RetryableError(f"DLQ {self.topic} not acknowledged: {reason}")

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._errors.append(error)
