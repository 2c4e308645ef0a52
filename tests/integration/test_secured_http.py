"""Elasticsearch and ClickHouse over HTTPS with credentials: `fanout run --sink elasticsearch`
and `--sink clickhouse` through a TLS-terminating proxy (``tests/support/tls_proxy.py``) whose
certificate the devstack CA signed and which checks basic auth or an API key on every request.
Every secret comes from a ``…_file`` setting. A wrong password or a CA the sink does not trust
ends the worker quickly with one line naming the connection.

What this proves: the sinks' ``ca_certs``/``ca_cert``, ``verify_certs``, username/password and
API-key settings over real HTTPS, and how they fail. What it does not: a store's own security
realm (the local Elasticsearch runs without security, the ClickHouse endpoint is chDB). The
slow tests at the end add Elasticsearch's own realm: a second, secured node (file-realm users,
roles, TLS), where a missing index privilege is a real 403; see docs/DEVSTACK.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client as ClickHouseClient
from elasticsearch import Elasticsearch

from tests.integration import test_secured_connections as secured
from tests.integration.conftest import Endpoints
from tests.integration.test_runtime_elasticsearch import expected_docs, searched_state
from tests.integration.test_secured_connections import (
    CA,
    FAIL_FAST_S,
    WRONG,
    assert_one_clear_line,
    exits_soon,
    secret,
)
from tests.support.debezium import (
    DEFAULT_TABLES,
    Message,
    expected_state,
    generate_stream,
    produce_stream,
)
from tests.support.pipeline import WorkerProcess, create_topic, unique, wait_caught_up
from tests.support.secured_es import SecuredNode, secured_elasticsearch
from tests.support.tls_proxy import Credentials, TlsProxy, tls_proxy

ES_USER, ES_PASSWORD = "fanout_es", "es-proxy-secret-1"
ES_API_KEY = "ZmFub3V0OmFwaS1rZXktc2VjcmV0LTE="  # the encoded form a client sends
CH_USER, CH_PASSWORD = "fanout_ch", "ch-proxy-secret-1"
SECRETS = (ES_PASSWORD, ES_API_KEY, CH_PASSWORD, WRONG)
untrusted_ca = secured.untrusted_ca  # the fixture: a CA of its own that signed nothing served


@pytest.fixture(scope="module")
def certs() -> Path:
    if not CA.exists():
        pytest.fail(f"{CA} is missing: run `scripts/devstack up` (it makes the devstack CA)")
    return CA.parent


@pytest.fixture
def es_proxy(certs: Path, endpoints: Endpoints, es: Elasticsearch) -> Iterator[TlsProxy]:
    accept = Credentials(ES_USER, ES_PASSWORD, api_key=ES_API_KEY)
    with tls_proxy(endpoints.es_hosts[0], certs, accept, "elasticsearch") as proxy:
        yield proxy


@pytest.fixture
def ch_proxy(certs: Path, endpoints: Endpoints, clickhouse: ClickHouseClient) -> Iterator[TlsProxy]:
    upstream = f"http://{endpoints.ch_host}:{endpoints.ch_port}"
    with tls_proxy(upstream, certs, Credentials(CH_USER, CH_PASSWORD), "clickhouse") as proxy:
        yield proxy


@pytest.fixture
def prefix(es: Elasticsearch, clickhouse: ClickHouseClient, kafka_bootstrap: str) -> Iterator[str]:
    name = unique("sechttp")
    yield name
    es.options(ignore_status=404).indices.delete(index=f"{name}-*", expand_wildcards="all")
    clickhouse.command(f"DROP DATABASE IF EXISTS {name}")


def worker_config(prefix: str, topic: str, sink: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "kafka": {
            "topics": [topic],
            "group_prefix": prefix,
            "dlq_prefix": f"{prefix}.dlq",
            "session_timeout_ms": 6000,
        },
        "metrics": {"port": 0},
        "logging": {"format": "text"},
        "sinks": {
            sink: {
                "enabled": True,
                "batch": {"max_events": 200, "max_wait_ms": 100},
                "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 1000},
                "config_error_exit_s": 0,
                **settings,
            }
        },
    }


def es_settings(
    proxy: TlsProxy,
    prefix: str,
    tmp_path: Path,
    *,
    auth: str = "basic",
    password: str = ES_PASSWORD,
    ca: Path = CA,
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "hosts": [proxy.url],
        "ca_certs": str(ca),
        "index_prefix": f"{prefix}-",
        "request_timeout_s": 10,
    }
    if auth == "api_key":
        settings["api_key_file"] = secret(tmp_path, "es-api-key", ES_API_KEY)
    else:
        settings["username"] = ES_USER
        settings["password_file"] = secret(tmp_path, "es-password", password)
    return settings


def ch_settings(
    proxy: TlsProxy, prefix: str, tmp_path: Path, *, password: str = CH_PASSWORD, ca: Path = CA
) -> dict[str, Any]:
    return {
        "mode": "server",
        "host": "127.0.0.1",
        "port": proxy.port,
        "secure": True,
        "ca_cert": str(ca),
        "username": CH_USER,
        "password_file": secret(tmp_path, "ch-password", password),
        "database": prefix,
    }


def started(workers: list[Any], sink: str, config: dict[str, Any], tmp_path: Path) -> WorkerProcess:
    worker = WorkerProcess(sink, config, tmp_path).start()
    workers.append(worker)
    return worker


def assert_no_secret(log: str) -> None:
    for value in SECRETS:
        assert value not in log


def live_keys(clickhouse: ClickHouseClient, database: str) -> dict[str, set[tuple[Any, ...]]]:
    keys: dict[str, set[tuple[Any, ...]]] = {}
    for spec in DEFAULT_TABLES:
        columns = ", ".join(f"`{name}`" for name in spec.primary_key)
        rows = clickhouse.query(
            f"SELECT {columns} FROM `{database}`.`{spec.table}` FINAL WHERE _fanout_deleted = 0"
        ).result_rows
        keys[spec.name] = {tuple(row) for row in rows}
    return keys


def expected_keys(messages: list[Message]) -> dict[str, set[tuple[Any, ...]]]:
    state = expected_state(messages)
    return {spec.name: set(state.get(spec.name, {})) for spec in DEFAULT_TABLES}


# -- Elasticsearch -------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["basic", "api_key"])
def test_elasticsearch_sink_writes_over_https_with_credentials_from_files(
    auth: str,
    es_proxy: TlsProxy,
    es: Elasticsearch,
    prefix: str,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    topic = create_topic(f"{prefix}.cdc", partitions=3)
    messages = list(generate_stream(600, n_keys=60, seed=14))
    produce_stream(topic, messages)
    settings = es_settings(es_proxy, prefix, tmp_path, auth=auth)
    worker = started(
        workers, "elasticsearch", worker_config(prefix, topic, "elasticsearch", settings), tmp_path
    )
    wait_caught_up(f"{prefix}-elasticsearch", [topic], timeout_s=120)
    assert searched_state(es, prefix) == expected_docs(messages)
    # Every request the sink made came through the proxy, over TLS, with the right credentials.
    assert es_proxy.forwarded > 0 and es_proxy.refused == 0, worker.log()[-2000:]
    assert worker.alive, worker.log()[-3000:]
    assert_no_secret(worker.log())


def test_wrong_elasticsearch_password_fails_fast_with_one_line(
    es_proxy: TlsProxy, prefix: str, tmp_path: Path, workers: list[Any]
) -> None:
    topic = create_topic(f"{prefix}.cdc", partitions=1)
    settings = es_settings(es_proxy, prefix, tmp_path, password=WRONG)
    worker = started(
        workers, "elasticsearch", worker_config(prefix, topic, "elasticsearch", settings), tmp_path
    )
    code, took = exits_soon(worker)
    assert code == 2, worker.log()[-2000:]  # a configuration error
    assert took < FAIL_FAST_S
    log = worker.log()
    assert_one_clear_line(log, "elasticsearch", es_proxy.url, "401", "security_exception")
    assert_no_secret(log)


def test_untrusted_elasticsearch_certificate_fails_fast_with_one_line(
    es_proxy: TlsProxy, prefix: str, tmp_path: Path, workers: list[Any], untrusted_ca: Path
) -> None:
    topic = create_topic(f"{prefix}.cdc", partitions=1)
    settings = es_settings(es_proxy, prefix, tmp_path, ca=untrusted_ca)
    worker = started(
        workers, "elasticsearch", worker_config(prefix, topic, "elasticsearch", settings), tmp_path
    )
    code, took = exits_soon(worker)
    assert code == 2, worker.log()[-2000:]
    assert took < FAIL_FAST_S
    assert_one_clear_line(worker.log(), "elasticsearch", es_proxy.url, "certificate verify failed")
    assert es_proxy.forwarded == 0  # nothing was sent to a server the sink does not trust


# -- ClickHouse ----------------------------------------------------------------------------------


def test_clickhouse_sink_writes_over_https_with_a_password_from_a_file(
    ch_proxy: TlsProxy,
    clickhouse: ClickHouseClient,
    prefix: str,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    topic = create_topic(f"{prefix}.cdc", partitions=3)
    messages = list(generate_stream(600, n_keys=60, seed=15))
    produce_stream(topic, messages)
    settings = ch_settings(ch_proxy, prefix, tmp_path)
    worker = started(
        workers, "clickhouse", worker_config(prefix, topic, "clickhouse", settings), tmp_path
    )
    wait_caught_up(f"{prefix}-clickhouse", [topic], timeout_s=120)
    assert live_keys(clickhouse, prefix) == expected_keys(messages)
    assert ch_proxy.forwarded > 0 and ch_proxy.refused == 0, worker.log()[-2000:]
    assert worker.alive, worker.log()[-3000:]
    assert_no_secret(worker.log())


def test_wrong_clickhouse_password_fails_fast_with_one_line(
    ch_proxy: TlsProxy, prefix: str, tmp_path: Path, workers: list[Any]
) -> None:
    topic = create_topic(f"{prefix}.cdc", partitions=1)
    settings = ch_settings(ch_proxy, prefix, tmp_path, password=WRONG)
    worker = started(
        workers, "clickhouse", worker_config(prefix, topic, "clickhouse", settings), tmp_path
    )
    code, took = exits_soon(worker)
    assert code == 2, worker.log()[-2000:]
    assert took < FAIL_FAST_S
    log = worker.log()
    assert_one_clear_line(log, "ClickHouse", ch_proxy.url, "AUTHENTICATION_FAILED")
    assert_no_secret(log)


def test_untrusted_clickhouse_certificate_fails_fast_with_one_line(
    ch_proxy: TlsProxy, prefix: str, tmp_path: Path, workers: list[Any], untrusted_ca: Path
) -> None:
    topic = create_topic(f"{prefix}.cdc", partitions=1)
    settings = ch_settings(ch_proxy, prefix, tmp_path, ca=untrusted_ca)
    worker = started(
        workers, "clickhouse", worker_config(prefix, topic, "clickhouse", settings), tmp_path
    )
    code, took = exits_soon(worker)
    assert code == 2, worker.log()[-2000:]
    assert took < FAIL_FAST_S
    assert_one_clear_line(worker.log(), "ClickHouse", ch_proxy.url, "certificate verify failed")
    assert ch_proxy.forwarded == 0


# -- a real Elasticsearch security realm (slow: a second node starts) --------------------------
# TLS, basic auth and privileges as Elasticsearch itself checks them: file-realm users whose
# roles come from roles.yml. API keys cannot be made on this distribution (tests/support/
# secured_es.py says why); they are proven only through the proxy above.

REALM_WRITER = ("fanout_writer", "realm-writer-secret-1")
REALM_NO_INDEX = ("fanout_monitor", "realm-monitor-secret-1")
REALM_ROLES = """
fanout_writer:
  cluster: [monitor]
  indices:
    - names: ["sechttp_*"]
      privileges: [all]
