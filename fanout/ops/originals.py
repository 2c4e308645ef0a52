"""The whole record behind a DLQ entry stored truncated, read back from where it came from.

An entry too large for the DLQ topic is stored cut, with ``fanout.truncated`` and the original
sizes in its headers (``fanout/runtime/dlq.py``); the whole record stays at its origin
(``fanout.origin.topic``/``partition``/``offset``) for as long as that topic keeps it. A cut
record cannot be replayed, so ``fanout dlq replay`` reads the original there, and takes it only
if it is the record that was dead-lettered: the original sizes match and the stored key and
value are its beginnings. Otherwise :meth:`Originals.fetch` says in words why the original is
not to be had (retention or compaction removed it, the topic is gone or was recreated).
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from fanout.ops.dlq import DlqEntry
from fanout.runtime.kafka import make_consumer
from fanout.settings import KafkaSettings

FETCH_TIMEOUT_S = 30.0


class OriginalUnavailable(Exception):
    """The whole record of a truncated entry cannot be read back; the message says why."""


class Originals:
    """Reads originals with one group-less consumer (assigned, never committed); ``close`` it."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = FETCH_TIMEOUT_S) -> None:
        self._kafka = kafka
        self._timeout_s = timeout_s
        self._consumer: Consumer | None = None

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def fetch(self, entry: DlqEntry) -> DlqEntry:
        """``entry`` with the original key, value and source headers in place of the cut ones;
        raises :class:`OriginalUnavailable`."""
        origin = entry.origin()
        where = f"{origin.topic}[{origin.partition}]@{origin.offset}"
        message = self._read(origin.topic, origin.partition, origin.offset, where)
        _check_same(entry, message, where)
        kept = tuple((k, v) for k, v in entry.headers if k.startswith("fanout."))
        return DlqEntry(
            partition=entry.partition,
            offset=entry.offset,
            key=message.key(),
            value=message.value(),
            headers=_source_headers(message) + _without_truncation_marks(kept),
            timestamp_ms=entry.timestamp_ms,
        )

    def _read(self, topic: str, partition: int, offset: int, where: str) -> Message:
        consumer = self._open()
        tp = TopicPartition(topic, partition)
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=self._timeout_s, cached=False)
        except KafkaException as exc:
            raise OriginalUnavailable(f"{where} cannot be read: {_text(exc)}") from None
        if offset < low:
            raise OriginalUnavailable(
                f"{where} is gone: the topic keeps offsets from {low} on (retention or"
                " compaction removed it)"
            )
        if offset >= high:
            raise OriginalUnavailable(
                f"{where} does not exist: the partition ends at {high} (recreated since?)"
            )
        consumer.assign([TopicPartition(topic, partition, offset)])
        try:
            return self._first_from(consumer, offset, where)
        finally:
            consumer.unassign()

    def _first_from(self, consumer: Consumer, offset: int, where: str) -> Message:
        deadline = time.monotonic() + self._timeout_s
        while time.monotonic() < deadline:
            for message in consumer.consume(1, timeout=1.0):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise OriginalUnavailable(f"{where} cannot be read: {error.str()}")
                if error is not None or (message.offset() or 0) > offset:
                    raise OriginalUnavailable(f"{where} is gone: removed by compaction")
                return message
        raise OriginalUnavailable(f"{where}: no answer within {self._timeout_s:g} s")

    def _open(self) -> Consumer:
        if self._consumer is None:
            self._consumer = make_consumer(
                self._kafka,
                f"{self._kafka.group_prefix}-dlq-reader",
                **{"enable.partition.eof": True},
            )
        return self._consumer


def _check_same(entry: DlqEntry, message: Message, where: str) -> None:
    """The record at the origin is the one dead-lettered: sizes and beginnings agree."""
    sizes = entry.original_sizes()
    key, value = message.key() or b"", message.value() or b""
    same = (
        sizes["key_bytes"] in (None, len(key))
        and sizes["value_bytes"] in (None, len(value))
        and key.startswith(entry.key or b"")
        and value.startswith(entry.value or b"")
    )
    if not same:
        raise OriginalUnavailable(
            f"the record now at {where} is not the one dead-lettered ({len(value)} value bytes,"
            f" the entry says {sizes['value_bytes']}): the topic was recreated since?"
        )


def _source_headers(message: Message) -> tuple[tuple[str, bytes], ...]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple(
        (name, value.encode() if isinstance(value, str) else value or b"") for name, value in pairs
    )


def _without_truncation_marks(
    headers: tuple[tuple[str, bytes], ...],
) -> tuple[tuple[str, bytes], ...]:
    # The whole record is in hand again; if it fails again the DLQ cuts and marks it anew.
    marks = ("fanout.truncated", "fanout.original.")
    return tuple((k, v) for k, v in headers if not k.startswith(marks))


def _text(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else exc
    return error.str() if isinstance(error, KafkaError) else str(error)
