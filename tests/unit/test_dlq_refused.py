"""Which DLQ producer errors stop the worker as a configuration error (the brokers' final word,
or a producer librdkafka declared dead) and which are retried. The local broker has no
authorizer and librdkafka's fatal errors cannot be provoked on it, so these are classified
here; tests/integration/test_dlq_refused.py shows a real refusal end to end."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from fanout.errors import ConfigError
from fanout.runtime.dlq import refused

TOPIC = "fanout.dlq.postgres"


def test_a_fatal_producer_error_is_a_configuration_error_naming_the_dlq() -> None:
    error = KafkaError(KafkaError._FATAL, "Fatal error: producer fenced", fatal=True)
    stop = refused(TOPIC, error)
    assert isinstance(stop, ConfigError)
    assert f"the producer of the DLQ {TOPIC} failed fatally" in str(stop)


def test_a_user_without_the_acl_is_told_which_grants_it_needs() -> None:
    stop = refused(TOPIC, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert stop is not None and "needs WRITE and DESCRIBE on it" in str(stop)


@pytest.mark.parametrize(
    "code",
    [KafkaError._MSG_TIMED_OUT, KafkaError.NOT_ENOUGH_REPLICAS, KafkaError._TRANSPORT],
)
def test_a_dlq_that_does_not_answer_is_not_a_configuration_error(code: int) -> None:
    assert refused(TOPIC, KafkaError(code)) is None
