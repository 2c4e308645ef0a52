"""Running the operator commands (`fanout backfill|dlq|lag|offsets …`) as an operator would: a
subprocess with a config file, its exit code, stdout (JSON with --json) and stderr."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.pipeline import REPO, clean_env, on_stack


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"


def write_config(workdir: Path, config: Mapping[str, Any]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"ops-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(json.dumps(on_stack(config)))  # JSON is YAML
    return path


def command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "fanout.cli", "--config", str(config), *args]


def _env() -> dict[str, str]:
    # No FANOUT_* of the shell: the command reads its config file and these only.
    return clean_env(
        {"PYTHONPATH": str(REPO), "FANOUT_LOGGING__FORMAT": "text", "PYTHONFAULTHANDLER": "1"}
    )


def fanout(config: Path, *args: str, timeout_s: float = 180, stdin: str = "") -> Result:
    done = subprocess.run(
        command(config, *args),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=_env(),
        cwd=REPO,
        input=stdin,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def start_fanout(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command(config, *args), stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=REPO
        )
