"""Workers the tests start get only the settings the test means (tests/support/pipeline.py)."""

from __future__ import annotations

import pytest

from tests.support.pipeline import clean_env, on_stack


def test_no_fanout_variable_of_the_shell_reaches_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANOUT_SINKS__ELASTICSEARCH__HOSTS", '["http://127.0.0.1:9200"]')
    monkeypatch.setenv("fanout_kafka__topics", '["x"]')  # pydantic-settings ignores case
    monkeypatch.setenv("PATH_FOR_TEST", "kept")
    env = clean_env({"FANOUT_LOGGING__FORMAT": "text"})
    assert not [
        name for name in env if name.upper().startswith("FANOUT_") and "LOGGING" not in name
    ]
    assert env["FANOUT_LOGGING__FORMAT"] == "text" and env["PATH_FOR_TEST"] == "kept"


def test_the_config_file_names_the_kafka_the_test_talks_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANOUT_KAFKA__BOOTSTRAP_SERVERS", "10.0.0.1:9092")
    assert on_stack({"kafka": {"topics": ["t"]}})["kafka"] == {
        "bootstrap_servers": "10.0.0.1:9092",
        "topics": ["t"],
    }
    own = {"kafka": {"bootstrap_servers": "127.0.0.1:1"}}
    assert on_stack(own) == own  # a test that means another address keeps it
