"""The chart README's parameter tables, and NOTES.txt."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helm.chart import CHART, CI_VALUES, run_helm

GENERATOR = CHART / "ci" / "gen-readme.py"


def test_readme_parameter_tables_are_up_to_date_and_every_value_documented() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_readme_check_fails_on_an_undocumented_value(tmp_path: Path) -> None:
    chart = tmp_path / "fanout"
    shutil.copytree(CHART, chart)
    values = chart / "values.yaml"
    values.write_text(values.read_text() + "undocumentedValue: 1\n")
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check", "--chart", str(chart)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "value undocumentedValue has no @param" in result.stderr


def render_notes(tmp_path: Path, *args: str) -> str:
    """NOTES.txt rendered through `tpl` (helm template skips NOTES; install needs a cluster)."""
    chart = tmp_path / "fanout"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    probe = 'notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n'
    (chart / "templates" / "zz-notes.yaml").write_text(probe)
    result = run_helm(
        "template", "cdc", str(chart), "--show-only", "templates/zz-notes.yaml", *args
    )
    assert result.returncode == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["notes"])


def test_notes_name_each_sink_its_workload_group_and_the_backfill_run(tmp_path: Path) -> None:
    notes = render_notes(tmp_path, "-f", str(CI_VALUES / "full-values.yaml"))
    for sink in ("postgres", "elasticsearch", "clickhouse"):
        assert f"deployment/cdc-fanout-{sink}, consumer group fanout-{sink}" in notes
    assert "KEDA 1..4 replicas" in notes
    assert "get jobs -l fanout/backfill-run=initial-load" in notes
    assert "--reuse-values --set backfill.runId=" in notes


def test_notes_name_the_statefulset_in_embedded_mode(tmp_path: Path) -> None:
    notes = render_notes(tmp_path, "-f", str(CI_VALUES / "clickhouse-embedded-values.yaml"))
    assert "statefulset/cdc-fanout-clickhouse, consumer group fanout-clickhouse" in notes
    assert "exec statefulset/cdc-fanout-clickhouse -- fanout check-config" in notes


def test_notes_for_the_defaults(tmp_path: Path) -> None:
    notes = render_notes(tmp_path)
    assert "exec deployment/cdc-fanout-postgres -- fanout check-config" in notes
    assert "No Secret is referenced" in notes
    assert "Backfill" not in notes
