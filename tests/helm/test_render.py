"""`helm template` of the value sets: schema-valid Kubernetes objects, and what they say."""

from __future__ import annotations

import base64
import posixpath
import re

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.helm.chart import (
    NAMESPACE,
    RELEASE,
    Manifest,
    component,
    config_of,
    container,
    env_map,
    of_kind,
    pod_spec,
    render,
    value_sets,
    workloads,
)

SINKS = ("postgres", "elasticsearch", "clickhouse")
VALUE_SETS = value_sets()
# The chart's kubeVersion floor and the newest Kubernetes kubernetes-validate has schemas for.
KUBE_VERSIONS = ("1.27.0", latest_version())
# Custom resources: no schema in kubernetes-validate; their fields are asserted in the tests.
CRD_GROUPS = {"keda.sh", "monitoring.coreos.com"}
SECRET_VALUES = (
    "kafka-secret-value",
    "pg-secret-value",
    "es-secret-value",
    "es-api-key-value",
    "ch-secret-value",
)
POD_KINDS = ("Deployment", "StatefulSet", "Job")


def sink_objects(manifests: list[Manifest], sink: str) -> list[str]:
    kinds = (
        "Deployment",
        "StatefulSet",
        "ConfigMap",
        "Service",
        "PodDisruptionBudget",
        "ScaledObject",
    )
    return [
        f"{m['kind']}/{m['metadata']['name']}"
        for m in manifests
        if m["kind"] in kinds and component(m) == sink
    ]


def pods(manifests: list[Manifest]) -> list[Manifest]:
    """Everything with a pod template: the sinks' workloads and the backfill Jobs."""
    return [m for m in manifests if m["kind"] in POD_KINDS]


# --- Kubernetes schema ---------------------------------------------------------------------


def test_the_value_sets_include_the_new_options() -> None:
    assert {"keda-sasl", "pod-extras", "clickhouse-embedded", "full"} <= set(VALUE_SETS)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS)
def test_builtin_objects_validate_strictly(values: str, version: str) -> None:
    manifests = render(values)
    checked = 0
    for manifest in manifests:
        if manifest["apiVersion"].split("/")[0] in CRD_GROUPS:
            continue
        kubernetes_validate.validate(manifest, version, strict=True)
        checked += 1
    assert checked >= 5


def test_only_the_known_custom_resources_are_rendered() -> None:
    kinds = {
        (m["apiVersion"], m["kind"])
        for values in VALUE_SETS
        for m in render(values)
        if m["apiVersion"].split("/")[0] in CRD_GROUPS
    }
    assert kinds == {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    }


# --- sinks on and off ------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["postgres", "elasticsearch", "clickhouse"])
def test_a_sink_alone_renders_only_its_objects(values: str) -> None:
    manifests = render(values)
    assert [component(m) for m in workloads(manifests)] == [values]
    for other in set(SINKS) - {values}:
        assert sink_objects(manifests, other) == []


def test_defaults_run_the_postgres_sink_without_autoscaling_or_monitoring() -> None:
    manifests = render("default")
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    assert sink_objects(manifests, "postgres")


@pytest.mark.parametrize("sink", SINKS)
def test_disabling_a_sink_removes_all_its_objects(sink: str) -> None:
    sets = [f"sinks.{sink}.enabled=false", "backfill.runId="]
    manifests = render("full", sets=sets)
    assert sink_objects(render("full"), sink), "the sink has objects while enabled"
    assert sink_objects(manifests, sink) == []
    monitor = of_kind(manifests, "ServiceMonitor")[0]
    assert sink not in monitor["spec"]["selector"]["matchExpressions"][0]["values"]


# --- commands and config ---------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_each_workload_runs_its_one_sink_with_its_own_config(values: str) -> None:
    manifests = render(values)
    for workload in workloads(manifests):
        sink = component(workload)
        assert container(workload)["args"] == ["run", "--sink", sink]
        assert env_map(workload)["FANOUT_CONFIG"] == "/etc/fanout/config.yaml"
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        assert volumes["config"]["configMap"]["name"] == f"{RELEASE}-fanout-{sink}-config"
        config = config_of(manifests, sink)
        assert list(config["sinks"]) == [sink], "a sink's config holds only its own section"
        assert config["sinks"][sink]["enabled"] is True


