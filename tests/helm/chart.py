"""Helpers for the chart tests: the helm binary and cached `helm template` renders.

helm is installed (once, cached outside the work tree) by scripts/install-helm; conftest.py
makes sure of that before any test runs.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "fanout"
CI_VALUES = CHART / "ci"
RELEASE = "cdc"
NAMESPACE = "data"

Manifest = dict[str, Any]


@functools.cache
def helm_path() -> str:
    try:
        out = subprocess.run(
            [str(REPO / "scripts" / "install-helm")],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"scripts/install-helm failed:\n{exc.stderr}", pytrace=False)
    return out.stdout.strip().splitlines()[-1]


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_NAMESPACE": NAMESPACE}
    return subprocess.run(
        [helm_path(), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def values_file(name: str) -> str:
    """ci/<name>-values.yaml, or ``name`` itself when it is a path (examples/...)."""
    return name if name.endswith(".yaml") else str(CI_VALUES / f"{name}-values.yaml")


def template_args(
    files: Sequence[str], sets: Sequence[str], json_sets: Sequence[str] = ()
) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for name in files:
        args += ["-f", values_file(name)]
    for item in sets:
        args += ["--set", item]
    for item in json_sets:
        args += ["--set-json", item]
    return args


@functools.cache
def _render(
    files: tuple[str, ...], sets: tuple[str, ...], json_sets: tuple[str, ...] = ()
) -> tuple[Manifest, ...]:
    result = run_helm(*template_args(files, sets, json_sets))
    if result.returncode != 0:
        pytest.fail(f"helm template failed:\n{result.stderr}", pytrace=False)
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(*files: str, sets: Sequence[str] = (), json_sets: Sequence[str] = ()) -> list[Manifest]:
    """Render the chart with ci/<name>-values.yaml files, --set and --set-json items (cached)."""
    return list(_render(tuple(files), tuple(sets), tuple(json_sets)))


def render_error(*files: str, sets: Sequence[str] = ()) -> str:
    """Render expecting failure; returns helm's error output."""
    result = run_helm(*template_args(files, sets))
    assert result.returncode != 0, f"expected helm template to fail for {files} {sets}"
    return result.stderr


def of_kind(manifests: Sequence[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def by_name(manifests: Sequence[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in of_kind(manifests, kind)}


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def value_sets() -> list[str]:
    """Every ci/<name>-values.yaml, by name: each one must render and validate."""
    return sorted(
        path.name.removesuffix("-values.yaml") for path in CI_VALUES.glob("*-values.yaml")
    )


def workloads(manifests: Sequence[Manifest]) -> list[Manifest]:
    """The sinks' Deployments and StatefulSets (not backfill Jobs)."""
    return [m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")]


def config_of(manifests: Sequence[Manifest], sink: str) -> dict[str, Any]:
    """The config.yaml of one sink (each sink has its own ConfigMap `<fullname>-<sink>-config`)."""
    (configmap,) = [
        m
        for m in of_kind(manifests, "ConfigMap")
        if m["metadata"]["name"].endswith(f"-{sink}-config")
    ]
    config: dict[str, Any] = yaml.safe_load(configmap["data"]["config.yaml"])
    return config


def container(manifest: Manifest) -> dict[str, Any]:
    """The fanout container of a pod template (sidecars aside)."""
    (fanout,) = [c for c in pod_spec(manifest)["containers"] if c["name"] == "fanout"]
    return dict(fanout)


def env_map(manifest: Manifest) -> dict[str, Any]:
    """The fanout container's env: name -> value, or its valueFrom."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(manifest)["env"]}


def component(manifest: Manifest) -> str:
    return str(manifest["metadata"]["labels"].get("app.kubernetes.io/component", ""))
