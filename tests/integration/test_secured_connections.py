"""Secured connections against the real local stack: `fanout run --sink postgres` consumes
through Kafka's SASL_SSL listener (SCRAM-SHA-512, the devstack CA) and writes to PostgreSQL over
TLS (verify-full) as a role that may only log in that way, with a SCRAM password; every secret
comes from a ``…_file`` setting. A wrong password or a certificate from a CA the client does
not trust ends the worker quickly with one line naming the connection.

`scripts/devstack up` makes the listener, the role and the CA (`scripts/devstack env` prints
them as DEVSTACK_* variables, the defaults here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.runtime_support import Pipeline, all_tables_state, diff, oracle, stream
from tests.support.debezium import produce_stream
from tests.support.pipeline import REPO, WorkerProcess, wait_caught_up

CA = Path(os.environ.get("DEVSTACK_TLS_CA", REPO / ".devstack" / "tls" / "ca.pem"))
KAFKA_SASL = os.environ.get("DEVSTACK_KAFKA_SASL_BOOTSTRAP_SERVERS", "127.0.0.1:9094")
KAFKA_USER = os.environ.get("DEVSTACK_KAFKA_SASL_USERNAME", "fanout")
KAFKA_PASSWORD = os.environ.get("DEVSTACK_KAFKA_SASL_PASSWORD", "fanout-scram-secret")
PG_TLS_USER = os.environ.get("DEVSTACK_PG_TLS_USER", "fanout_tls")
PG_TLS_PASSWORD = os.environ.get("DEVSTACK_PG_TLS_PASSWORD", "fanout-tls-secret")
WRONG = "not-the-password-0123"
FAIL_FAST_S = 30.0  # "well under a minute", start-up of the Python process included


@pytest.fixture(scope="module")
def secured_stack() -> None:
    if not CA.exists():
        pytest.fail(f"{CA} is missing: run `scripts/devstack up` (it makes the devstack CA)")


@pytest.fixture
def untrusted_ca(tmp_path: Path) -> Path:
    """A CA of its own that signed nothing the stack serves."""
    key, cert = tmp_path / "other-ca.key", tmp_path / "other-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=not the devstack CA"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def secret(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(value + "\n")  # as a mounted Secret made with `echo` has it
    path.chmod(0o600)
    return str(path)


def secured_config(
    line: Pipeline,
    tmp_path: Path,
    *,
    kafka_password: str = KAFKA_PASSWORD,
    kafka_ca: Path = CA,
    pg_password: str = PG_TLS_PASSWORD,
    pg_ca: Path = CA,
) -> dict[str, Any]:
    config = line.config()
    config["kafka"].update(
        {
            "bootstrap_servers": KAFKA_SASL,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": KAFKA_USER,
            "sasl_password_file": secret(tmp_path, "kafka-password", kafka_password),
            "ssl_ca_location": str(kafka_ca),
        }
    )
    pg = config["sinks"]["postgres"]
    pg.pop("password", None)
    pg.update(
        {
            "user": PG_TLS_USER,
            "password_file": secret(tmp_path, "pg-password", pg_password),
            "sslmode": "verify-full",
            "sslrootcert": str(pg_ca),
            "config_error_exit_s": 0,
        }
    )
    config["logging"] = {"format": "text"}
    return config


def exits_soon(worker: WorkerProcess) -> tuple[int, float]:
    t0 = time.monotonic()
    code = worker.wait(FAIL_FAST_S)
    return code, time.monotonic() - t0


def error_lines(log: str) -> list[str]:
    return [
        line for line in log.splitlines() if re.search(r"error|fail|refused|cannot", line, re.I)
    ]


def assert_one_clear_line(log: str, *needles: str) -> None:
    lines = error_lines(log)
    assert lines, f"no error line in:\n{log[-3000:]}"
    assert any(all(n in line for n in needles) for line in lines), (
        f"no line naming {needles} in:\n{log[-3000:]}"
    )
    assert len(lines) <= 3, f"a flood, not one line ({len(lines)}):\n{log[-3000:]}"
    assert "%3|" not in log and "%4|" not in log, f"librdkafka's own printer:\n{log[-3000:]}"
    for value in (KAFKA_PASSWORD, PG_TLS_PASSWORD, WRONG):
        assert value not in log


def test_worker_consumes_over_sasl_ssl_and_writes_over_tls_with_secrets_from_files(
    secured_stack: None,
    pipeline: Pipeline,
    pg: psycopg.Connection[Any],
    workers: list[Any],
    tmp_path: Path,
) -> None:
    messages = stream(600, n_keys=50)
    produce_stream(pipeline.topic, messages)
    worker = WorkerProcess("postgres", secured_config(pipeline, tmp_path), pipeline.workdir)
    workers.append(worker.start())
    wait_caught_up(pipeline.group, [pipeline.topic], timeout_s=120)
    # Read back as the TLS-only role (it owns the tables it made), over TLS as well.
    tls_conninfo = {
        **{k: v for k, v in pipeline.pg.items() if k in ("host", "port", "dbname")},
        "user": PG_TLS_USER,
        "password": PG_TLS_PASSWORD,
        "sslmode": "verify-full",
        "sslrootcert": str(CA),
    }
    with psycopg.connect(**tls_conninfo, autocommit=True) as tls_pg:
        actual, expected = all_tables_state(tls_pg, pipeline.schema), oracle(messages)
    assert actual == expected, diff(actual, expected)
    owners = {
        row[0]
        for row in pg.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = %s", (pipeline.schema,)
        )
    }
    assert owners == {PG_TLS_USER}
    # That role cannot log in without TLS (pg_hba: hostssl only), so the rows came over TLS.
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|rejects connection"):
        psycopg.connect(**{**tls_conninfo, "sslmode": "disable"}).close()
    assert worker.process is not None and worker.process.poll() is None, worker.log()[-3000:]
    log = worker.log()
    assert KAFKA_PASSWORD not in log and PG_TLS_PASSWORD not in log


def test_check_config_prints_no_secret_read_from_a_file(
    secured_stack: None, pipeline: Pipeline, tmp_path: Path
) -> None:
    path = tmp_path / "check.yaml"
    path.write_text(json.dumps(secured_config(pipeline, tmp_path)))
    proc = subprocess.run(
        ["python", "-m", "fanout.cli", "--config", str(path), "check-config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert KAFKA_PASSWORD not in proc.stdout + proc.stderr
    assert PG_TLS_PASSWORD not in proc.stdout + proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["kafka"]["sasl_password"] == "**********"
    assert printed["kafka"]["sasl_password_file"].endswith("kafka-password")
    assert printed["sinks"]["postgres"]["password"] == "**********"


def test_wrong_kafka_password_fails_fast_with_one_line(
    secured_stack: None, pipeline: Pipeline, tmp_path: Path, workers: list[Any]
) -> None:
    config = secured_config(pipeline, tmp_path, kafka_password=WRONG)
    worker = WorkerProcess("postgres", config, pipeline.workdir).start()
    workers.append(worker)
    code, took = exits_soon(worker)
    assert code == 1, worker.log()[-2000:]  # Kafka unreachable at start
    assert took < FAIL_FAST_S
    assert_one_clear_line(worker.log(), KAFKA_SASL, "kafka.bootstrap_servers", "authentication")


def test_untrusted_kafka_certificate_fails_fast_with_one_line(
    secured_stack: None,
    pipeline: Pipeline,
    tmp_path: Path,
    workers: list[Any],
    untrusted_ca: Path,
) -> None:
    config = secured_config(pipeline, tmp_path, kafka_ca=untrusted_ca)
    worker = WorkerProcess("postgres", config, pipeline.workdir).start()
    workers.append(worker)
    code, took = exits_soon(worker)
    assert code == 1, worker.log()[-2000:]
    assert took < FAIL_FAST_S
    assert_one_clear_line(worker.log(), KAFKA_SASL, "kafka.bootstrap_servers", "TLS")


def test_wrong_postgres_password_fails_fast_with_one_line(
    secured_stack: None, pipeline: Pipeline, tmp_path: Path, workers: list[Any]
) -> None:
    config = secured_config(pipeline, tmp_path, pg_password=WRONG)
    worker = WorkerProcess("postgres", config, pipeline.workdir).start()
    workers.append(worker)
    code, took = exits_soon(worker)
    assert code == 2, worker.log()[-2000:]  # a configuration error
    assert took < FAIL_FAST_S
    # The line comes from the worker's configuration-error path (sink open refused): it names
    # the store, host and port and the server's reason, not yet the setting keys.
    assert_one_clear_line(
        worker.log(), "postgres", '"127.0.0.1", port 5432', "password authentication failed"
    )


def test_untrusted_postgres_certificate_fails_fast_with_one_line(
    secured_stack: None,
    pipeline: Pipeline,
    tmp_path: Path,
    workers: list[Any],
    untrusted_ca: Path,
) -> None:
    config = secured_config(pipeline, tmp_path, pg_ca=untrusted_ca)
    worker = WorkerProcess("postgres", config, pipeline.workdir).start()
    workers.append(worker)
    code, took = exits_soon(worker)
    assert code == 2, worker.log()[-2000:]
    assert took < FAIL_FAST_S
    assert_one_clear_line(
        worker.log(), "postgres", '"127.0.0.1", port 5432', "certificate verify failed"
    )
