"""One line for a connection that failed: what, where (and the setting that says so), why, and
how to check, instead of a driver's exception text or a client library's log flood.

``cannot reach Kafka at 127.0.0.1:9999 (kafka.bootstrap_servers): connection refused — is the
broker running and listening there? check with: kafka-broker-api-versions.sh --bootstrap-server
127.0.0.1:9999``
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from fanout.redact import mask_text
from fanout.settings import (
    ClickHouseSettings,
    ElasticsearchSettings,
    KafkaSettings,
    PostgresSettings,
    SinkSettings,
)


@dataclass(frozen=True)
class Reason:
    text: str  # what went wrong, in a few words
    kind: str  # network | auth | tls | missing | other


# First match wins; searched in the lower-cased driver text.
_REASONS: tuple[tuple[tuple[str, ...], Reason], ...] = (
    (("connection refused",), Reason("connection refused", "network")),
    (
        (
            "name or service not known",
            "failed to resolve",
            "nodename nor servname",
            "temporary failure in name resolution",
            "could not translate host name",
            "no address associated",
        ),
        Reason("the host name does not resolve", "network"),
    ),
    (("network is unreachable",), Reason("network is unreachable", "network")),
    (("no route to host",), Reason("no route to host", "network")),
    (
        ("certificate verify failed", "ssl handshake", "wrong version number"),
        Reason("TLS handshake failed", "tls"),
    ),
    (
        (
            "password authentication failed",
            "authentication failed",
            "authentication error",
            "authenticationexception",
            "security_exception",
            "unauthorized",
        ),
        Reason("authentication failed", "auth"),
    ),
    (
        ("disconnected while requesting apiversion", "in state apiversion_query"),
        Reason("the broker closed the connection in the handshake (TLS or SASL expected?)", "tls"),
    ),
    (("connection reset", "disconnected"), Reason("the server closed the connection", "network")),
    (("timed out", "timeout"), Reason("no answer (timed out)", "network")),
    (
        ("broker transport failure",),
        Reason("the connection failed (is that port a Kafka listener?)", "network"),
    ),
)
RESOLVE = _REASONS[1][1]


def reason_of(texts: Sequence[str]) -> Reason:
    """The first known reason in ``texts`` (newest last), else the last text's first line."""
    for text in reversed(texts):
        lowered = text.lower()
        for needles, reason in _REASONS:
            if any(needle in lowered for needle in needles):
                return reason
    # The innermost text is the driver's own; wrappers only add prefixes.
    own = next((t for t in texts if t.strip()), "no answer")
    line = _first_line(own).rsplit("FATAL:", 1)[-1].strip()
    return Reason(mask_text(line)[:300], "missing" if "does not exist" in line else "other")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def kafka_unreachable(kafka: KafkaSettings, said: Sequence[str], waited_s: float) -> str:
    """The line for brokers that did not answer within ``waited_s``; ``said`` is what librdkafka
    logged or raised meanwhile."""
    where = kafka.bootstrap_servers
    reason = reason_of(said) if said else Reason(f"no answer within {waited_s:g} s", "network")
    if reason.kind == "auth":
        return (
            f"Kafka at {where} (kafka.bootstrap_servers) refused fanout: {reason.text} — check "
            "kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username and "
            "kafka.sasl_password or kafka.sasl_password_file (FANOUT_KAFKA__SASL_PASSWORD[_FILE])"
        )
    if reason.kind == "tls":
        return (
            f"cannot reach Kafka at {where} (kafka.bootstrap_servers): {reason.text} — check "
            "kafka.security_protocol and kafka.ssl_ca_location (or kafka.extra ssl.*)"
        )
    first = where.split(",")[0].strip()
    if reason == RESOLVE:
        hint = f"is the host name right? check with: getent hosts {first.rsplit(':', 1)[0]}"
    else:
        hint = (
            "is the broker running and listening there? check with: "
            f"kafka-broker-api-versions.sh --bootstrap-server {first}"
        )
    return f"cannot reach Kafka at {where} (kafka.bootstrap_servers): {reason.text} — {hint}"


def sink_unreachable(sink: str, settings: SinkSettings, error: BaseException | str) -> str:
    """The line for a sink whose ``open()`` failed with ``error`` (the driver's text is reduced
    to its reason; a reason not recognised is kept, first line only)."""
    texts = _chain(error)
    reason = reason_of(texts)
    what, where, keys, check, auth, host = _endpoint(sink, settings)
    verb = "reach" if reason.kind in ("network", "tls") else "open"
    if reason == RESOLVE:
        hint = f"is the host name right? check with: getent hosts {host}"
    elif reason.kind == "network":
        hint = f"is it running and listening there? check with: {check}"
    elif reason.kind == "auth":
        hint = f"check {auth}"
    elif reason.kind == "tls":
        hint = f"check the TLS settings of sinks.{sink} (certificates, verify_certs)"
    elif reason.kind == "missing":
        hint = f"check sinks.{sink} (the database or schema it names must exist)"
    else:
        hint = f"check with: {check}"
    return f"cannot {verb} {what} at {where} ({keys}): {reason.text} — {hint}"


def _chain(error: BaseException | str) -> list[str]:
    """The texts of ``error`` and the exceptions behind it, outermost last."""
    if isinstance(error, str):
        return [error]
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.insert(0, str(current))
        current = current.__cause__ or current.__context__
    return texts


def _endpoint(sink: str, settings: SinkSettings) -> tuple[str, str, str, str, str, str]:
    """(what, where, the settings naming where, a command to check, the credential settings,
    the host name)."""
    if isinstance(settings, PostgresSettings):
        where = f"{settings.host}:{settings.port}/{settings.dbname}"
        return (
            "PostgreSQL",
            where,
            "sinks.postgres.host, .port, .dbname",
            f"pg_isready -h {settings.host} -p {settings.port} -d {settings.dbname}",
            "sinks.postgres.user and the password (FANOUT_SINKS__POSTGRES__PASSWORD)",
            settings.host,
        )
    if isinstance(settings, ElasticsearchSettings):
        hosts = ", ".join(mask_text(h) for h in settings.hosts)
        first = re.sub(r"//[^/@]*@", "//", settings.hosts[0]) if settings.hosts else ""
        return (
            "Elasticsearch",
            hosts,
            "sinks.elasticsearch.hosts",
            f"curl -s {first.rstrip('/')}/_cluster/health",
            "sinks.elasticsearch.username/password or api_key (FANOUT_SINKS__ELASTICSEARCH__*)",
            urlsplit(first).hostname or first,
        )
    if isinstance(settings, ClickHouseSettings):
        if settings.effective_mode == "embedded":
            return (
                "ClickHouse (embedded chDB)",
                settings.data_dir,
                "sinks.clickhouse.data_dir",
                f"ls -ld {settings.data_dir} (one process at a time may open it)",
                "sinks.clickhouse.data_dir",
                "",
            )
        scheme = "https" if settings.secure else "http"
        url = f"{scheme}://{settings.host}:{settings.port}"
        return (
            "ClickHouse",
            url,
            "sinks.clickhouse.host, .port",
            f"curl -s {url}/ping",
            "sinks.clickhouse.username and the password (FANOUT_SINKS__CLICKHOUSE__PASSWORD)",
            settings.host or "",
        )
    return (sink, "?", f"sinks.{sink}", "its logs", f"sinks.{sink}", "")
