"""What a fatal consumer error means to the worker (texts as librdkafka 2.16 words them)."""

from confluent_kafka import KafkaError

from fanout.runtime.kafka import consumer_fatal
from fanout.settings import KafkaSettings

KAFKA = KafkaSettings(topics=["t"], group_instance_id="pod-0")
FENCED = (
    "Fatal error: Broker: Static consumer fenced by other consumer with same group.instance.id:"
    " Fatal consumer error: Broker: Static consumer fenced by other consumer with same"
    " group.instance.id"
)
UNRELEASED = (
    "Fatal error: Broker: The instance ID is still used by another member in the consumer"
    " group: ConsumerGroupHeartbeat fatal error: Broker: The instance ID is still used by"
    " another member in the consumer group"
)


def test_a_fenced_member_is_a_configuration_error_naming_the_id_and_does_not_rejoin() -> None:
    fatal = consumer_fatal(KafkaError(KafkaError._FATAL, FENCED), KAFKA, "fanout-postgres")
    assert fatal is not None and not fatal.rejoinable
    assert "'pod-0'" in str(fatal) and "kafka.group_instance_id" in str(fatal)
    assert "'fanout-postgres'" in str(fatal)


def test_an_id_still_held_by_another_member_may_join_again() -> None:
    fatal = consumer_fatal(KafkaError(KafkaError._FATAL, UNRELEASED), KAFKA, "fanout-postgres")
    assert fatal is not None and fatal.rejoinable
    assert "has not left the group" in str(fatal)


def test_other_fatal_errors_keep_librdkafkas_words_and_ordinary_errors_are_not_fatal() -> None:
    other = consumer_fatal(KafkaError(KafkaError._FATAL, "Fatal error: odd"), KAFKA, "g")
    assert other is not None and "Fatal error: odd" in str(other) and not other.rejoinable
    assert consumer_fatal(KafkaError(KafkaError._TRANSPORT, "down"), KAFKA, "g") is None
    assert consumer_fatal(KafkaError(KafkaError._PARTITION_EOF), KAFKA, "g") is None