fanout_monitor_only:
  cluster: [monitor]
"""


@pytest.fixture(scope="module")
def realm(certs: Path) -> Iterator[SecuredNode]:
    users = {
        REALM_WRITER[0]: (REALM_WRITER[1], "fanout_writer"),
        REALM_NO_INDEX[0]: (REALM_NO_INDEX[1], "fanout_monitor_only"),
    }
    with secured_elasticsearch(certs, users, REALM_ROLES) as node:
        yield node


def realm_settings(
    node: SecuredNode, prefix: str, tmp_path: Path, user: tuple[str, str]
) -> dict[str, Any]:
    return {
        "hosts": [node.url],
        "ca_certs": str(node.ca),
        "username": user[0],
        "password_file": secret(tmp_path, "es-password", user[1]),
        "index_prefix": f"{prefix}-",
        "request_timeout_s": 10,
    }


@pytest.mark.slow
def test_elasticsearch_sink_writes_through_a_real_security_realm(
    realm: SecuredNode, prefix: str, tmp_path: Path, workers: list[Any]
) -> None:
    topic = create_topic(f"{prefix}.cdc", partitions=3)
    messages = list(generate_stream(600, n_keys=60, seed=16))
    produce_stream(topic, messages)
    settings = realm_settings(realm, prefix, tmp_path, REALM_WRITER)
    worker = started(
        workers, "elasticsearch", worker_config(prefix, topic, "elasticsearch", settings), tmp_path
    )
    wait_caught_up(f"{prefix}-elasticsearch", [topic], timeout_s=120)
    with realm.client() as admin:
        assert searched_state(admin, prefix) == expected_docs(messages)
    assert worker.alive, worker.log()[-3000:]
    assert REALM_WRITER[1] not in worker.log()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("user", "needles"),
    [
        ((REALM_WRITER[0], WRONG), ("401", "security_exception")),  # a wrong password
        (REALM_NO_INDEX, ("403", "security_exception", "unauthorized")),  # no index privilege
    ],
    ids=["wrong-password", "no-index-privilege"],
)
def test_a_real_realm_refusing_the_sink_stops_it_fast_with_one_line(
    user: tuple[str, str],
    needles: tuple[str, ...],
    realm: SecuredNode,
    prefix: str,
    tmp_path: Path,
    workers: list[Any],
) -> None:
    topic = create_topic(f"{prefix}.cdc", partitions=1)
    settings = realm_settings(realm, prefix, tmp_path, user)
    worker = started(
        workers, "elasticsearch", worker_config(prefix, topic, "elasticsearch", settings), tmp_path
    )
    code, took = exits_soon(worker)
    assert code == 2, worker.log()[-2000:]
    assert took < FAIL_FAST_S
    assert_one_clear_line(worker.log(), "elasticsearch", realm.url, *needles)
    assert user[1] not in worker.log()
