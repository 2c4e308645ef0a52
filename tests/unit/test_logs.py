"""Log lines as an operator reads them: secrets masked wherever they sit, librdkafka's own
lines through Python logging, a repeated line said once."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fanout.redact import secret_values
from fanout.runtime import kafka as kafka_clients
from fanout.runtime.logs import configure_logging
from fanout.settings import LoggingSettings, load_settings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_secrets_are_masked_in_messages_extra_fields_and_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "fanout.yaml"
    config.write_text(
        "kafka:\n  extra: {sasl.oauthbearer.client.secret: oauth-client-s3cret}\n"
        "sinks:\n  elasticsearch: {hosts: ['https://elastic:es-pa55word@es:9200']}\n"
    )
    settings = load_settings(config)
    configure_logging(LoggingSettings(format="json"), secret_values(settings))
    log = logging.getLogger("fanout.test")
    log.warning("connecting to %s", settings.sinks.elasticsearch.hosts[0])
    log.warning(
        "conninfo host=db password=hunter2-db-pw", extra={"dsn": "postgresql://u:pg-pw@db/x"}
    )
    try:
        raise RuntimeError("the broker said: bad secret oauth-client-s3cret")
    except RuntimeError:
        log.exception("login failed")
    err = capsys.readouterr().err
    for secret in ("es-pa55word", "hunter2-db-pw", "pg-pw", "oauth-client-s3cret"):
        assert secret not in err
    first, second, third = lines(err)
    assert first["msg"] == "connecting to https://elastic:**********@es:9200"
    assert second["dsn"] == "postgresql://u:**********@db/x"
    assert "bad secret **********" in str(third["exc"])


def test_the_same_line_in_plain_text_is_masked_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings(format="text"))
    logging.getLogger("fanout.test").error("GET https://u:topsecret@es:9200/_bulk failed")
    err = capsys.readouterr().err
    assert "topsecret" not in err and "https://u:**********@es:9200/_bulk failed" in err


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_librdkafka_logs_through_python_logging_once_not_on_every_reconnect(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "fanout.yaml"
    config.write_text(f"kafka: {{bootstrap_servers: '127.0.0.1:{_closed_port()}'}}\n")
    configure_logging(LoggingSettings(format="json"))
    consumer = kafka_clients.make_consumer(
        load_settings(config).kafka, "g", **{"reconnect.backoff.max.ms": 100}
    )
    consumer.subscribe(["t"])
    deadline = time.monotonic() + 3  # some 20 reconnect attempts
    while time.monotonic() < deadline:
        consumer.consume(10, timeout=0.2)
    consumer.close()
    err = capfd.readouterr().err
    assert all(line.startswith("{") for line in err.splitlines()), err[:500]  # no raw %3|… lines
    refused = [e for e in lines(err) if "Connection refused" in str(e["msg"])]
    assert refused and all(e["logger"] == "librdkafka" for e in refused)
    assert len(refused) <= 2, [e["msg"] for e in refused]
