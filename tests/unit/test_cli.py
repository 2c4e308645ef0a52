import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fanout.cli.main import main
from fanout.runtime import kafka as kafka_clients
from tests.support.pipeline import clean_env

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


def test_check_config_masks_secrets_in_kafka_extra_and_in_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text(
        "kafka:\n  topics: [a]\n  extra:\n"
        "    sasl.oauthbearer.client.secret: oauth-s3cret\n"
        "    ssl.keystore.password: keystore-pw\n"
        "    ssl.key.pem: '-----BEGIN PRIVATE KEY-----abc'\n"
        "    ssl.keystore.location: /etc/kafka/keystore.p12\n"
        "sinks:\n  elasticsearch:\n    hosts: ['https://elastic:es-pa55@es.internal:9200']\n"
    )
    assert main(["--config", str(path), "check-config"]) == 0
    out = capsys.readouterr().out
    for secret in ("oauth-s3cret", "keystore-pw", "PRIVATE KEY", "es-pa55"):
        assert secret not in out
    printed = json.loads(out)
    extra = printed["kafka"]["extra"]
    assert extra["sasl.oauthbearer.client.secret"] == "**********"
    assert extra["ssl.keystore.location"] == "/etc/kafka/keystore.p12"  # a path, not a secret
    hosts = printed["sinks"]["elasticsearch"]["hosts"]
    assert hosts == ["https://elastic:**********@es.internal:9200"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kafka:\n  topics: [a\n  x: 1\n", "bad.yaml:3:4: not valid YAML"),
        ("- kafka\n- sinks\n", "bad.yaml:1: the file must be a mapping of sections"),
        ("kafka:\n  topics: [a]\n  topicz: [b]\n", "bad.yaml:3: kafka.topicz: unknown key"),
    ],
)
def test_config_errors_exit_2_with_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fanout: invalid configuration: ") and expected in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_directory_as_config_exits_2_saying_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path), "check-config"]) == 2
    assert (
        capsys.readouterr().err == f"fanout: --config {tmp_path}: is a directory, not a YAML file\n"
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


@pytest.mark.parametrize("command", [["run", "--sink", "postgres"], ["lag"]])
def test_an_unreachable_broker_is_one_line_and_exit_1(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    monkeypatch.setattr(kafka_clients, "PROBE_TIMEOUT_S", 2.0)
    port = _closed_port()
    path = tmp_path / "away.yaml"
    path.write_text(
        f"kafka: {{bootstrap_servers: '127.0.0.1:{port}', topics: [a]}}\n"
        "sinks: {postgres: {enabled: true}}\n"
    )
    assert main(["--config", str(path), *command]) == 1
    err = capfd.readouterr().err  # librdkafka prints to fd 2 itself unless told otherwise
    assert err == (
        f"fanout: cannot reach Kafka at 127.0.0.1:{port} (kafka.bootstrap_servers): connection "
        "refused — is the broker running and listening there? check with: "
        f"kafka-broker-api-versions.sh --bootstrap-server 127.0.0.1:{port}\n"
    )


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``fanout check-config | head -1``: the reader is gone before fanout writes; no
    traceback, the exit status a shell reports for a tool ended by SIGPIPE."""
    path = tmp_path / "big.yaml"  # more than one buffer of output: several writes
    path.write_text("kafka:\n  topics: [" + ", ".join(f"t{i}" for i in range(3000)) + "]\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # `head` has already exited
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fanout.cli", "--config", str(path), "check-config"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=clean_env({"PYTHONPATH": str(REPO)}),
            cwd=REPO,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 141
