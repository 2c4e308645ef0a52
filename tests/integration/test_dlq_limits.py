"""The DLQ against real Kafka: topics created with explicit settings, records too large for the
topic stored truncated (whatever limit the topic really has), and `fanout dlq show` of an
entry nested deeper than any parser goes."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from fanout.errors import DecodeError
from fanout.events import Failure, Origin
from fanout.runtime.dlq import DeadLetterQueue, ensure_dlq_topic, open_dead_letter_queue
from fanout.runtime.kafka import make_producer
from fanout.settings import KafkaSettings
from tests.integration.ops_support import fanout, write_config
from tests.support.pipeline import bootstrap, read_topic, unique, wait_for

ORIGIN_TOPIC = "dbserver1.inventory.customers"


def settings(prefix: str, **dlq: Any) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap(), dlq_prefix=f"{prefix}.dlq", **dlq)


def failure(value: bytes, key: bytes = b'{"id": 7}', offset: int = 41) -> Failure:
    origin = Origin(ORIGIN_TOPIC, 2, offset, 1_738_288_800_000, key, value, (("trace", b"abc"),))
    return Failure(origin, "decode", DecodeError("value is neither a Debezium envelope …"))


def topic_config(admin: AdminClient, topic: str) -> dict[str, str]:
    resource = ConfigResource("topic", topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return {name: entry.value for name, entry in entries.items()}


def headers_of(message: Any) -> dict[str, str]:
    return {name: value.decode() for name, value in message.headers()}


def test_dlq_topics_are_created_with_explicit_settings() -> None:
    kafka = settings(unique("dlqcfg"), dlq_retention_ms=3_600_000, dlq_max_message_bytes=200_000)
    dlq = open_dead_letter_queue(kafka, "postgres")
    config = topic_config(AdminClient({"bootstrap.servers": bootstrap()}), dlq.topic)
    assert dlq.topic == f"{kafka.dlq_prefix}.postgres"
    assert config["cleanup.policy"] == "delete"
    assert config["retention.ms"] == "3600000"
    assert config["max.message.bytes"] == "200000"
    assert dlq.max_message_bytes == 200_000


def test_a_record_too_large_for_the_topic_is_stored_truncated_and_says_where_the_whole_is() -> None:
    kafka = settings(unique("dlqbig"), dlq_max_message_bytes=100_000)
    dlq = open_dead_letter_queue(kafka, "postgres")
    text = ("é" * 150_000).encode()  # two bytes a character: a cut must not split one
    big = b'{"blob": "' + text + b'"}'
    dlq.send(failure(big), attempts=1)
    dlq.send(failure(b'{"small": true}', offset=42), attempts=1)
    dlq.flush()  # does not raise: both are acknowledged

    stored = read_topic(dlq.topic, expect=2)
    truncated, small = sorted(stored, key=lambda m: m.offset())
    headers = headers_of(truncated)
    assert headers["fanout.truncated"] == "true"
    assert headers["fanout.original.value_bytes"] == str(len(big))
    assert headers["fanout.original.key_bytes"] == "9"
    assert (headers["fanout.origin.topic"], headers["fanout.origin.offset"]) == (ORIGIN_TOPIC, "41")
    assert headers["trace"] == "abc"  # the source's own headers kept while they are small
    assert truncated.key() == b'{"id": 7}'
    assert len(truncated.value()) < 100_000 and big.startswith(truncated.value())
    truncated.value().decode()  # cut on a character boundary
    assert "fanout.truncated" not in headers_of(small) and small.value() == b'{"small": true}'


def test_a_topic_made_elsewhere_with_a_smaller_limit_is_respected() -> None:
    kafka = settings(unique("dlqsmall"), dlq_max_message_bytes=1_000_000)
    topic = f"{kafka.dlq_prefix}.postgres"
    admin = AdminClient({"bootstrap.servers": bootstrap()})
    made = NewTopic(topic, num_partitions=1, config={"max.message.bytes": "80000"})
    admin.create_topics([made])[topic].result(timeout=30)
    assert ensure_dlq_topic(admin, topic, kafka) == 80_000  # read from the topic
    dlq = open_dead_letter_queue(kafka, "postgres")
    dlq.send(failure(b"x" * 300_000), attempts=1)
    dlq.flush()
    (stored,) = read_topic(topic, expect=1)
    assert headers_of(stored)["fanout.truncated"] == "true"
    assert len(stored.value()) < 80_000


def test_a_record_the_brokers_refuse_as_too_large_is_sent_again_cut() -> None:
    """The producer believes the topic takes 1 MB (its settings could not be read): the
    brokers refuse the record on delivery, and it is cut to half until it fits."""
    kafka = settings(unique("dlqrefused"))
    topic = f"{kafka.dlq_prefix}.postgres"
    admin = AdminClient({"bootstrap.servers": bootstrap()})
    made = NewTopic(topic, num_partitions=1, config={"max.message.bytes": "60000"})
    admin.create_topics([made])[topic].result(timeout=30)
    dlq = DeadLetterQueue(make_producer(kafka), topic, "postgres", 1_000_000)
    noise = random.Random(5).randbytes(500_000)  # the brokers limit compressed batches
    dlq.send(failure(noise), attempts=1)
    dlq.flush()
    (stored,) = read_topic(topic, expect=1)
    headers = headers_of(stored)
    assert headers["fanout.truncated"] == "true"
    assert headers["fanout.original.value_bytes"] == "500000"
    assert len(stored.value()) < 60_000 and noise.startswith(stored.value())


def test_dlq_show_of_a_deeply_nested_entry_cuts_it_and_says_so(tmp_path: Path) -> None:
    prefix = unique("dlqdeep")
    kafka = settings(prefix)
    dlq = open_dead_letter_queue(kafka, "postgres")
    deep = b'{"a": ' * 50_000 + b"1" + b"}" * 50_000
    nested = b'{"a": ' * 200 + b"1" + b"}" * 200
    dlq.send(failure(deep, offset=1), attempts=1)
    dlq.send(failure(nested, offset=2), attempts=1)
    dlq.flush()
    wait_for(lambda: len(read_topic(dlq.topic, timeout_s=5, expect=2)) == 2, 30, "two entries")
    config = write_config(
        tmp_path,
        {"kafka": {"bootstrap_servers": bootstrap(), "dlq_prefix": f"{prefix}.dlq"}},
    )
    too_deep = fanout(config, "dlq", "show", "--sink", "postgres", "0:0")
    assert too_deep.code == 0, too_deep
    assert "RecursionError" not in too_deep.stderr + too_deep.stdout
    assert "note: JSON nested too deep to parse: shown as text" in too_deep.stdout
    cut = fanout(config, "dlq", "show", "--sink", "postgres", "0:1", "--json")
    assert cut.code == 0, cut
    detail = cut.json()
    assert detail["notes"]["value"].startswith("JSON nested deeper than 32 levels")
    shown = detail["value"]
    for _ in range(32):
        shown = shown["a"]
    assert shown == "… (object cut)"
