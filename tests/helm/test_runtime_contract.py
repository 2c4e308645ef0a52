"""The chart against the runtime it deploys: its config.yaml, env vars and command lines must be
what fanout's own settings model and CLI accept."""

from __future__ import annotations

import argparse
import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.chart import (
    CHART,
    Manifest,
    component,
    container,
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
    """The config.yaml of the ConfigMap the workload's pods mount, its ``…_file`` paths pointing
    at the pod's Secret volume as a directory here (:func:`mount_secret`)."""
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    name = volumes["config"]["configMap"]["name"]
    (configmap,) = [m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"] == name]
    text = configmap["data"]["config.yaml"]
    if "secrets" in volumes:
        mounts = {m["name"]: m for m in container(workload)["volumeMounts"]}
        secret_dir = mount_secret(manifests, volumes["secrets"]["secret"], tmp_path / name)
        text = text.replace(mounts["secrets"]["mountPath"], str(secret_dir))
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def mount_secret(manifests: list[Manifest], volume: dict[str, Any], where: Path) -> Path:
    """The Secret volume as the kubelet writes it: one file per key. An existing Secret (not in
    the manifests) gets ``<key>-value`` in every key."""
    made = {s["metadata"]["name"]: s["data"] for s in of_kind(manifests, "Secret")}
    data = made.get(volume["secretName"])
    where.mkdir(parents=True, exist_ok=True)
    keys = list(data) if data is not None else list(EXISTING_SECRET_KEYS)
    for key in keys:
        value = base64.b64decode(data[key]).decode() if data is not None else f"{key}-value"
        (where / key).write_text(value)
    return where


EXISTING_SECRET_KEYS = (
    "kafka-sasl-password",
    "kafka-oauth-client-secret",
    "postgres-password",
    "elasticsearch-password",
    "elasticsearch-api-key",
    "clickhouse-password",
)


def plain_env(workload: Manifest) -> dict[str, str]:
    """Env values a pod would get that are not secrets: literals and the pod name."""
    env = {}
    for item in pod_spec(workload)["containers"][0]["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = f"{workload['metadata']['name']}-0"
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


def test_secret_files_reach_the_runtime_secret_fields(tmp_path: Path) -> None:
    """Every secret of the chart-made Secret reaches its runtime field through a file."""
    manifests = render("full")
    passwords = {}
    for workload in workloads(manifests):
        sink = component(workload)
        env = container(workload)["env"]
        assert not [e for e in env if "secretKeyRef" in e.get("valueFrom", {})], "env from a Secret"
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


def test_an_existing_secret_is_read_where_the_configuration_needs_it(tmp_path: Path) -> None:
    manifests = render("keda-sasl")
    for workload in workloads(manifests):
        settings = settings_module.load_settings(write_config(manifests, workload, tmp_path))
        kafka = settings.kafka
        assert kafka.sasl_password.get_secret_value() == "kafka-sasl-password-value"
        assert kafka.oauth_client_secret is None  # SCRAM, not OAUTHBEARER
        if component(workload) == "postgres":
            password = settings.sinks.postgres.password
            assert password.get_secret_value() == "postgres-password-value"
        else:  # no username, no API key named: no credentials for Elasticsearch
            es = settings.sinks.elasticsearch
            assert (es.password, es.api_key) == (None, None)


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


# -- the chart's settings against the runtime's -------------------------------------------------
# Every runtime setting of the kafka section and of each sink is either rendered by the chart
# (with the runtime's default unless it names a place in a cluster) or listed here with why not.
NOT_IN_CHART = {
    "kafka.topic_pattern": "rendered instead of kafka.topics when kafka.topicPattern is set",
    "kafka.group_instance_id": "env FANOUT_KAFKA__GROUP_INSTANCE_ID (the pod name) in StatefulSets",
    "sinks.clickhouse.data_dir": "embedded mode only: sinks.clickhouse.embedded.dataDir",
}
# Rendered with a default of the chart's own: where things are in a cluster, not tunables.
CLUSTER_DEFAULTS = {
    "kafka.bootstrap_servers",
    "kafka.topics",
    "sinks.postgres.host",
    "sinks.elasticsearch.hosts",
    "sinks.clickhouse.host",
    "sinks.clickhouse.mode",
}
SECRET_FIELDS = "SecretStr"  # secrets reach the runtime as …_file (tested above), never as values
ALL_SINKS = ("sinks.elasticsearch.enabled=true", "sinks.clickhouse.enabled=true")
# Secret values (tested through their files above) and topics' alternative.
SECRET_VALUES = {"saslPassword", "oauthClientSecret", "basicAuthPassword", "topicPattern"}
NESTED = {"batch", "retry", "routing", "schemaRegistry"}  # values sections of settings
K8S_VALUES = {  # values of a sink that shape its pods, not its config.yaml
    "enabled", "replicaCount", "resources", "env", "podAnnotations", "podLabels",
    "nodeSelector", "tolerations", "affinity", "terminationGracePeriodSeconds",
    "topologySpreadConstraints", "initContainers", "sidecars", "pdb", "autoscaling", "embedded",
    "password", "apiKey",
}  # fmt: skip


def settings_fields(model: type[Any], prefix: str) -> dict[str, Any]:
    """Dotted runtime key -> its default, for every leaf setting of ``model`` (nested sections
    walked), secrets and their ``…_file`` sources left out."""
    fields: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = f"{prefix}.{field.alias or name}"
        annotation = field.annotation
        if SECRET_FIELDS in str(annotation) or f"{name.removesuffix('_file')}" != name:
            continue
        if isinstance(annotation, type) and issubclass(annotation, settings_module._Section):
            fields.update(settings_fields(annotation, key))
        else:
            fields[key] = field.get_default(call_default_factory=True)
    return fields


def runtime_fields() -> dict[str, Any]:
    sinks = settings_module.SinksSettings.model_fields
    found = settings_fields(settings_module.KafkaSettings, "kafka")
    for sink in ("postgres", "elasticsearch", "clickhouse"):
        model = sinks[sink].annotation
        found.update(settings_fields(model, f"sinks.{sink}"))
    return {k: v for k, v in found.items() if not k.endswith(".enabled")}


def rendered_fields(tmp_path: Path) -> dict[str, Any]:
    """Dotted key -> value of what the chart's defaults put in config.yaml, every sink on,
    as the runtime reads it."""
    manifests = render("default", sets=ALL_SINKS)
    rendered: dict[str, Any] = {}
    for workload in workloads(manifests):
        path = write_config(manifests, workload, tmp_path)
        settings = settings_module.load_settings(path).model_dump(by_alias=True)
        for key in leaf_keys(yaml.safe_load(path.read_text())):
            rendered[key] = lookup(settings, key)
    return rendered


def leaf_keys(config: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of the settings in a config.yaml: a section's keys, not a map value's."""
    keys = []
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted.count(".") < 3 and key in SECTIONS:
            keys += leaf_keys(value, f"{dotted}.")
        else:
            keys.append(dotted)
    return keys


SECTIONS = {
    "kafka",
    "sinks",
    "postgres",
    "elasticsearch",
    "clickhouse",
    "batch",
    "retry",
    "routing",
    "schema_registry",
}


def lookup(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def sample(schema: dict[str, Any]) -> Any:
    """A value ``schema`` accepts that is not empty (to make an unset value render)."""
    if "oneOf" in schema:
        return sample(schema["oneOf"][0])
    if "enum" in schema:
        return next(v for v in schema["enum"] if v)
    kinds = schema.get("type", "string")
    kind = next(k for k in (kinds if isinstance(kinds, list) else [kinds]) if k != "null")
    if kind == "array":
        return [sample(schema.get("items", {}))]
    if kind == "object" and schema.get("properties"):
        name, first = next(iter(schema["properties"].items()))
        return {name: sample(first)}
    if kind == "object":
        return {"t": sample(schema.get("additionalProperties") or {"type": "string"})}
    if kind in ("integer", "number"):
        return max(schema.get("minimum", 1), 1)
    return {"boolean": True}.get(kind, "x")


def unset_values() -> list[str]:
    """--set-json items giving every kafka and sink value whose default is empty (null, "",
    [] or {}) a value, so that each setting the chart can pass shows in config.yaml."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    sections = [("kafka", values["kafka"], schema["properties"]["kafka"])] + [
        (f"sinks.{sink}", values["sinks"][sink], schema["properties"]["sinks"]["properties"][sink])
        for sink in ("postgres", "elasticsearch", "clickhouse")
    ]
    items = []
    for path, chart_values, section_schema in sections:
        for key, value in chart_values.items():
            if key in K8S_VALUES or key in SECRET_VALUES:
                continue
            props = resolved(schema, section_schema["properties"][key])
            if key in NESTED:
                for sub, sub_value in value.items():
                    if sub not in SECRET_VALUES and sub_value in (None, "", [], {}):
                        example = sample(resolved(schema, props["properties"][sub]))
                        items.append(f"{path}.{key}.{sub}={json.dumps(example)}")
            elif value in (None, "", [], {}):
                items.append(f"{path}.{key}={json.dumps(sample(props))}")
    return items


def resolved(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    found: dict[str, Any] = schema["definitions"][ref.rsplit("/", 1)[-1]]
    return found


def test_every_runtime_setting_is_in_the_chart_or_said_why_not() -> None:
    """A setting added to the runtime and forgotten in the chart fails here."""
    manifests = render("default", sets=ALL_SINKS, json_sets=unset_values())
    rendered = set()
    for configmap in of_kind(manifests, "ConfigMap"):
        if "config.yaml" in configmap["data"]:
            rendered |= set(leaf_keys(yaml.safe_load(configmap["data"]["config.yaml"])))
    missing = sorted(set(runtime_fields()) - rendered - set(NOT_IN_CHART))
    assert missing == [], (
        f"runtime settings the chart cannot set: {missing}; add a value (values.yaml, "
        "values.schema.json, the sink's key list in _helpers.tpl) or say why in NOT_IN_CHART"
    )


def test_chart_defaults_are_the_runtime_defaults(tmp_path: Path) -> None:
    """A chart that pins an older default silently undoes a tuned one (batch bounds, timeouts)."""
    rendered, defaults = rendered_fields(tmp_path), runtime_fields()
    differ = {
        key: (value, defaults[key])
        for key, value in rendered.items()
        if key in defaults and key not in CLUSTER_DEFAULTS and value != defaults[key]
    }
    assert differ == {}, f"chart default vs runtime default: {differ}"


def test_every_sink_and_kafka_value_names_a_runtime_setting() -> None:
    """The reverse: a value whose name the runtime does not know would be rejected at start
    (unknown keys are errors), or silently never rendered."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    known = set(runtime_fields()) | set(NOT_IN_CHART)
    unknown = []
    for section, chart_values in [("kafka", values["kafka"])] + [
        (f"sinks.{sink}", values["sinks"][sink])
        for sink in ("postgres", "elasticsearch", "clickhouse")
    ]:
        for key, value in chart_values.items():
            if key in K8S_VALUES or key in SECRET_VALUES:
                continue
            nested = value if key in NESTED else {"": value}
            for sub in set(nested) - SECRET_VALUES:
                dotted = f"{section}.{snake(key)}" + (f".{snake(sub)}" if sub else "")
                if dotted not in known:
                    unknown.append(dotted)
    assert unknown == []


def snake(name: str) -> str:
    """What the chart's `snakecase` makes of a values key."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
