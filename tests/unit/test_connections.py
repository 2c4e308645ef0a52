"""The one line a failed connection gets: what, where and the setting that says so, why, how to
check. Real drivers against a closed local port, no store needed."""

from __future__ import annotations

import socket

import pytest

from fanout.runtime.connections import kafka_unreachable, sink_unreachable
from fanout.settings import (
    ClickHouseSettings,
    ElasticsearchSettings,
    KafkaSettings,
    PostgresSettings,
    SinkSettings,
)
from sinks import create_sink


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def open_error(name: str, settings: SinkSettings) -> BaseException:
    sink = create_sink(name, settings)
    with pytest.raises(Exception) as caught:
        sink.open()
    return caught.value


def test_postgres_refused() -> None:
    port = closed_port()
    settings = PostgresSettings(port=port, password="pw-not-shown")
    line = sink_unreachable("postgres", settings, open_error("postgres", settings))
    assert line == (
        f"cannot reach PostgreSQL at 127.0.0.1:{port}/fanout (sinks.postgres.host, .port, "
        f".dbname): connection refused — is it running and listening there? check with: "
        f"pg_isready -h 127.0.0.1 -p {port} -d fanout"
    )


def test_postgres_host_that_does_not_resolve() -> None:
    settings = PostgresSettings(host="nowhere.invalid")
    line = sink_unreachable("postgres", settings, open_error("postgres", settings))
    assert "the host name does not resolve — is the host name right?" in line
    assert line.endswith("getent hosts nowhere.invalid")


def test_elasticsearch_refused_without_the_password_in_the_url() -> None:
    port = closed_port()
    settings = ElasticsearchSettings(
        hosts=[f"http://elastic:es-pa55word@127.0.0.1:{port}"], request_timeout_s=2
    )
    line = sink_unreachable("elasticsearch", settings, open_error("elasticsearch", settings))
    assert line == (
        f"cannot reach Elasticsearch at http://elastic:**********@127.0.0.1:{port} "
        "(sinks.elasticsearch.hosts): connection refused — is it running and listening there? "
        f"check with: curl -s http://127.0.0.1:{port}/_cluster/health"
    )


def test_clickhouse_refused() -> None:
    port = closed_port()
    settings = ClickHouseSettings(host="127.0.0.1", port=port)
    line = sink_unreachable("clickhouse", settings, open_error("clickhouse", settings))
    assert line == (
        f"cannot reach ClickHouse at http://127.0.0.1:{port} (sinks.clickhouse.host, .port): "
        f"connection refused — is it running and listening there? check with: "
        f"curl -s http://127.0.0.1:{port}/ping"
    )


def test_a_rejected_login_points_at_the_credentials() -> None:
    line = sink_unreachable(
        "postgres",
        PostgresSettings(),
        'connection failed: FATAL:  password authentication failed for user "fanout"',
    )
    assert line.startswith("cannot open PostgreSQL at 127.0.0.1:5432/fanout")
    assert line.endswith(
        "authentication failed — check sinks.postgres.user and the password "
        "(FANOUT_SINKS__POSTGRES__PASSWORD)"
    )


def test_an_unknown_reason_keeps_the_drivers_own_words() -> None:
    line = sink_unreachable("postgres", PostgresSettings(), 'FATAL:  database "x" does not exist')
    assert 'database "x" does not exist' in line


def test_kafka_lines_by_reason() -> None:
    kafka = KafkaSettings(bootstrap_servers="k1:9093,k2:9093")
    refused = kafka_unreachable(
        kafka, ["Connect to ipv4#1.2.3.4:9093 failed: Connection refused"], 10
    )
    assert refused.startswith("cannot reach Kafka at k1:9093,k2:9093 (kafka.bootstrap_servers)")
    assert refused.endswith("kafka-broker-api-versions.sh --bootstrap-server k1:9093")
    sasl = kafka_unreachable(kafka, ["SASL authentication error: Authentication failed"], 10)
    assert sasl.startswith("Kafka at k1:9093,k2:9093 (kafka.bootstrap_servers) refused fanout")
    silent = kafka_unreachable(kafka, [], 10)
    assert "no answer within 10 s" in silent
