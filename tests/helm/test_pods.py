"""The sinks' pods: probes, grace period, ClickHouse embedded on a claim, pod extras, policy."""

from __future__ import annotations

from tests.helm.chart import (
    RELEASE,
    by_name,
    component,
    config_of,
    container,
    env_map,
    of_kind,
    pod_spec,
    render,
    workloads,
)

# --- probes ----------------------------------------------------------------------------------


def test_startup_probe_holds_off_liveness_while_a_sink_is_down_at_start() -> None:
    """Readiness needs the sink open; until then liveness would restart-loop the pod."""
    for workload in workloads(render("full")):
        probes = container(workload)
        startup = probes["startupProbe"]
        assert startup["httpGet"] == {"path": "/readyz", "port": "metrics"}
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget >= 30 * 60, "a sink down for half an hour at start must not restart the pod"
        assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for job in of_kind(render("full"), "Job"):
        assert not {"startupProbe", "livenessProbe", "readinessProbe"} & set(container(job))


def test_startup_probe_can_be_tuned_or_dropped() -> None:
    sets = ["startupProbe.failureThreshold=360"]
    (deployment,) = of_kind(render("default", sets=sets), "Deployment")
    assert container(deployment)["startupProbe"]["failureThreshold"] == 360
    (deployment,) = of_kind(render("default", sets=["startupProbe.enabled=false"]), "Deployment")
    assert "startupProbe" not in container(deployment)


# --- grace period ----------------------------------------------------------------------------


def grace(*files: str, sets: tuple[str, ...] = ()) -> dict[str, int]:
    found = {}
    for workload in workloads(render(*files, sets=tuple(sets))):
        found[component(workload)] = pod_spec(workload)["terminationGracePeriodSeconds"]
    return found


def test_grace_period_covers_two_writes_the_batch_wait_and_the_dlq_flush() -> None:
    # 2 x write timeout + ceil(maxWaitMs / 1000) + 40
    assert grace("full") == {
        "postgres": 2 * 60 + 1 + 40,
        "elasticsearch": 2 * 30 + 1 + 40,
        "clickhouse": 2 * 120 + 1 + 40,
    }


def test_grace_period_follows_the_timeouts_and_an_explicit_value_wins() -> None:
    sets = (
        "sinks.elasticsearch.requestTimeoutS=45",
        "sinks.elasticsearch.batch.maxWaitMs=2500",
        "sinks.clickhouse.sendReceiveTimeoutS=200",
        "sinks.postgres.terminationGracePeriodSeconds=30",
    )
    assert grace("full", sets=sets) == {
        "postgres": 30,
        "elasticsearch": 2 * 45 + 3 + 40,
        "clickhouse": 2 * 200 + 1 + 40,
    }
    config = config_of(render("full", sets=sets), "clickhouse")
    assert config["sinks"]["clickhouse"]["send_receive_timeout_s"] == 200
    # PostgreSQL's write is bounded by its statement timeout (60 s when that is 0: none).
    assert grace("full", sets=("sinks.postgres.statementTimeoutS=90",))["postgres"] == 2 * 90 + 41
    assert grace("full", sets=("sinks.postgres.statementTimeoutS=0",))["postgres"] == 2 * 60 + 41


# --- ClickHouse embedded ---------------------------------------------------------------------


def test_clickhouse_embedded_is_one_statefulset_replica_with_a_claim_never_an_emptydir() -> None:
    manifests = render("clickhouse-embedded")
    assert of_kind(manifests, "Deployment") == []
    (statefulset,) = of_kind(manifests, "StatefulSet")
    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "chdb-data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
    assert "chdb-data" not in volumes, "the claim template, not a pod volume, backs the data"
    assert all("emptyDir" not in v or name == "tmp" for name, v in volumes.items())
    mounts = {m["name"]: m["mountPath"] for m in container(statefulset)["volumeMounts"]}
    clickhouse = config_of(manifests, "clickhouse")["sinks"]["clickhouse"]
    assert mounts["chdb-data"] == clickhouse["data_dir"] == "/var/lib/fanout/chdb"
    assert clickhouse["mode"] == "embedded"
    assert "host" not in clickhouse
    (headless,) = [s for s in of_kind(manifests, "Service") if s["spec"].get("clusterIP") == "None"]
    assert spec["serviceName"] == headless["metadata"]["name"]


def test_clickhouse_embedded_claim_template_carries_no_version_labels() -> None:
    """volumeClaimTemplates cannot change: a chart or app version there would fail upgrades."""
    (statefulset,) = of_kind(render("clickhouse-embedded"), "StatefulSet")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    labels = claim["metadata"]["labels"]
    assert "helm.sh/chart" not in labels
    assert "app.kubernetes.io/version" not in labels
    again = render("clickhouse-embedded", sets=["image.tag=9.9.9"])
    assert of_kind(again, "StatefulSet")[0]["spec"]["volumeClaimTemplates"] == [claim]


def test_clickhouse_embedded_on_an_existing_claim() -> None:
    sets = ["sinks.clickhouse.embedded.existingClaim=fanout-chdb"]
    (statefulset,) = of_kind(render("clickhouse-embedded", sets=sets), "StatefulSet")
    assert "volumeClaimTemplates" not in statefulset["spec"]
    volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
    assert volumes["chdb-data"]["persistentVolumeClaim"] == {"claimName": "fanout-chdb"}