def test_config_file_is_mounted_where_fanout_config_points() -> None:
    for pod in pods(render("full")):
        mounts = {m["name"]: m for m in container(pod)["volumeMounts"]}
        path = env_map(pod)["FANOUT_CONFIG"]
        assert mounts["config"]["mountPath"] == posixpath.dirname(path)
        assert mounts["config"]["readOnly"] is True


def test_one_configmap_per_enabled_sink_and_no_other_config() -> None:
    names = sorted(m["metadata"]["name"] for m in of_kind(render("full"), "ConfigMap"))
    assert names == [f"{RELEASE}-fanout-{sink}-config" for sink in sorted(SINKS)]


# --- config and secrets ----------------------------------------------------------------------


SECRETS_DIR = "/etc/fanout-secrets"


def secret_volume(workload: Manifest) -> dict[str, object] | None:
    """The Secret volume of a workload's pods and where the fanout container mounts it."""
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    if "secrets" not in volumes:
        return None
    mounts = {m["name"]: m for m in container(workload)["volumeMounts"]}
    assert mounts["secrets"] == {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True}
    return dict(volumes["secrets"]["secret"])


def secret_settings(config: dict[str, object]) -> dict[str, object]:
    """Every `…_file` setting of a config.yaml, by dotted key."""
    found: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            found |= {f"{key}.{k}": v for k, v in secret_settings(value).items()}
        elif key.endswith("_file"):
            found[key] = value
    return found


def test_no_secret_value_appears_in_any_configmap_only_files_of_the_mounted_secret() -> None:
    manifests = render("full")
    text = str([m["data"] for m in of_kind(manifests, "ConfigMap")])
    for value in SECRET_VALUES:
        assert value not in text
    for configmap in of_kind(manifests, "ConfigMap"):
        if "config.yaml" not in configmap["data"]:
            continue
        config = yaml.safe_load(configmap["data"]["config.yaml"])
        for key, path in secret_settings(config).items():
            assert str(path).startswith(f"{SECRETS_DIR}/"), key
        secretish = [k for k in secret_keys(config) if re.search("password|secret|api_key", k)]
        assert all(k.endswith("_file") for k in secretish), secretish


def secret_keys(config: dict[str, object]) -> list[str]:
    keys = []
    for key, value in config.items():
        keys.append(key)
        if isinstance(value, dict):
            keys += secret_keys(value)
    return keys


def test_chart_made_secret_holds_the_passwords_and_pods_read_them_as_files() -> None:
    manifests = render("full")
    (secret,) = of_kind(manifests, "Secret")
    stored = {base64.b64decode(v).decode() for v in secret["data"].values()}
    assert stored == set(SECRET_VALUES)
    for workload in workloads(manifests):
        assert secret_volume(workload) == {
            "secretName": secret["metadata"]["name"],
            "defaultMode": 0o440,
        }
        env = container(workload)["env"]
        assert not [e for e in env if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]]
    assert secret_settings(config_of(manifests, "postgres")) == {
        "kafka.sasl_password_file": f"{SECRETS_DIR}/kafka-sasl-password",
        "sinks.postgres.password_file": f"{SECRETS_DIR}/postgres-password",
    }
    assert secret_settings(config_of(manifests, "elasticsearch")) == {
        "kafka.sasl_password_file": f"{SECRETS_DIR}/kafka-sasl-password",
        "sinks.elasticsearch.password_file": f"{SECRETS_DIR}/elasticsearch-password",
        "sinks.elasticsearch.api_key_file": f"{SECRETS_DIR}/elasticsearch-api-key",
    }


