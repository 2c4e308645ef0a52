"""KEDA: secured Kafka through a TriggerAuthentication, topics, scaling from zero, capabilities."""

from __future__ import annotations

from typing import Any

from tests.helm.chart import (
    RELEASE,
    Manifest,
    by_name,
    component,
    config_of,
    of_kind,
    pod_spec,
    render,
    render_error,
    run_helm,
    template_args,
)

TOPICS = ["dbserver1.inventory.customers", "dbserver1.inventory.orders"]


def scaled(manifests: list[Manifest], sink: str) -> dict[str, Any]:
    (found,) = [m for m in of_kind(manifests, "ScaledObject") if component(m) == sink]
    return dict(found["spec"])


def test_sasl_renders_a_trigger_authentication_from_the_workers_secret() -> None:
    manifests = render("keda-sasl")
    (auth,) = of_kind(manifests, "TriggerAuthentication")
    name = auth["metadata"]["name"]
    spec = auth["spec"]
    secret_refs = {r["parameter"]: r for r in spec["secretTargetRef"]}
    worker = by_name(manifests, "Deployment")[f"{RELEASE}-fanout-postgres"]
    volumes = {v["name"]: v for v in pod_spec(worker)["volumes"]}
    password_file = config_of(manifests, "postgres")["kafka"]["sasl_password_file"]
    assert (secret_refs["password"]["name"], secret_refs["password"]["key"]) == (
        volumes["secrets"]["secret"]["secretName"],
        password_file.rsplit("/", 1)[-1],
    ), "KEDA reads the password from the same Secret and key as the workers"
    assert (secret_refs["ca"]["name"], secret_refs["ca"]["key"]) == ("kafka-ca", "ca.crt")
    config_refs = {r["parameter"]: (r["name"], r["key"]) for r in spec["configMapTargetRef"]}
    assert set(config_refs) == {"sasl", "username", "tls"}
    (params,) = [m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"] == name]
    resolved = {p: params["data"][key] for p, (cm, key) in config_refs.items() if cm == name}
    assert resolved == {"sasl": "scram_sha512", "username": "fanout", "tls": "enable"}
    assert not any("password" in key for key in params["data"]), "no secret in a ConfigMap"
    for sink in ("postgres", "elasticsearch"):
        for trigger in scaled(manifests, sink)["triggers"]:
            assert trigger["authenticationRef"] == {"name": name}
            assert not {"sasl", "tls"} & set(trigger["metadata"])


def test_sasl_over_plaintext_and_tls_without_sasl() -> None:
    sets = ["kafka.securityProtocol=SASL_PLAINTEXT", "kafka.saslMechanism=PLAIN"]
    manifests = render("keda-sasl", sets=sets)
    (auth,) = of_kind(manifests, "TriggerAuthentication")
    assert [r["parameter"] for r in auth["spec"]["secretTargetRef"]] == ["password"]
    name = auth["metadata"]["name"]
    params = by_name(manifests, "ConfigMap")[name]["data"]
    assert params["sasl"] == "plaintext"
    assert params["tls"] == "disable"
    manifests = render("keda-sasl", sets=["kafka.securityProtocol=SSL"])
    (auth,) = of_kind(manifests, "TriggerAuthentication")
    assert [r["parameter"] for r in auth["spec"]["secretTargetRef"]] == ["ca"]
    assert [r["parameter"] for r in auth["spec"]["configMapTargetRef"]] == ["tls"]


def test_no_trigger_authentication_for_plaintext_or_an_own_one() -> None:
    manifests = render("keda-sasl", sets=["kafka.securityProtocol=PLAINTEXT"])
    assert of_kind(manifests, "TriggerAuthentication") == []
    assert "authenticationRef" not in scaled(manifests, "postgres")["triggers"][0]
    full = render("full")
    assert of_kind(full, "TriggerAuthentication") == []
    trigger = scaled(full, "postgres")["triggers"][0]
    assert trigger["authenticationRef"] == {"name": "fanout-kafka-auth"}
    assert trigger["metadata"]["sasl"] == "plaintext"


def test_scaling_from_zero_sees_every_topic_before_the_group_ever_committed() -> None:
    """KEDA's kafka trigger takes one topic; without one it only counts topics the group has
    committed to, so a new group at zero replicas would never wake up. One trigger per topic,
    each named, with `earliest` (as the consumer) so an uncommitted group's lag is the topic."""
    manifests = render("keda-sasl")
    spec = scaled(manifests, "postgres")
    assert spec["minReplicaCount"] == 0
    assert spec["maxReplicaCount"] == 8
    assert "replicas" not in by_name(manifests, "Deployment")[f"{RELEASE}-fanout-postgres"]["spec"]
    assert [t["metadata"]["topic"] for t in spec["triggers"]] == TOPICS
    for trigger in spec["triggers"]:
        metadata = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert metadata["consumerGroup"] == "fanout-postgres"
        assert metadata["offsetResetPolicy"] == "earliest"
        assert metadata["activationLagThreshold"] == "10"
        assert metadata["lagThreshold"] == "1000"
        assert all(isinstance(v, str) for v in metadata.values()), "KEDA wants strings"
    assert len({t["name"] for t in spec["triggers"]}) == len(TOPICS)


def test_a_topic_pattern_is_one_trigger_without_topic_and_never_at_zero() -> None:
    sets = [
        "kafka.topics=null",
        "kafka.topicPattern=^dbserver1\\..*",
        "sinks.postgres.autoscaling.minReplicas=1",
    ]
    spec = scaled(render("keda-sasl", sets=sets), "postgres")
    (trigger,) = spec["triggers"]
    assert "topic" not in trigger["metadata"]
    error = render_error("keda-sasl", sets=sets[:2])
    assert "sinks.postgres.autoscaling.minReplicas=0 with kafka.topicPattern" in error


def test_hpa_behavior_and_fallback_are_passed_through() -> None:
    spec = scaled(render("keda-sasl"), "postgres")
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 2}
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]
    plain = scaled(render("keda-sasl"), "elasticsearch")
    assert "fallback" not in plain
    assert "advanced" not in plain


