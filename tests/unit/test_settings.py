from pathlib import Path
from typing import Any

import pytest

from fanout.errors import ConfigError
from fanout.runtime import kafka as kafka_clients
from fanout.settings import load_settings, require_subscription


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fanout.yaml"
    path.write_text(text)
    return path


def test_yaml_and_env_merge_with_env_winning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "kafka:\n  topics: [a]\nsinks:\n  postgres:\n    enabled: true\n    schema: app\n"
        "    batch: {max_events: 10, max_wait_ms: 50}\n",
    )
    monkeypatch.setenv("FANOUT_SINKS__POSTGRES__BATCH__MAX_EVENTS", "7")
    settings = load_settings(path)
    assert settings.sinks.postgres.batch.max_events == 7
    assert settings.sinks.postgres.batch.max_wait_ms == 50
    assert settings.sinks.postgres.db_schema == "app"
    assert settings.sinks.enabled() == ["postgres"]


def test_unknown_key_fails_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  topicz: [a]\n")
    with pytest.raises(ConfigError, match=r"kafka\.topicz"):
        load_settings(path)


def test_bad_value_fails_naming_the_nested_key(tmp_path: Path) -> None:
    path = write(tmp_path, "sinks:\n  postgres:\n    batch:\n      max_events: 0\n")
    with pytest.raises(ConfigError, match=r"sinks\.postgres\.batch\.max_events"):
        load_settings(path)


def test_bad_env_value_fails_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANOUT_SINKS__POSTGRES__PORT", "not-a-port")
    with pytest.raises(ConfigError, match=r"sinks\.postgres\.port"):
        load_settings()


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_invalid_topic_regex_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  topic_pattern: 'cdc\\\\.(unclosed'\n")
    with pytest.raises(ConfigError, match=r"kafka\.topic_pattern"):
        load_settings(path)


def test_a_subscription_is_required_to_run() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.topics"):
        require_subscription(load_settings())


def test_secrets_are_masked_when_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANOUT_SINKS__POSTGRES__PASSWORD", "hunter2")
    monkeypatch.setenv("FANOUT_KAFKA__SASL_PASSWORD", "s3cret")
    settings = load_settings()
    dumped = settings.model_dump_json()
    assert "hunter2" not in dumped and "s3cret" not in dumped and "hunter2" not in repr(settings)
    assert settings.sinks.postgres.conninfo()["password"] == "hunter2"
    assert settings.kafka.client_config()["sasl.password"] == "s3cret"


def test_kafka_passthrough_settings_reach_librdkafka(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "kafka:\n  security_protocol: SASL_SSL\n  sasl_mechanism: SCRAM-SHA-512\n"
        "  sasl_username: svc\n  sasl_password: pw\n  ssl_ca_location: /ca.pem\n"
        "  extra: {fetch.max.bytes: 1048576}\n",
    )
    conf = load_settings(path).kafka.client_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["ssl.ca.location"] == "/ca.pem"
    assert conf["fetch.max.bytes"] == 1048576


def test_clickhouse_is_embedded_unless_a_server_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().sinks.clickhouse.effective_mode == "embedded"
    monkeypatch.setenv("FANOUT_SINKS__CLICKHOUSE__HOST", "ch.internal")
    assert load_settings().sinks.clickhouse.effective_mode == "server"


def _consumer_conf(monkeypatch: pytest.MonkeyPatch, yaml: str, tmp_path: Path) -> dict[str, Any]:
    captured: dict[str, Any] = {}
    monkeypatch.setattr(kafka_clients, "Consumer", lambda conf: captured.update(conf))
    kafka_clients.make_consumer(load_settings(write(tmp_path, yaml)).kafka, "g")
    return captured


def test_consumer_prefetch_buffers_come_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yaml = "kafka:\n  prefetch_max_kbytes: 4096\n  fetch_max_bytes: 2097152\n"
    conf = _consumer_conf(monkeypatch, yaml, tmp_path)
    assert conf["queued.max.messages.kbytes"] == 4096
    assert conf["fetch.max.bytes"] == 2097152