def test_existing_secret_is_mounted_and_read_where_the_configuration_uses_it() -> None:
    manifests = render("elasticsearch")
    assert of_kind(manifests, "Secret") == []
    (deployment,) = of_kind(manifests, "Deployment")
    assert secret_volume(deployment) == {"secretName": "fanout-credentials", "defaultMode": 0o440}
    # A username: its password is read; no API key named; Kafka without SASL: no password.
    assert secret_settings(config_of(manifests, "elasticsearch")) == {
        "sinks.elasticsearch.password_file": f"{SECRETS_DIR}/elasticsearch-password",
    }


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (
            ["kafka.securityProtocol=SASL_SSL", "kafka.saslMechanism=OAUTHBEARER"],
            {"kafka.oauth_client_secret_file": "kafka-oauth-client-secret"},
        ),
        (
            ["kafka.sslKeyLocation=/k/key.pem", "secrets.keys.kafkaSslKeyPassword=key-pass"],
            {"kafka.ssl_key_password_file": "key-pass"},
        ),
        (["kafka.sslKeyLocation=/k/key.pem"], {}),  # no passphrase key named: none
        (
            [
                "kafka.valueFormat=avro",
                "kafka.schemaRegistry.url=https://registry:8081",
                "kafka.schemaRegistry.basicAuthUser=fanout",
            ],
            {"kafka.schema_registry.basic_auth_password_file": "schema-registry-password"},
        ),
        (
            ["sinks.elasticsearch.username=", "secrets.keys.elasticsearchApiKey=es-key"],
            {"sinks.elasticsearch.api_key_file": "es-key"},
        ),
    ],
)
def test_an_existing_secret_key_is_read_when_named_and_in_use(
    sets: list[str], expected: dict[str, str]
) -> None:
    config = config_of(render("elasticsearch", sets=sets), "elasticsearch")
    found = {
        k: v for k, v in secret_settings(config).items() if k != "sinks.elasticsearch.password_file"
    }
    assert found == {k: f"{SECRETS_DIR}/{v}" for k, v in expected.items()}


def test_without_passwords_no_secret_no_secret_volume_and_no_secret_setting() -> None:
    manifests = render("default")
    assert of_kind(manifests, "Secret") == []
    (deployment,) = of_kind(manifests, "Deployment")
    assert set(env_map(deployment)) == {"FANOUT_CONFIG"}
    assert secret_volume(deployment) is None
    assert secret_settings(config_of(manifests, "postgres")) == {}


