"""Bad values fail the render with a message naming the value at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helm.chart import CHART, render_error, run_helm

SCHEMA_ERRORS = [
    # (--set items, text the error must contain)
    (["sinks.mysql.enabled=true"], "sinks: Additional property mysql is not allowed"),
    (
        ["sinks.postgres.replicaCount=-1"],
        "sinks.postgres.replicaCount: Must be greater than or equal to 0",
    ),
    (
        ["sinks.postgres.replicaCount=two"],
        "sinks.postgres.replicaCount: Invalid type. Expected: integer",
    ),
    (
        ["sinks.postgres.enabled=yes please"],
        "sinks.postgres.enabled: Invalid type. Expected: boolean",
    ),
    (["sinks.clickhouse.mode=cluster"], "sinks.clickhouse.mode must be one of the following"),
    (["sinks.postgres.port=70000"], "sinks.postgres.port: Must be less than or equal to 65535"),
    (["sinks.postgres.sslmode=on"], "sinks.postgres.sslmode must be one of the following"),
    (
        ["sinks.elasticsearch.hosts={es:9200}"],
        "sinks.elasticsearch.hosts.0: Does not match pattern",
    ),
    (
        ["sinks.postgres.batch.maxEvents=0"],
        "sinks.postgres.batch.maxEvents: Must be greater than or equal to 1",
    ),
    (["sinks.postgres.autoscaling.partitionCount=0"], "sinks.postgres.autoscaling.partitionCount"),
    (["sinks.postgres.replicas=2"], "sinks.postgres: Additional property replicas is not allowed"),
    (["kafka.securityProtocol=SASL"], "kafka.securityProtocol must be one of the following"),
    (
        ["kafka.bootstrapServers="],
        "kafka.bootstrapServers: String length must be greater than or equal to 1",
    ),
    (["logging.level=TRACE"], "logging.level must be one of the following"),
    (["backfill.sinks={mysql}"], "backfill.sinks.0 must be one of the following"),
    (["backfill.from=yesterday"], "backfill.from: Does not match pattern"),
    (["backfill.runId=Not_A_Label"], "backfill.runId: Does not match pattern"),
    (["backfill.enabled=true"], "backfill: Additional property enabled is not allowed"),
    (["terminationGracePeriodSeconds=60"], "Additional property terminationGracePeriodSeconds"),
    (
        ["sinks.postgres.pdb.unhealthyPodEvictionPolicy=Always"],
        "sinks.postgres.pdb.unhealthyPodEvictionPolicy must be one of the following",
    ),
    (
        ["sinks.postgres.autoscaling.fallback.replicas=2"],
        "sinks.postgres.autoscaling.fallback: Has a dependency on failureThreshold",
    ),
    (
        ["sinks.clickhouse.embedded.persistence.accessModes={ReadOnlyMany}"],
        "sinks.clickhouse.embedded.persistence.accessModes.0 must be one of the following",
    ),
    (
        ["sinks.clickhouse.embedded.persistence.size=lots"],
        "sinks.clickhouse.embedded.persistence.size: Does not match pattern",
    ),
    (["extraApiVersions={keda}"], "extraApiVersions.0: Does not match pattern"),
    (["image.pullPolicy=Sometimes"], "image.pullPolicy must be one of the following"),
    (["metrics.port=0"], "metrics.port: Must be greater than or equal to 1"),
    (["replicaCount=2"], "Additional property replicaCount is not allowed"),
]

TEMPLATE_ERRORS = [
    (["sinks.postgres.enabled=false"], "enable at least one sink"),
    (["kafka.topicPattern=^db"], "set kafka.topics or kafka.topicPattern, not both"),
    (["kafka.topics=null"], "set kafka.topics (a list of topics) or kafka.topicPattern"),
    (
        ["secrets.existingSecret=creds", "sinks.postgres.password=p"],
        "secrets.existingSecret is set, so leave the password values empty (a value for Secret key "
        '"postgres-password"',
    ),
    (
        ["sinks.postgres.autoscaling.enabled=true", "extraApiVersions={keda.sh/v1alpha1}"],
        "sinks.postgres.autoscaling.partitionCount is required when autoscaling is enabled",
    ),
    (
        [
            "extraApiVersions={keda.sh/v1alpha1}",
            "sinks.postgres.autoscaling.enabled=true",
            "sinks.postgres.autoscaling.partitionCount=2",
            "sinks.postgres.autoscaling.minReplicas=3",
        ],
        "sinks.postgres.autoscaling.minReplicas (3) is greater than maxReplicas capped at "
        "partitionCount (2)",
    ),
    (
        [
            "sinks.clickhouse.enabled=true",
            "sinks.clickhouse.mode=embedded",
            "sinks.clickhouse.replicaCount=2",
        ],
        "sinks.clickhouse.mode=embedded keeps its data on one volume opened by one process",
    ),
    (["backfill.runId=r1"], "backfill.runId is set but backfill.sinks is empty"),
    (
        ["backfill.runId=r1", "backfill.sinks={elasticsearch}"],
        'backfill.sinks names "elasticsearch" but sinks.elasticsearch.enabled is false',
    ),
    (
        [
            "sinks.clickhouse.enabled=true",
            "sinks.clickhouse.mode=embedded",
            "backfill.runId=r1",
            "backfill.sinks={clickhouse}",
        ],
        "backfill.sinks names clickhouse, which runs in embedded mode",
    ),
    (
        [
            "sinks.clickhouse.enabled=true",
            "sinks.clickhouse.mode=embedded",
            "sinks.clickhouse.autoscaling.enabled=true",
        ],
        "sinks.clickhouse.mode=embedded keeps its data on one volume opened by one process",
    ),
    (
        [
            "extraApiVersions={keda.sh/v1alpha1}",
            "sinks.postgres.autoscaling.enabled=true",
            "sinks.postgres.autoscaling.partitionCount=3",
            "kafka.securityProtocol=SASL_SSL",
            "kafka.saslMechanism=GSSAPI",
            "secrets.existingSecret=creds",
        ],
        'only for SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 (kafka.saslMechanism is "GSSAPI")',
    ),
    (
        [
            "extraApiVersions={keda.sh/v1alpha1}",
            "sinks.postgres.autoscaling.enabled=true",
            "sinks.postgres.autoscaling.partitionCount=3",
            "kafka.securityProtocol=SASL_SSL",
            "kafka.saslMechanism=PLAIN",
        ],
        "KEDA needs the Kafka SASL password for its lag checks",
    ),
    (
        [
            "extraApiVersions={keda.sh/v1alpha1}",
            "sinks.postgres.autoscaling.enabled=true",
            "sinks.postgres.autoscaling.partitionCount=3",
            "kafka.securityProtocol=SSL",
            "keda.extraTriggerMetadata.tls=enable",
        ],
        "keda.extraTriggerMetadata.tls conflicts with the chart-made TriggerAuthentication",
    ),
    (
        ["metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false"],
        "metrics.serviceMonitor.enabled needs metrics.service.enabled=true",
    ),
]


@pytest.mark.parametrize(("sets", "message"), SCHEMA_ERRORS, ids=[s[0][0] for s in SCHEMA_ERRORS])
def test_schema_rejects_bad_values_naming_them(sets: list[str], message: str) -> None:
    error = render_error(sets=sets)
    assert "values don't meet the specifications of the schema" in error
    assert message in error, error


@pytest.mark.parametrize(
    ("sets", "message"), TEMPLATE_ERRORS, ids=[", ".join(s[0]) for s in TEMPLATE_ERRORS]
)
def test_inconsistent_values_fail_with_a_fanout_message(sets: list[str], message: str) -> None:
    error = render_error(sets=sets)
    assert "fanout: " in error
    assert message in error, error


def test_a_value_file_with_an_unknown_sink_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("sinks:\n  postgres:\n    enabled: true\n  kafka:\n    enabled: true\n")
    result = run_helm("template", "x", str(CHART), "-f", str(bad))
    assert result.returncode != 0
    assert "sinks: Additional property kafka is not allowed" in result.stderr
