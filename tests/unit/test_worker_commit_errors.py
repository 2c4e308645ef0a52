"""A commit the broker cannot take right now (its group coordinator away, e.g. while the broker
restarts) is skipped, not a crash: the next batch's commit covers those records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from tests.unit.test_worker import (  # noqa: F401  (make_harness is a fixture)
    Harness,
    ScriptedSink,
    committed,
    ends,
    kafka_messages,
    make_harness,
)


@pytest.mark.parametrize(
    "code",
    [KafkaError._WAIT_COORD, KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE],
)
def test_a_commit_refused_while_the_coordinator_is_away_is_skipped_and_the_next_one_covers_it(
    make_harness: Callable[..., tuple[Harness, ScriptedSink]],  # noqa: F811
    code: int,
) -> None:
    messages = kafka_messages(40)
    harness, _sink = make_harness(messages)
    commit = harness.consumer.commit
    refused: list[Any] = []

    def commit_once_refused(offsets: Any, asynchronous: bool) -> None:
        if not refused:
            refused.append(offsets)
            raise KafkaException(KafkaError(code))
        commit(offsets, asynchronous)

    harness.consumer.commit = commit_once_refused  # type: ignore[method-assign]
    harness.start()
    journal = harness.journal
    journal.wait_until("everything committed", lambda _: committed(journal) == ends(messages))
    harness.stop()  # no crash
    assert refused