def test_scaled_objects_are_capped_at_the_partitions_and_target_their_deployment() -> None:
    manifests = render("full")
    objects = by_name(manifests, "ScaledObject")
    deployments = by_name(manifests, "Deployment")
    expected_max = {"postgres": 4, "elasticsearch": 3}  # min(maxReplicas, partitionCount)
    assert {component(o) for o in objects.values()} == set(expected_max)
    for name, scaled_object in objects.items():
        spec = scaled_object["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert "replicas" not in deployments[name]["spec"]
        assert spec["maxReplicaCount"] == expected_max[component(scaled_object)]
    assert deployments[f"{RELEASE}-fanout-clickhouse"]["spec"]["replicas"] == 2


# --- capability checks -----------------------------------------------------------------------


def test_keda_objects_need_the_api_or_fail_with_a_way_out() -> None:
    error = render_error("keda-sasl", sets=["extraApiVersions=null"])
    assert "sinks.postgres.autoscaling.enabled needs KEDA" in error
    assert "extraApiVersions" in error
    args = template_args(["keda-sasl"], ["extraApiVersions=null"])
    result = run_helm(*args, "--api-versions", "keda.sh/v1alpha1")
    assert result.returncode == 0, result.stderr
    assert "kind: ScaledObject" in result.stdout


def test_service_monitor_needs_the_api_or_fails_with_a_way_out() -> None:
    sets = ["metrics.serviceMonitor.enabled=true"]
    error = render_error("default", sets=sets)
    assert "metrics.serviceMonitor.enabled needs the Prometheus Operator" in error
    result = run_helm(
        *template_args(["default"], sets), "--api-versions", "monitoring.coreos.com/v1"
    )
    assert result.returncode == 0, result.stderr
    assert "kind: ServiceMonitor" in result.stdout
