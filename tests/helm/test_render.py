"""`helm template` of the value sets: schema-valid Kubernetes objects, and what they say."""

from __future__ import annotations

import base64
import posixpath
from typing import Any

import kubernetes_validate
import pytest

from tests.helm.chart import (
    NAMESPACE,
    RELEASE,
    Manifest,
    by_name,
    config_of,
    of_kind,
    pod_spec,
    render,
)

SINKS = ("postgres", "elasticsearch", "clickhouse")
VALUE_SETS = ("default", "postgres", "elasticsearch", "clickhouse", "clickhouse-embedded", "full")
# The chart's kubeVersion floor and a current release.
KUBE_VERSIONS = ("1.27.0", "1.34.0")
# Custom resources: no schema in kubernetes-validate; their fields are asserted below instead.
CRD_GROUPS = {"keda.sh", "monitoring.coreos.com"}
SECRET_VALUES = (
    "kafka-secret-value",
    "pg-secret-value",
    "es-secret-value",
    "es-api-key-value",
    "ch-secret-value",
)
WORKLOAD_KINDS = ("Deployment", "Job")


def component(manifest: Manifest) -> str:
    return str(manifest["metadata"]["labels"].get("app.kubernetes.io/component", ""))


def sink_objects(manifests: list[Manifest], sink: str) -> list[str]:
    kinds = ("Deployment", "Service", "PodDisruptionBudget", "ScaledObject")
    return [
        f"{m['kind']}/{m['metadata']['name']}"
        for m in manifests
        if m["kind"] in kinds and component(m) == sink
    ]


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in WORKLOAD_KINDS]


def container(manifest: Manifest) -> dict[str, Any]:
    (only,) = pod_spec(manifest)["containers"]
    return dict(only)


def env_map(manifest: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(manifest)["env"]}


# --- Kubernetes schema ---------------------------------------------------------------------


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
        for m in render("full")
        if m["apiVersion"].split("/")[0] in CRD_GROUPS
    }
    assert kinds == {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
    }


# --- sinks on and off ------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["postgres", "elasticsearch", "clickhouse"])
def test_a_sink_alone_renders_only_its_objects(values: str) -> None:
    manifests = render(values)
    assert [component(m) for m in of_kind(manifests, "Deployment")] == [values]
    for other in set(SINKS) - {values}:
        assert sink_objects(manifests, other) == []
        assert config_of(manifests)["sinks"][other] == {"enabled": False}


def test_defaults_run_the_postgres_sink_without_autoscaling_or_monitoring() -> None:
    manifests = render("default")
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    assert sink_objects(manifests, "postgres")


@pytest.mark.parametrize("sink", SINKS)
def test_disabling_a_sink_removes_all_its_objects(sink: str) -> None:
    sets = [f"sinks.{sink}.enabled=false", "backfill.enabled=false"]
    manifests = render("full", sets=sets)
    assert sink_objects(render("full"), sink), "the sink has objects while enabled"
    assert sink_objects(manifests, sink) == []
    assert config_of(manifests)["sinks"][sink] == {"enabled": False}
    monitor = of_kind(manifests, "ServiceMonitor")[0]
    assert sink not in monitor["spec"]["selector"]["matchExpressions"][0]["values"]


# --- commands --------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_each_deployment_runs_its_one_sink(values: str) -> None:
    for deployment in of_kind(render(values), "Deployment"):
        sink = component(deployment)
        assert container(deployment)["args"] == ["run", "--sink", sink]
        assert env_map(deployment)["FANOUT_CONFIG"] == "/etc/fanout/config.yaml"


def test_config_file_is_mounted_where_fanout_config_points() -> None:
    for workload in workloads(render("full")):
        mounts = {m["name"]: m for m in container(workload)["volumeMounts"]}
        path = env_map(workload)["FANOUT_CONFIG"]
        assert mounts["config"]["mountPath"] == posixpath.dirname(path)
        assert mounts["config"]["readOnly"] is True
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        assert volumes["config"]["configMap"]["name"] == f"{RELEASE}-fanout-config"


