"""Kafka smoke test: create a topic with the admin client, produce, consume it back."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.support.pipeline import unique, wait_for


def test_create_produce_consume(kafka_admin: AdminClient, kafka_bootstrap: str) -> None:
    topic = unique("smoke_kafka")
    kafka_admin.create_topics([NewTopic(topic, num_partitions=3)])[topic].result(timeout=30)
    try:
        wait_for(lambda: topic in kafka_admin.list_topics(timeout=10).topics, 30, topic)
        assert len(kafka_admin.list_topics(topic, timeout=10).topics[topic].partitions) == 3

        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        delivered: list[str] = []
        producer.produce(
            topic,
            key=b"k1",
            value=b'{"id": 1}',
            headers={"h": b"v"},
            on_delivery=lambda err, msg: delivered.append(str(err or "ok")),
        )
        assert producer.flush(30) == 0
        assert delivered == ["ok"]

        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": unique("smoke_group"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.subscribe([topic])
            msg = wait_for(lambda: _poll_one(consumer), 60, f"a message on {topic}")
            assert (msg.key(), msg.value()) == (b"k1", b'{"id": 1}')
            assert msg.headers() == [("h", b"v")]
            consumer.commit(message=msg, asynchronous=False)
        finally:
            consumer.close()
    finally:
        kafka_admin.delete_topics([topic])[topic].result(timeout=30)


def _poll_one(consumer: Consumer):  # type: ignore[no-untyped-def]
    msg = consumer.poll(1.0)
    if msg is None:
        return None
    assert msg.error() is None, msg.error()
    return msg
