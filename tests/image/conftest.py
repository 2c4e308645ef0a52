"""Fixtures for the image tests: the image (built by scripts/build-image), podman, the stack.

The image is built once per session; scripts/build-image caches the base images and podman's
layer cache makes a rebuild after a source change take about two minutes. The local stack
(`scripts/devstack up`) must be running: a service that does not answer fails the test.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from tests.support.pipeline import REPO, bootstrap

BUILD_TIMEOUT_S = 1800  # a cold build (debootstrap, the Python base, every wheel) takes ~8 min
START_HINT = "start the local stack with `scripts/devstack up` (see docs/DEVSTACK.md)"

# The same global flags scripts/build-image uses: crun and the systemd cgroup manager do not
# work in sandboxes without systemd and with hybrid cgroups; runc and cgroupfs do.
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]


def podman(*args: str, timeout_s: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout_s, check=False, **kwargs
    )


@pytest.fixture(scope="session")
def image() -> str:
    """The fanout image, built from the working tree by scripts/build-image; its name."""
    try:
        result = subprocess.run(
            [str(REPO / "scripts" / "build-image")],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/build-image took more than {BUILD_TIMEOUT_S}s: {exc}", pytrace=False)
    if result.returncode != 0:
        pytest.fail(f"scripts/build-image failed:\n{result.stderr[-4000:]}", pytrace=False)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def pg_conninfo() -> dict[str, Any]:
    """PostgreSQL of the local stack, from the FANOUT_* variables the runtime reads."""
    conninfo: dict[str, Any] = {
        "host": os.environ.get("FANOUT_SINKS__POSTGRES__HOST", "127.0.0.1"),
        "port": int(os.environ.get("FANOUT_SINKS__POSTGRES__PORT", "5432")),
        "user": os.environ.get("FANOUT_SINKS__POSTGRES__USER", "fanout"),
        "password": os.environ.get("FANOUT_SINKS__POSTGRES__PASSWORD", "fanout"),
        "dbname": os.environ.get("FANOUT_SINKS__POSTGRES__DBNAME", "fanout"),
    }
    try:
        with psycopg.connect(**conninfo, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL at {conninfo['host']}:{conninfo['port']} is not answering "
            f"({type(exc).__name__}: {exc}); {START_HINT}",
            pytrace=False,
        )
    return conninfo


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    servers = bootstrap()
    try:
        brokers = AdminClient({"bootstrap.servers": servers}).list_topics(timeout=10).brokers
    except Exception as exc:
        pytest.fail(f"Kafka at {servers} is not answering ({exc}); {START_HINT}", pytrace=False)
    if not brokers:
        pytest.fail(f"Kafka at {servers} lists no broker; {START_HINT}", pytrace=False)
    return servers