def test_backfill_jobs_run_exactly_fanout_backfill() -> None:
    jobs = by_name(render("full"), "Job")
    assert sorted(jobs) == [
        f"{RELEASE}-fanout-backfill-clickhouse-initial-load",
        f"{RELEASE}-fanout-backfill-postgres-initial-load",
    ]
    for name, job in jobs.items():
        sink = job["metadata"]["labels"]["fanout/sink"]
        assert sink in name
        assert container(job)["args"] == [
            "backfill",
            "--sink",
            sink,
            "--from",
            "2025-01-31T00:00:00Z",
            "--id",
            "initial-load",
        ]
        assert job["spec"]["backoffLimit"] == 3
        assert job["spec"]["ttlSecondsAfterFinished"] == 604800
        assert job["spec"]["activeDeadlineSeconds"] == 86400
        assert pod_spec(job)["restartPolicy"] == "Never"
        assert job["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert "livenessProbe" not in container(job)


def test_backfill_from_earliest_with_the_revision_as_id() -> None:
    sets = ["backfill.enabled=true", "backfill.sinks={postgres}"]
    (job,) = of_kind(render("default", sets=sets), "Job")
    assert job["metadata"]["name"] == f"{RELEASE}-fanout-backfill-postgres-r1"
    assert container(job)["args"] == [
        "backfill",
        "--sink",
        "postgres",
        "--from",
        "earliest",
        "--id",
        "r1",
    ]


def test_a_second_backfill_gets_its_own_job_name() -> None:
    base = ["backfill.enabled=true", "backfill.sinks={postgres}"]
    first = of_kind(render("default", sets=[*base, "backfill.id=first"]), "Job")[0]
    second = of_kind(render("default", sets=[*base, "backfill.id=second"]), "Job")[0]
    assert first["metadata"]["name"] != second["metadata"]["name"]


def test_no_backfill_job_unless_enabled() -> None:
    assert of_kind(render("default", sets=["backfill.sinks={postgres}"]), "Job") == []


# --- config and secrets ----------------------------------------------------------------------


def test_no_secret_value_appears_in_any_configmap() -> None:
    manifests = render("full")
    text = str([m["data"] for m in of_kind(manifests, "ConfigMap")])
    for value in SECRET_VALUES:
        assert value not in text
    assert "password" not in text.lower()
    assert "api_key" not in text.lower()


def test_chart_made_secret_holds_the_passwords_and_pods_read_them_as_env() -> None:
    manifests = render("full")
    (secret,) = of_kind(manifests, "Secret")
    stored = {base64.b64decode(v).decode() for v in secret["data"].values()}
    assert stored == set(SECRET_VALUES)
    postgres = by_name(manifests, "Deployment")[f"{RELEASE}-fanout-postgres"]
    env = env_map(postgres)
    assert env["FANOUT_SINKS__POSTGRES__PASSWORD"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "postgres-password",
        "optional": False,
    }
    assert "FANOUT_KAFKA__SASL_PASSWORD" in env
    assert not any("ELASTICSEARCH" in name or "CLICKHOUSE" in name for name in env)
    es = env_map(by_name(manifests, "Deployment")[f"{RELEASE}-fanout-elasticsearch"])
    es_secrets = {"FANOUT_SINKS__ELASTICSEARCH__PASSWORD", "FANOUT_SINKS__ELASTICSEARCH__API_KEY"}
    assert es_secrets <= set(es)


def test_existing_secret_is_referenced_and_no_secret_is_made() -> None:
    manifests = render("elasticsearch")
    assert of_kind(manifests, "Secret") == []
    (deployment,) = of_kind(manifests, "Deployment")
    refs = {k: v["secretKeyRef"] for k, v in env_map(deployment).items() if k != "FANOUT_CONFIG"}
    assert set(refs) == {
        "FANOUT_KAFKA__SASL_PASSWORD",
        "FANOUT_SINKS__ELASTICSEARCH__PASSWORD",
        "FANOUT_SINKS__ELASTICSEARCH__API_KEY",
    }
    assert all(r["name"] == "fanout-credentials" and r["optional"] is True for r in refs.values())


def test_without_passwords_no_secret_and_no_secret_env() -> None:
    manifests = render("default")
    assert of_kind(manifests, "Secret") == []
    assert set(env_map(of_kind(manifests, "Deployment")[0])) == {"FANOUT_CONFIG"}


def checksums(*files: str, sets: tuple[str, ...] = ()) -> dict[str, str]:
    (deployment,) = of_kind(render(*files, sets=sets), "Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    return {k: v for k, v in annotations.items() if k.startswith("checksum/")}


def test_checksum_config_changes_with_the_config_and_only_then() -> None:
    base = checksums("default")
    assert checksums("default", sets=("sinks.postgres.batch.maxEvents=100",)) != base
    assert checksums("default", sets=("kafka.bootstrapServers=other:9092",)) != base
    assert checksums("default", sets=("image.tag=9.9.9",)) == base
    assert checksums("default", sets=("sinks.postgres.replicaCount=3",)) == base


def test_checksum_secret_changes_with_a_password() -> None:
    one = checksums("default", sets=("sinks.postgres.password=a",))
    two = checksums("default", sets=("sinks.postgres.password=b",))
    assert one["checksum/config"] == two["checksum/config"]
    assert one["checksum/secret"] != two["checksum/secret"]


def test_metrics_port_is_the_same_in_config_container_probes_and_service() -> None:
    manifests = render("default", sets=["metrics.port=9200"])
    assert config_of(manifests)["metrics"] == {"host": "0.0.0.0", "port": 9200}
    main = container(of_kind(manifests, "Deployment")[0])
    assert main["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    (service,) = of_kind(manifests, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


# --- security --------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["full", "clickhouse-embedded"])
def test_every_pod_and_container_is_locked_down(values: str) -> None:
    for workload in workloads(render(values)):
        spec = pod_spec(workload)
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
    for workload in workloads(render(values)):
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        assert "emptyDir" in volumes["tmp"]
        writable = {
            m["mountPath"] for m in container(workload)["volumeMounts"] if not m.get("readOnly")
        }
        allowed = {"/tmp", "/var/lib/fanout/chdb"}
        assert "/tmp" in writable
        assert writable <= allowed, workload["metadata"]["name"]


def test_service_account_does_not_mount_a_token() -> None:
    (account,) = of_kind(render("default"), "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


# --- clickhouse embedded ---------------------------------------------------------------------


def test_clickhouse_embedded_keeps_its_data_on_the_claim_and_recreates() -> None:
    manifests = render("clickhouse-embedded")
    (deployment,) = of_kind(manifests, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert volumes["chdb-data"] == {
        "name": "chdb-data",
        "persistentVolumeClaim": {"claimName": "fanout-chdb"},
    }
    mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
    clickhouse = config_of(manifests)["sinks"]["clickhouse"]
    assert mounts["chdb-data"] == clickhouse["data_dir"] == "/var/lib/fanout/chdb"
    assert clickhouse["mode"] == "embedded"
    assert "host" not in clickhouse


def test_clickhouse_embedded_without_claim_uses_a_bounded_emptydir() -> None:
    manifests = render("clickhouse-embedded", sets=["sinks.clickhouse.embedded.existingClaim="])
    volumes = {v["name"]: v for v in pod_spec(of_kind(manifests, "Deployment")[0])["volumes"]}
    assert volumes["chdb-data"]["emptyDir"] == {"sizeLimit": "10Gi"}


def test_clickhouse_server_mode_has_no_data_volume() -> None:
    (deployment,) = of_kind(render("clickhouse"), "Deployment")
    assert "chdb-data" not in {v["name"] for v in pod_spec(deployment)["volumes"]}
    assert "strategy" not in deployment["spec"]


# --- KEDA, PDB, ServiceMonitor ---------------------------------------------------------------


def test_scaled_objects_scale_each_sink_on_its_consumer_group_capped_at_partitions() -> None:
    manifests = render("full")
    objects = by_name(manifests, "ScaledObject")
    deployments = by_name(manifests, "Deployment")
    expected_max = {"postgres": 4, "elasticsearch": 3}  # min(maxReplicas, partitionCount)
    assert {component(o) for o in objects.values()} == set(expected_max)
    for name, scaled in objects.items():
        sink = component(scaled)
        spec = scaled["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert "replicas" not in deployments[name]["spec"]
        assert spec["maxReplicaCount"] == expected_max[sink]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["authenticationRef"] == {"name": "fanout-kafka-auth"}
        metadata = trigger["metadata"]
        assert metadata["consumerGroup"] == f"fanout-{sink}"
        assert metadata["bootstrapServers"] == "kafka:9092"
        assert metadata["topic"] == "dbserver1.inventory.customers"
        assert metadata["sasl"] == "plaintext"
        assert all(isinstance(v, str) for v in metadata.values()), "KEDA wants strings"
    assert deployments[f"{RELEASE}-fanout-clickhouse"]["spec"]["replicas"] == 2


def test_scaled_object_omits_topic_for_a_pattern() -> None:
    sets = [
        "kafka.topics=null",
        "kafka.topicPattern=^db\\..*",
        "sinks.postgres.autoscaling.enabled=true",
        "sinks.postgres.autoscaling.partitionCount=24",
    ]
    (scaled,) = of_kind(render("default", sets=sets), "ScaledObject")
    assert "topic" not in scaled["spec"]["triggers"][0]["metadata"]
    assert scaled["spec"]["maxReplicaCount"] == 6


def test_pdbs_and_services_select_their_sinks_pods() -> None:
    manifests = render("full")
    pods = {
        component(d): d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind(manifests, "Deployment")
    }
    for pdb in of_kind(manifests, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pods[component(pdb)].items()
        assert selector["app.kubernetes.io/component"] == component(pdb)
    for service in of_kind(manifests, "Service"):
        assert service["spec"]["selector"].items() <= pods[component(service)].items()
    for deployment in of_kind(manifests, "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_pdb_takes_min_available_when_set() -> None:
    (pdb,) = of_kind(render("elasticsearch"), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdb["spec"]
    (default,) = of_kind(render("default"), "PodDisruptionBudget")
    assert default["spec"]["maxUnavailable"] == 1


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


# --- names and labels ------------------------------------------------------------------------


def test_names_stay_within_63_characters_and_distinct() -> None:
    long_name = "a-very-long-fullname-override-that-fills-up-the-kubernetes-limit"
    manifests = render(
        "full", sets=[f"fullnameOverride={long_name}", "backfill.id=abcdefghijklmnopqrst"]
    )
    names = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert len(set(names)) == len(names)
    for _, name in names:
        assert len(name) <= 63, name
        assert not name.endswith("-")
    jobs = [n for kind, n in names if kind == "Job"]
    assert all(n.endswith("-abcdefghijklmnopqrst") for n in jobs)


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
