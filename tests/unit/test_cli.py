import json
from pathlib import Path

import pytest

from fanout.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def test_the_example_config_is_valid_and_printed_with_secrets_masked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FANOUT_SINKS__POSTGRES__PASSWORD", "hunter2")
    code = main(["--config", str(REPO / "config" / "fanout.example.yaml"), "check-config"])
    out = capsys.readouterr().out
    assert code == 0
    printed = json.loads(out)
    assert printed["sinks"]["postgres"]["schema"] == "public"
    assert printed["sinks"]["postgres"]["password"] == "**********"
    assert "hunter2" not in out


def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kafka:\n  topics: [a]\nsinks:\n  postgres:\n    batch: {max_wait_ms: -5}\n")
    assert main(["--config", str(path), "check-config"]) == 2
    assert "sinks.postgres.batch.max_wait_ms" in capsys.readouterr().err


def test_run_without_any_enabled_sink_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "none.yaml"
    path.write_text("kafka:\n  topics: [a]\n")
    assert main(["--config", str(path), "run"]) == 2
    assert "no sink is enabled" in capsys.readouterr().err
