"""The chart against the runtime it deploys: its config.yaml, env vars and command lines must be
what fanout's own settings model and CLI accept."""

from __future__ import annotations

import argparse
import base64
import os
from pathlib import Path

import pytest
import yaml

from tests.helm.chart import Manifest, of_kind, pod_spec, render

settings_module = pytest.importorskip("fanout.settings")
cli_module = pytest.importorskip("fanout.cli")

VALUE_SETS = ("default", "postgres", "elasticsearch", "clickhouse", "clickhouse-embedded", "full")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FANOUT_"):
            monkeypatch.delenv(name)


def write_config(manifests: list[Manifest], tmp_path: Path) -> Path:
    (configmap,) = of_kind(manifests, "ConfigMap")
    path = tmp_path / "config.yaml"
    path.write_text(configmap["data"]["config.yaml"])
    return path


def secret_env(manifests: list[Manifest], workload: Manifest) -> dict[str, str]:
    """Env values a pod would get from the chart-made Secret."""
    secrets = {s["metadata"]["name"]: s["data"] for s in of_kind(manifests, "Secret")}
    env = {}
    for item in pod_spec(workload)["containers"][0]["env"]:
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["name"] in secrets:
            env[item["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
    return env


@pytest.mark.parametrize("values", VALUE_SETS)
def test_rendered_config_loads_with_the_runtime_settings(values: str, tmp_path: Path) -> None:
    manifests = render(values)
    settings = settings_module.load_settings(write_config(manifests, tmp_path))
    settings_module.require_subscription(settings)
    enabled = sorted(settings.sinks.enabled())
    deployed = sorted(
        d["metadata"]["labels"]["app.kubernetes.io/component"]
        for d in of_kind(manifests, "Deployment")
    )
    assert enabled == deployed
    assert settings.metrics.host == "0.0.0.0"


def test_secret_env_vars_reach_the_runtime_password_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = render("full")
    config = write_config(manifests, tmp_path)
    seen = {}
    for deployment in of_kind(manifests, "Deployment"):
        for name, value in secret_env(manifests, deployment).items():
            monkeypatch.setenv(name, value)
            seen[name] = value
    settings = settings_module.load_settings(config)
    sinks = settings.sinks
    assert settings.kafka.sasl_password.get_secret_value() == "kafka-secret-value"
    assert sinks.postgres.password.get_secret_value() == "pg-secret-value"
    assert sinks.elasticsearch.password.get_secret_value() == "es-secret-value"
    assert sinks.elasticsearch.api_key.get_secret_value() == "es-api-key-value"
    assert sinks.clickhouse.password.get_secret_value() == "ch-secret-value"
    assert len(seen) == 5


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_container_args_parse_with_the_runtime_cli(kind: str) -> None:
    parser = cli_module.build_parser()
    workloads = of_kind(render("full"), kind)
    assert workloads
    for workload in workloads:
        args = pod_spec(workload)["containers"][0]["args"]
        if args[0] not in subcommands(parser):
            pytest.skip(f"the runtime has no `fanout {args[0]}` command yet")
        parsed = parser.parse_args(args)
        assert parsed.sink == args[args.index("--sink") + 1]


def all_keys(node: object) -> list[str]:
    if not isinstance(node, dict):
        return []
    return [str(key) for key in node] + [k for value in node.values() for k in all_keys(value)]


@pytest.mark.parametrize("values", ["full", "postgres"])
def test_config_yaml_keys_are_snake_case(values: str) -> None:
    config = yaml.safe_load(of_kind(render(values), "ConfigMap")[0]["data"]["config.yaml"])
    assert [key for key in all_keys(config) if key != key.lower()] == []


@pytest.mark.parametrize("sink", ["postgres", "elasticsearch", "clickhouse"])
def test_chart_batch_defaults_are_the_runtime_defaults(sink: str, tmp_path: Path) -> None:
    """A chart that pins older batch bounds would silently undo a tuned default (latency)."""
    settings = settings_module.load_settings(write_config(render("full"), tmp_path))
    assert getattr(settings.sinks, sink).batch == settings_module.BatchSettings()
