"""The machine and the versions a result was measured with."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from bench import env

LIBRARIES = (
    "confluent-kafka",
    "psycopg",
    "elasticsearch",
    "clickhouse-connect",
    "chdb",
    "pydantic",
    "orjson",
    "psutil",
    "matplotlib",
)


def facts() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cpu": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_gib": round(memory.total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "services": _services(),
        "java": _java(),
        "peer": {"kafka_connect": "4.1.1", "debezium_connector_jdbc": "3.5.0.Final"},
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _services() -> dict[str, str | None]:
    result: dict[str, str | None] = {}
    for line in _run(["scripts/devstack", "status"]).splitlines():
        parts = line.split()
        if len(parts) >= 4:
            version = " ".join(parts[3:5]) if parts[3] == "PostgreSQL" else parts[3]
            result[parts[0]] = version if parts[1] == "up" else "down"
    result["postgres_server_version"] = _pg_version()
    result["clickhouse_version"] = _ch_version()
    return result


def _pg_version() -> str | None:
    import psycopg

    try:
        with psycopg.connect(**env.settings().sinks.postgres.conninfo()) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else None
    except psycopg.Error:
        return None


def _ch_version() -> str | None:
    import clickhouse_connect

    ch = env.settings().sinks.clickhouse
    try:
        client = clickhouse_connect.get_client(host=ch.host or "127.0.0.1", port=ch.port)
        return str(client.command("SELECT version()"))
    except Exception:
        return None


def _java() -> str:
    from bench.peer import JAVA_HOME

    out = _run([str(JAVA_HOME / "bin" / "java"), "-version"])
    return out.splitlines()[0] if out else "unknown"


def _git(*args: str) -> str:
    return _run(["git", *args]).strip()


def _run(command: list[str]) -> str:
    repo = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr
