"""Secured connections against the real local stack: `fanout run --sink postgres` consumes
through Kafka's SASL_SSL listener (SCRAM-SHA-512, the devstack CA) and writes to PostgreSQL over
TLS (verify-full) as a role that may only log in that way, with a SCRAM password; every secret
comes from a ``…_file`` setting, and none is printed.

`scripts/devstack up` makes the listener, the role and the CA (`scripts/devstack env` prints
them as DEVSTACK_* variables, the defaults here)."""

from __future__ import annotations

import json
import os
import subprocess
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


@pytest.fixture(scope="module")
def secured_stack() -> None:
    if not CA.exists():
        pytest.fail(f"{CA} is missing: run `scripts/devstack up` (it makes the devstack CA)")


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
