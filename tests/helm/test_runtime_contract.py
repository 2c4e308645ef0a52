"""The chart against the runtime it deploys: its config.yaml, env vars and command lines must be
what fanout's own settings model and CLI accept."""

from __future__ import annotations

import argparse
import base64
import os
from pathlib import Path

import pytest
import yaml

from tests.helm.chart import (
    Manifest,
    component,
    of_kind,
    pod_spec,
    render,
    value_sets,
    workloads,
)

settings_module = pytest.importorskip("fanout.settings")
cli_module = pytest.importorskip("fanout.cli.main")

VALUE_SETS = value_sets()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FANOUT_"):
            monkeypatch.delenv(name)


def write_config(manifests: list[Manifest], workload: Manifest, tmp_path: Path) -> Path:
    """The config.yaml of the ConfigMap the workload's pods mount."""
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    name = volumes["config"]["configMap"]["name"]
    (configmap,) = [m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"] == name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(configmap["data"]["config.yaml"])
    return path


def plain_env(workload: Manifest) -> dict[str, str]:
    """Env values a pod would get that are not secrets: literals and the pod name."""
    env = {}
    for item in pod_spec(workload)["containers"][0]["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = f"{workload['metadata']['name']}-0"
    return env


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
def test_each_workload_config_and_env_load_with_the_runtime_settings(
    values: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = render(values)
    assert workloads(manifests)
    for workload in workloads(manifests):
        with monkeypatch.context() as env:
            for name, value in plain_env(workload).items():
                if name != "FANOUT_CONFIG":
                    env.setenv(name, value)
            settings = settings_module.load_settings(write_config(manifests, workload, tmp_path))
        settings_module.require_subscription(settings)
        assert settings.sinks.enabled() == [component(workload)]
        assert settings.metrics.host == "0.0.0.0"


def test_secret_env_vars_reach_the_runtime_password_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = render("full")
    seen = {}
    passwords = {}
    for workload in workloads(manifests):
        sink = component(workload)
        with monkeypatch.context() as env:
            for name, value in secret_env(manifests, workload).items():
                env.setenv(name, value)
                seen[name] = value
            settings = settings_module.load_settings(write_config(manifests, workload, tmp_path))
        assert settings.kafka.sasl_password.get_secret_value() == "kafka-secret-value"
        passwords[sink] = getattr(settings.sinks, sink).password.get_secret_value()
        if sink == "elasticsearch":
            assert settings.sinks.elasticsearch.api_key.get_secret_value() == "es-api-key-value"
    assert passwords == {
        "postgres": "pg-secret-value",
        "elasticsearch": "es-secret-value",
        "clickhouse": "ch-secret-value",
    }
    assert len(seen) == 5


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "Job"])
def test_container_args_parse_with_the_runtime_cli(kind: str) -> None:
    parser = cli_module.build_parser()
    found = of_kind(render("full") + render("clickhouse-embedded"), kind)
    assert found
    for workload in found:
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
    for configmap in of_kind(render(values), "ConfigMap"):
        if "config.yaml" in configmap["data"]:
            config = yaml.safe_load(configmap["data"]["config.yaml"])
            assert [key for key in all_keys(config) if key != key.lower()] == []


@pytest.mark.parametrize("sink", ["postgres", "elasticsearch", "clickhouse"])
def test_chart_batch_defaults_are_the_runtime_defaults(sink: str, tmp_path: Path) -> None:
    """A chart that pins older batch bounds would silently undo a tuned default (latency)."""
    manifests = render("full")
    (workload,) = [w for w in workloads(manifests) if component(w) == sink]
    settings = settings_module.load_settings(write_config(manifests, workload, tmp_path))
    assert getattr(settings.sinks, sink).batch == settings_module.BatchSettings()