def test_clickhouse_embedded_storage_class_dash_means_none() -> None:
    sets = ["sinks.clickhouse.embedded.persistence.storageClass=-"]
    (statefulset,) = of_kind(render("clickhouse-embedded", sets=sets), "StatefulSet")
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == ""
    sets = ["sinks.clickhouse.embedded.persistence.storageClass="]
    (statefulset,) = of_kind(render("clickhouse-embedded", sets=sets), "StatefulSet")
    assert "storageClassName" not in statefulset["spec"]["volumeClaimTemplates"][0]["spec"]


def test_clickhouse_embedded_can_be_stopped() -> None:
    sets = ["sinks.clickhouse.replicaCount=0"]
    (statefulset,) = of_kind(render("clickhouse-embedded", sets=sets), "StatefulSet")
    assert statefulset["spec"]["replicas"] == 0


def test_statefulset_pod_name_is_the_kafka_static_member_id() -> None:
    (statefulset,) = of_kind(render("clickhouse-embedded"), "StatefulSet")
    assert env_map(statefulset)["FANOUT_KAFKA__GROUP_INSTANCE_ID"] == {
        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
    }
    for deployment in of_kind(render("full"), "Deployment"):
        # Deployment pods get new names on every restart: static membership would not help.
        assert "FANOUT_KAFKA__GROUP_INSTANCE_ID" not in env_map(deployment)


def test_clickhouse_server_mode_is_a_deployment_without_a_data_volume() -> None:
    (deployment,) = of_kind(render("clickhouse"), "Deployment")
    assert "chdb-data" not in {v["name"] for v in pod_spec(deployment)["volumes"]}
    assert of_kind(render("clickhouse"), "StatefulSet") == []


# --- pod extras ------------------------------------------------------------------------------


def test_extra_env_and_env_from_reach_every_fanout_container() -> None:
    manifests = render("pod-extras", sets=["backfill.runId=r1", "backfill.sinks={postgres}"])
    pods = workloads(manifests) + of_kind(manifests, "Job")
    assert len(pods) == 2
    for pod in pods:
        env = container(pod)["env"]
        assert env_map(pod)["TZ"] == "UTC"
        assert env[0]["name"] == "FANOUT_CONFIG"
        assert container(pod)["envFrom"] == [
            {"configMapRef": {"name": "fanout-proxy-env", "optional": True}}
        ]


def test_sink_env_comes_after_extra_env_so_it_wins() -> None:
    sets = ["extraEnv[0].name=FANOUT_LOGGING__LEVEL", "extraEnv[0].value=WARNING"]
    (postgres,) = [w for w in workloads(render("full", sets=sets)) if component(w) == "postgres"]
    names = [e["name"] for e in container(postgres)["env"]]
    assert names.count("FANOUT_LOGGING__LEVEL") == 2
    last = [e for e in container(postgres)["env"] if e["name"] == "FANOUT_LOGGING__LEVEL"][-1]
    assert last["value"] == "DEBUG"  # sinks.postgres.env in full-values.yaml


def test_init_containers_and_sidecars() -> None:
    manifests = render("pod-extras", sets=["backfill.runId=r1", "backfill.sinks={postgres}"])
    (deployment,) = of_kind(manifests, "Deployment")
    spec = pod_spec(deployment)
    assert [c["name"] for c in spec["initContainers"]] == ["wait-for-postgres"]
    assert [c["name"] for c in spec["containers"]] == ["fanout", "pgbouncer-exporter"]
    (job,) = of_kind(manifests, "Job")
    assert [c["name"] for c in pod_spec(job)["initContainers"]] == ["wait-for-postgres"]
    assert [c["name"] for c in pod_spec(job)["containers"]] == ["fanout"], "a sidecar never ends"


def test_topology_spread_gets_the_sinks_pod_selector_unless_given() -> None:
    (deployment,) = of_kind(render("pod-extras"), "Deployment")
    (constraint,) = pod_spec(deployment)["topologySpreadConstraints"]
    selector = constraint["labelSelector"]["matchLabels"]
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert constraint["topologyKey"] == "topology.kubernetes.io/zone"
    own = {"matchLabels": {"team": "cdc"}}
    sets = [
        "sinks.postgres.topologySpreadConstraints[0].maxSkew=2",
        "sinks.postgres.topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
        "sinks.postgres.topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule",
        "sinks.postgres.topologySpreadConstraints[0].labelSelector.matchLabels.team=cdc",
    ]
    (deployment,) = of_kind(render("default", sets=sets), "Deployment")
    assert pod_spec(deployment)["topologySpreadConstraints"][0]["labelSelector"] == own


# --- NetworkPolicy ---------------------------------------------------------------------------


def test_no_network_policy_unless_enabled() -> None:
    assert of_kind(render("full"), "NetworkPolicy") == []


def test_network_policy_admits_metrics_scrapes_and_only_the_listed_egress() -> None:
    manifests = render("pod-extras")
    (policy,) = of_kind(manifests, "NetworkPolicy")
    spec = policy["spec"]
    (deployment,) = of_kind(manifests, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": 9108, "protocol": "TCP"}]
    assert ingress["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    dns, kafka, postgres = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert kafka["ports"] == [{"port": 9092, "protocol": "TCP"}]
    assert postgres["ports"] == [{"port": 5432, "protocol": "TCP"}]


def test_network_policy_with_open_egress_restricts_only_ingress() -> None:
    sets = ["networkPolicy.enabled=true"]
    (policy,) = of_kind(render("default", sets=sets), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in policy["spec"]
    assert "from" not in policy["spec"]["ingress"][0]


def test_workload_names() -> None:
    manifests = render("full")
    assert set(by_name(manifests, "Deployment")) == {
        f"{RELEASE}-fanout-postgres",
        f"{RELEASE}-fanout-elasticsearch",
        f"{RELEASE}-fanout-clickhouse",
    }
