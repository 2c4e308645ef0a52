"""Connection settings of the local stack (``scripts/devstack env``), unless already set."""

from __future__ import annotations

import os
import uuid

from fanout.settings import Settings, load_settings

DEVSTACK_ENV = {
    "FANOUT_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "FANOUT_SINKS__POSTGRES__HOST": "127.0.0.1",
    "FANOUT_SINKS__POSTGRES__PORT": "5432",
    "FANOUT_SINKS__POSTGRES__USER": "fanout",
    "FANOUT_SINKS__POSTGRES__PASSWORD": "fanout",
    "FANOUT_SINKS__POSTGRES__DBNAME": "fanout",
    "FANOUT_SINKS__ELASTICSEARCH__HOSTS": '["http://127.0.0.1:9200"]',
    "FANOUT_SINKS__CLICKHOUSE__MODE": "server",
    "FANOUT_SINKS__CLICKHOUSE__HOST": "127.0.0.1",
    "FANOUT_SINKS__CLICKHOUSE__PORT": "8123",
}


def apply_devstack_defaults() -> None:
    for name, value in DEVSTACK_ENV.items():
        os.environ.setdefault(name, value)


def connection_env() -> dict[str, str]:
    """The stack's connection settings for a worker (its only ``FANOUT_*`` variables)."""
    apply_devstack_defaults()
    return {name: os.environ[name] for name in DEVSTACK_ENV}


def settings() -> Settings:
    apply_devstack_defaults()
    return load_settings()


def bootstrap() -> str:
    return settings().kafka.bootstrap_servers


def new_id() -> str:
    return uuid.uuid4().hex[:8]
