"""The timeouts that bound every call a sink makes, as the drivers receive them (no services)."""

from __future__ import annotations

from fanout.settings import ClickHouseSettings, ElasticsearchSettings, PostgresSettings
from sinks.elasticsearch.sink import client_options


def test_postgres_statement_and_lock_timeouts_go_as_connection_options() -> None:
    info = PostgresSettings().conninfo()
    assert info["options"] == "-c statement_timeout=60000 -c lock_timeout=30000"
    assert info["connect_timeout"] == 10 and info["keepalives"] == 1
    custom = PostgresSettings(statement_timeout_s=2.5, lock_timeout_s=0).conninfo()
    assert custom["options"] == "-c statement_timeout=2500"


def test_postgres_sends_no_options_when_both_timeouts_are_off() -> None:
    # a pooler that refuses startup options (PgBouncer) still connects
    assert "options" not in PostgresSettings(statement_timeout_s=0, lock_timeout_s=0).conninfo()


def test_a_call_is_reported_hung_after_the_stores_own_timeout() -> None:
    assert PostgresSettings().hung_after_s == 60
    assert PostgresSettings(statement_timeout_s=5, lock_timeout_s=3).hung_after_s == 10
    assert ElasticsearchSettings(request_timeout_s=7).hung_after_s == 7
    assert ClickHouseSettings().hung_after_s == 120
    assert ClickHouseSettings(send_receive_timeout_s=30).hung_after_s == 30


def test_elasticsearch_bounds_every_request_and_does_not_retry_a_timeout() -> None:
    options = client_options(ElasticsearchSettings(request_timeout_s=7))
    assert options["request_timeout"] == 7 and options["retry_on_timeout"] is False