def test_raw_librdkafka_settings_replace_the_prefetch_buffers_but_not_commit_control(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yaml = (
        "kafka:\n  prefetch_max_kbytes: 4096\n"
        "  extra: {queued.max.messages.kbytes: 1024, enable.auto.commit: true}\n"
    )
    conf = _consumer_conf(monkeypatch, yaml, tmp_path)
    assert conf["queued.max.messages.kbytes"] == 1024
    assert conf["enable.auto.commit"] is False


def test_a_fetch_smaller_than_one_message_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kafka\.fetch_max_bytes"):
        load_settings(write(tmp_path, "kafka:\n  fetch_max_bytes: 65536\n"))


def test_the_example_config_shows_the_default_batch_and_prefetch_sizes() -> None:
    example = load_settings(Path(__file__).parents[2] / "config" / "fanout.example.yaml")
    defaults = load_settings()
    assert example.sinks.postgres.batch == defaults.sinks.postgres.batch
    assert example.kafka.prefetch_max_kbytes == defaults.kafka.prefetch_max_kbytes
    assert example.kafka.fetch_max_bytes == defaults.kafka.fetch_max_bytes


# -- config errors say where: file and line (or env var), key path, problem --------------------


def problem(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    return str(caught.value)


def test_invalid_yaml_names_the_file_line_and_column(tmp_path: Path) -> None:
    message = problem(tmp_path, "kafka:\n  topics: [a\n  x: 1\n")
    assert message.startswith(f"invalid configuration: {tmp_path / 'fanout.yaml'}:3:4: ")
    assert "not valid YAML" in message and "line 2" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(("text", "found"), [("- a\n- b\n", "a list"), ("hello\n", "a single")])
def test_a_top_level_that_is_not_a_mapping_is_named(tmp_path: Path, text: str, found: str) -> None:
    message = problem(tmp_path, text)
    assert "fanout.yaml:1: the file must be a mapping of sections" in message
    assert found in message


def test_an_empty_file_means_the_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")).kafka.bootstrap_servers == "127.0.0.1:9092"


def test_a_directory_given_as_config_is_named_as_one(tmp_path: Path) -> None:
    (tmp_path / "fanout.yaml").write_text("kafka: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    assert str(caught.value) == (
        f"--config {tmp_path}: is a directory, not a YAML file (it holds fanout.yaml)"
    )


def test_a_directory_in_fanout_config_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FANOUT_CONFIG", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^FANOUT_CONFIG .*: is a directory"):
        load_settings()


def test_an_unknown_key_names_its_line_and_the_key_it_resembles(tmp_path: Path) -> None:
    message = problem(tmp_path, "kafka:\n  bootstrap_servers: x:1\n  topicz: [a]\n")
    assert message.endswith("fanout.yaml:3: kafka.topicz: unknown key (did you mean topics?)")


def test_a_bad_value_names_line_key_and_value(tmp_path: Path) -> None:
    message = problem(tmp_path, "sinks:\n  postgres:\n    enabled: true\n    port: abc\n")
    assert message.endswith(
        "fanout.yaml:4: sinks.postgres.port: Input should be a valid integer, unable to parse "
        "string as an integer (got 'abc')"
    )


def test_every_problem_gets_its_own_line(tmp_path: Path) -> None:
    message = problem(tmp_path, "kafka:\n  topicz: [a]\nsinks:\n  postgres:\n    port: abc\n")
    lines = message.splitlines()
    assert len(lines) == 2
    assert (
        "fanout.yaml:2: kafka.topicz" in lines[0]
        and "fanout.yaml:5: sinks.postgres.port" in (lines[1])
    )


def test_a_union_value_is_one_problem_not_one_per_type(tmp_path: Path) -> None:
    message = problem(tmp_path, "kafka:\n  extra:\n    linger.ms: [5]\n")
    assert len(message.splitlines()) == 1
    assert "fanout.yaml:3: kafka.extra.linger.ms: Input should be a valid string;" in message


def test_a_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANOUT_SINKS__POSTGRES__PORT", "not-a-port")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(
        "invalid configuration: env FANOUT_SINKS__POSTGRES__PORT: sinks.postgres.port: "
    )


def test_an_env_var_wins_over_the_file_and_is_named_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FANOUT_SINKS__POSTGRES__PORT", "0")
    message = problem(tmp_path, "sinks:\n  postgres:\n    port: 5432\n")
    assert "env FANOUT_SINKS__POSTGRES__PORT: sinks.postgres.port" in message


def test_an_env_list_that_is_not_json_names_the_variable_and_the_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FANOUT_KAFKA__TOPICS", "a,b")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        "invalid configuration: env FANOUT_KAFKA__TOPICS: kafka.topics takes a JSON list in an "
        """env var, e.g. FANOUT_KAFKA__TOPICS='["a", "b"]'"""
    )


def test_a_bad_secret_value_is_not_quoted_back(tmp_path: Path) -> None:
    message = problem(tmp_path, "sinks:\n  postgres:\n    password: 12345678\n")
    assert "sinks.postgres.password" in message and "12345678" not in message