def checksums(*files: str, sets: tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
    """Per sink: the checksum/* annotations of its pod template."""
    found = {}
    for workload in workloads(render(*files, sets=sets)):
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        found[component(workload)] = {
            k: v for k, v in annotations.items() if k.startswith("checksum/")
        }
    return found


def changed(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> set[str]:
    return {sink for sink in before if before[sink] != after[sink]}


def test_a_sink_config_change_rolls_only_that_sink() -> None:
    base = checksums("full")
    assert set(base) == set(SINKS)
    one = checksums("full", sets=("sinks.postgres.batch.maxEvents=100",))
    assert changed(base, one) == {"postgres"}
    database = checksums("full", sets=("sinks.clickhouse.database=analytics",))
    assert changed(base, database) == {"clickhouse"}
    shared = checksums("full", sets=("kafka.bootstrapServers=other:9092",))
    assert changed(base, shared) == set(SINKS)
    assert changed(base, checksums("full", sets=("logging.level=DEBUG",))) == set(SINKS)


def test_checksums_ignore_what_is_not_config() -> None:
    base = checksums("full")
    assert changed(base, checksums("full", sets=("image.tag=9.9.9",))) == set()
    assert changed(base, checksums("full", sets=("sinks.clickhouse.replicaCount=3",))) == set()


def test_a_password_change_rolls_only_the_sinks_that_read_it() -> None:
    base = checksums("full")
    postgres = checksums("full", sets=("sinks.postgres.password=new",))
    assert changed(base, postgres) == {"postgres"}
    assert base["postgres"]["checksum/config"] == postgres["postgres"]["checksum/config"]
    kafka = checksums("full", sets=("kafka.saslPassword=new",))
    assert changed(base, kafka) == set(SINKS)


def test_metrics_port_is_the_same_in_config_container_probes_and_service() -> None:
    manifests = render("default", sets=["metrics.port=9200"])
    assert config_of(manifests, "postgres")["metrics"] == {"host": "0.0.0.0", "port": 9200}
    main = container(of_kind(manifests, "Deployment")[0])
    assert main["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]
    assert main["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    (service,) = of_kind(manifests, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


# --- security --------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["full", "clickhouse-embedded", "keda-sasl"])
def test_every_pod_and_container_is_locked_down(values: str) -> None:
    for pod in pods(render(values)):
        spec = pod_spec(pod)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == f"{RELEASE}-fanout"
        for each in spec["containers"] + spec.get("initContainers", []):
            context = each["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["runAsUser"] == 10001
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["privileged"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("values", ["full", "clickhouse-embedded"])
def test_only_tmp_and_the_chdb_data_dir_are_writable(values: str) -> None:
    for pod in pods(render(values)):
        volumes = {v["name"]: v for v in pod_spec(pod)["volumes"]}
        assert "emptyDir" in volumes["tmp"]
        writable = {m["mountPath"] for m in container(pod)["volumeMounts"] if not m.get("readOnly")}
        allowed = {"/tmp", "/var/lib/fanout/chdb"}
        assert "/tmp" in writable
        assert writable <= allowed, pod["metadata"]["name"]


def test_service_account_does_not_mount_a_token() -> None:
    (account,) = of_kind(render("default"), "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


# --- PDB, Services, ServiceMonitor -----------------------------------------------------------


def test_pdbs_and_services_select_their_sinks_pods() -> None:
    manifests = render("full")
    pod_labels = {
        component(w): w["spec"]["template"]["metadata"]["labels"] for w in workloads(manifests)
    }
    for pdb in of_kind(manifests, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels[component(pdb)].items()
        assert selector["app.kubernetes.io/component"] == component(pdb)
    for service in of_kind(manifests, "Service"):
        assert service["spec"]["selector"].items() <= pod_labels[component(service)].items()
    for workload in workloads(manifests):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()


def test_pdb_takes_min_available_when_set() -> None:
    (pdb,) = of_kind(render("elasticsearch"), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdb["spec"]
    (default,) = of_kind(render("default"), "PodDisruptionBudget")
    assert default["spec"]["maxUnavailable"] == 1


def test_pdb_lets_drains_evict_unready_pods_by_default() -> None:
    """A sink outage leaves every pod unready; with the default policy a drain would block."""
    (pdb,) = of_kind(render("default"), "PodDisruptionBudget")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    (kept,) = of_kind(render("pod-extras"), "PodDisruptionBudget")
    assert kept["spec"]["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"
    sets = ["sinks.postgres.pdb.unhealthyPodEvictionPolicy="]
    (unset,) = of_kind(render("default", sets=sets), "PodDisruptionBudget")
    assert "unhealthyPodEvictionPolicy" not in unset["spec"]


def test_service_monitor_selects_the_metrics_services() -> None:
    manifests = render("full")
    (monitor,) = of_kind(manifests, "ServiceMonitor")
    spec = monitor["spec"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["scrapeTimeout"] == "10s"
    (expression,) = spec["selector"]["matchExpressions"]
    assert expression["key"] == "app.kubernetes.io/component"
    for service in of_kind(manifests, "Service"):
        labels = service["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        assert labels["app.kubernetes.io/component"] in expression["values"]
        assert service["spec"]["ports"][0]["name"] == endpoint["port"]


def test_service_monitor_scrapes_each_sink_once() -> None:
    """The StatefulSet's headless Service matches the same labels: it must not be a target."""
    sets = ["metrics.serviceMonitor.enabled=true", "extraApiVersions={monitoring.coreos.com/v1}"]
    manifests = render("clickhouse-embedded", sets=sets)
    (monitor,) = of_kind(manifests, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    port = monitor["spec"]["endpoints"][0]["port"]
    targets = [
        s["metadata"]["name"]
        for s in of_kind(manifests, "Service")
        if selector.items() <= s["metadata"]["labels"].items()
        and port in [p["name"] for p in s["spec"].get("ports", [])]
    ]
    assert targets == [f"{RELEASE}-fanout-clickhouse-metrics"]


# --- names and labels ------------------------------------------------------------------------


def test_names_stay_within_63_characters_and_distinct() -> None:
    long_name = "a-very-long-fullname-override-that-fills-up-the-kubernetes-limit"
    run_id = "a-thirty-character-run-id-0123"
    manifests = render("full", sets=[f"fullnameOverride={long_name}", f"backfill.runId={run_id}"])
    names = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert len(set(names)) == len(names)
    for _, name in names:
        assert len(name) <= 63, name
        assert not name.endswith("-")
    jobs = [n for kind, n in names if kind == "Job"]
    assert jobs
    assert all(n.endswith(f"-{run_id}") for n in jobs)


def test_common_labels_and_annotations_reach_every_object() -> None:
    for manifest in render("full"):
        assert manifest["metadata"]["labels"]["team"] == "data"
        assert manifest["metadata"]["annotations"]["owner"] == "data-platform"
        assert manifest["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_image_reference() -> None:
    (deployment,) = of_kind(render("default"), "Deployment")
    assert container(deployment)["image"] == "fanout:0.1.0"
    digest = "sha256:" + "a" * 64
    sets = [
        "image.registry=registry.example",
        "image.repository=team/fanout",
        f"image.digest={digest}",
    ]
    (deployment,) = of_kind(render("default", sets=sets), "Deployment")
    assert container(deployment)["image"] == f"registry.example/team/fanout@{digest}"
