"""Schema registry look-ups: settings, and each failure in its error class."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from confluent_kafka.schema_registry.error import SchemaRegistryError

from fanout.debezium.registry import MISSING_FOR_S, MISSING_MAX, SchemaRegistry, client_config
from fanout.errors import ConfigError, DecodeError, RetryableError
from fanout.settings import SchemaRegistrySettings, load_settings


def failing(error: Exception) -> SchemaRegistry:
    def fetch(schema_id: int) -> str:
        raise error

    return SchemaRegistry("http://registry.test", fetch, unavailable_after_s=0)


def test_avro_without_a_registry_url_fails_at_start_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.schema_registry\.url is required"):
        load_settings(kafka={"value_format": "avro"})


def test_the_password_comes_from_its_file_and_is_never_printed(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    settings = load_settings(
        kafka={
            "value_format": "avro",
            "schema_registry": {
                "url": "https://registry.test",
                "basic_auth_user": "fanout",
                "basic_auth_password_file": str(secret),
            },
        }
    )
    registry = settings.kafka.schema_registry
    assert "s3cret" not in repr(settings)
    assert client_config(registry)["basic.auth.user.info"] == "fanout:s3cret"


def test_an_unknown_schema_id_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="schema id 3 is not in the schema registry"):
        failing(SchemaRegistryError(404, 40403, "Schema not found")).schema(3)


def test_refused_credentials_stop_the_worker_with_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"refused the credentials \(HTTP 401\)"):
        failing(SchemaRegistryError(401, 40101, "Unauthorized")).schema(3)


def test_a_registry_that_stays_down_is_a_config_error_naming_its_url() -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = SchemaRegistrySettings(url=f"http://127.0.0.1:{port}", unavailable_after_s=0)
    with pytest.raises(ConfigError, match=f"schema registry http://127.0.0.1:{port} unavailable"):
        SchemaRegistry.connect(settings).schema(1)


def test_a_5xx_is_retried_until_the_deadline() -> None:
    calls: list[int] = []

    def fetch(schema_id: int) -> str:
        calls.append(schema_id)
        if len(calls) < 2:
            raise SchemaRegistryError(503, 50003, "unavailable")
        return '"string"'

    assert (
        SchemaRegistry("http://registry.test", fetch, unavailable_after_s=30).schema(1) == "string"
    )
    assert calls == [1, 1]


def test_a_registry_wait_longer_than_the_poll_interval_is_refused_at_start() -> None:
    registry = {"url": "http://registry.test", "unavailable_after_s": 300}
    with pytest.raises(ConfigError, match=r"unavailable_after_s \+ timeout_s must stay below"):
        load_settings(kafka={"value_format": "avro", "schema_registry": registry})


class Unknown:
    """A registry that has no schema at all, counting the requests it answers."""

    def __init__(self) -> None:
        self.requests: list[int] = []

    def __call__(self, schema_id: int) -> str:
        self.requests.append(schema_id)
        raise SchemaRegistryError(404, 40403, "Schema not found")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_run_of_records_with_an_unknown_schema_id_costs_one_request() -> None:
    registry_has_none, clock = Unknown(), Clock()
    registry = SchemaRegistry("http://registry.test", registry_has_none, clock=clock)
    for _ in range(50):  # every record still goes to the DLQ with the reason
        with pytest.raises(DecodeError, match="schema id 7 is not in the schema registry"):
            registry.schema(7)
    assert registry_has_none.requests == [7]

    clock.now += MISSING_FOR_S  # remembered for a short while only: then asked again
    with pytest.raises(DecodeError, match="schema id 7 is not in the schema registry"):
        registry.schema(7)
    assert registry_has_none.requests == [7, 7]


def test_the_unknown_ids_remembered_are_bounded_oldest_forgotten_first() -> None:
    registry_has_none = Unknown()
    registry = SchemaRegistry("http://registry.test", registry_has_none, clock=Clock())
    for schema_id in range(MISSING_MAX + 1):
        with pytest.raises(DecodeError):
            registry.schema(schema_id)
    with pytest.raises(DecodeError):
        registry.schema(MISSING_MAX)  # still remembered
    with pytest.raises(DecodeError):
        registry.schema(0)  # forgotten: asked again
    assert registry_has_none.requests == [*range(MISSING_MAX + 1), 0]


def test_a_stop_ends_the_retries_of_a_registry_that_is_away() -> None:
    """A worker told to stop does not wait out ``unavailable_after_s`` (nor calls it a
    configuration error): the record is consumed again by the next worker."""
    calls: list[int] = []

    def fetch(schema_id: int) -> str:
        calls.append(schema_id)
        raise SchemaRegistryError(503, 50003, "unavailable")

    stop = threading.Event()
    stop.set()
    registry = SchemaRegistry("http://registry.test", fetch, unavailable_after_s=3600, stop=stop)
    with pytest.raises(RetryableError, match="stopped while the schema registry"):
        registry.schema(1)
    assert calls == [1]
