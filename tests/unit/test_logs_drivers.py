"""Driver loggers: errors fanout handles itself are not logged twice (clickhouse-connect's
traceback for every value it cannot serialize, once per bisection step); the drivers' other
errors still are."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from fanout.runtime.logs import configure_logging
from fanout.settings import LoggingSettings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emitted(err: str) -> list[str]:
    return [json.loads(line)["logger"] for line in err.splitlines() if line.startswith("{")]


def test_clickhouse_serialization_errors_are_left_to_the_sink_other_driver_errors_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(LoggingSettings(level="INFO", format="json"))
    try:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
    except UnicodeEncodeError:
        logging.getLogger("clickhouse_connect.driver.transform").exception(
            "Error serializing column `x` into data type `String`"
        )
    logging.getLogger("clickhouse_connect.driver.httpclient").error("connection failed")
    assert emitted(capsys.readouterr().err) == ["clickhouse_connect.driver.httpclient"]


def test_at_debug_they_are_logged(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings(level="DEBUG", format="json"))
    logging.getLogger("clickhouse_connect.driver.transform").error("Error serializing column")
    assert emitted(capsys.readouterr().err) == ["clickhouse_connect.driver.transform"]
