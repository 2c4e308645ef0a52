"""Settings: a YAML file (``--config`` / ``FANOUT_CONFIG``) overlaid by ``FANOUT_`` env vars.

Env vars use ``__`` between levels: ``FANOUT_SINKS__POSTGRES__PASSWORD``. Precedence, highest
first: explicit arguments, environment, YAML file, defaults. Unknown keys are rejected so a typo
fails at start instead of being silently ignored. Secrets are ``SecretStr``: they print as
``**********`` and are only unwrapped where a driver needs them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from fanout import settings_file
from fanout.errors import ConfigError

SINK_NAMES = ("postgres", "elasticsearch", "clickhouse")
VersionSource = Literal["auto", "lsn", "binlog", "ts_ms"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _secret_files(self) -> Any:
        """A secret ``x`` may come from the file ``x_file`` names (a mounted Kubernetes Secret),
        read once at start, one trailing newline dropped; setting both is an error."""
        for name, value in list(self):
            if not name.endswith("_file") or value is None:
                continue
            secret = name.removesuffix("_file")
            field = type(self).model_fields.get(secret)
            if field is None or "SecretStr" not in str(field.annotation):
                continue  # a file setting of its own, not a secret's source
            if getattr(self, secret, None) is not None:
                raise ValueError(f"{secret} and {name} are both set; set one of them")
            setattr(self, secret, SecretStr(read_secret_file(value, name)))
        return self


def read_secret_file(path: str, key: str) -> str:
    """The secret in ``path`` (setting ``key``), without its trailing newline."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        # The reason in brackets: "<path>: No such …" reads as a secret key=value pair to the
        # log masking when the file is named like a secret (postgres-password).
        raise ValueError(f"{key}: cannot read {path} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{key}: {path} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ValueError(f"{key}: {path} is empty")
    return text


class BatchSettings(_Section):
    """A batch closes at whichever limit comes first."""

    max_events: int = Field(5000, gt=0)
    max_bytes: int = Field(8 * 1024 * 1024, gt=0)
    # The wait bounds latency at a steady low rate (a record can wait one write plus this for
    # its batch); under backlog batches fill by count or bytes first.
    max_wait_ms: int = Field(100, ge=0)


class RetrySettings(_Section):
    """Backoff for RetryableError: exponential with full jitter, capped; retries never give up
    while the sink is down (the consumer pauses instead, /readyz says why), so there is no
    attempt limit for a known transient error. An error no error table knows is retried
    ``unknown_error_attempts`` times, then treated as a configuration error."""

    initial_backoff_ms: int = Field(200, gt=0)
    max_backoff_ms: int = Field(30_000, gt=0)
    multiplier: float = Field(2.0, ge=1.0)
    unknown_error_attempts: int = Field(10, gt=0)


# What a sink does with rows of a table without a primary key (Debezium sends them without a
# message key): "skip" them (one log line per table, counted), or "append" every change as a
# new row keyed by its source position (column _fanout_position). See docs/ENVELOPES.md.
KeylessPolicy = Literal["skip", "append"]


class TableRoute(_Section):
    target: str | None = None  # index / table name in the sink; default from target_format
    keyless: KeylessPolicy | None = None  # default: the sink's routing.keyless
    drop: list[str] = Field(default_factory=list)  # columns left out of the target
    rename: dict[str, str] = Field(default_factory=dict)  # source column -> target column


class RoutingSettings(_Section):
    """Which source tables a sink takes (glob patterns on ``schema.table``) and how they map."""

    include: list[str] = Field(default_factory=list)  # empty = every table
    exclude: list[str] = Field(default_factory=list)
    target_format: str = "{table}"  # placeholders: {schema}, {table}
    tables: dict[str, TableRoute] = Field(default_factory=dict)  # keyed by schema.table
    keyless: KeylessPolicy | None = None  # None: the sink's default (KEYLESS_DEFAULT)
    # Targets that several source tables may share on purpose (their rows merged into one
    # table/index). Elsewhere two tables on one target stop the worker with a ConfigError,
    # unless each of them names the target in routing.tables.<t>.target.
    allow_merge: list[str] = Field(default_factory=list)

    @field_validator("target_format")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        unknown = set(re.findall(r"{(\w*)}", value)) - {"schema", "table"}
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; use {{schema}}, {{table}}")
        return value


class SinkSettings(_Section):
    KEYLESS_DEFAULT: ClassVar[KeylessPolicy] = "skip"  # a read model or an index needs keys

    enabled: bool = False
    batch: BatchSettings = Field(default_factory=BatchSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    # A configuration error (credentials, grants, a missing database) stops the worker: it
    # consumes nothing, fails /healthz and /readyz, and exits non-zero after this long.
    config_error_exit_s: float = Field(180.0, ge=0)

    @property
    def hung_after_s(self) -> float:
        """How long one call to the store may go unanswered before /readyz says it hangs: the
        sink's own request timeout."""
        return 60.0

    @model_validator(mode="after")
    def _keyless_default(self) -> SinkSettings:
        if self.routing.keyless is None:
            self.routing.keyless = self.KEYLESS_DEFAULT
        return self


class TombstoneSinkSettings(SinkSettings):
    """A sink that remembers deletes (tombstones) so an older replayed event cannot resurrect
    a deleted row; after the retention a replay older than that may."""

    tombstone_retention_hours: int = Field(24 * 7, gt=0)
    tombstone_purge_interval_minutes: int = Field(60, gt=0)


class PostgresSettings(TombstoneSinkSettings):
    host: str = "127.0.0.1"
    port: int = Field(5432, gt=0, lt=65536)
    user: str = "fanout"
    password: SecretStr | None = None
    password_file: str | None = None  # the password read from this file (a mounted Secret)
    dbname: str = "fanout"
    db_schema: str = Field("public", alias="schema")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    sslrootcert: str | None = None  # CA file the server's certificate is checked against
    sslcert: str | None = None  # client certificate (PEM), with sslkey
    sslkey: str | None = None
    sslpassword: SecretStr | None = None  # the client key's passphrase, if it has one
    sslpassword_file: str | None = None
    connect_timeout_s: int = Field(10, gt=0)
    # Server-side bounds on every statement and every lock wait (0: none), sent as connection
    # options; a statement over them fails TRANSIENT and is retried.
    statement_timeout_s: float = Field(60.0, ge=0)
    lock_timeout_s: float = Field(30.0, ge=0)
    application_name: str = "fanout"
    # A column whose source type became safely wider (int -> bigint, …) is widened by the sink
    # (ALTER COLUMN … TYPE; may rewrite the table). False: such events go to the DLQ.
    widen_columns: bool = True

    @property
    def hung_after_s(self) -> float:
        return max(self.statement_timeout_s, self.lock_timeout_s, self.connect_timeout_s)

    def conninfo(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` (the only place the password is unwrapped)."""
        return libpq_conninfo(self, self.statement_timeout_s, self.lock_timeout_s)


JsonMapping = Literal["stored", "flattened", "dynamic"] | dict[str, Any]


class ElasticsearchSettings(TombstoneSinkSettings):
    hosts: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:9200"])
    username: str | None = None
    password: SecretStr | None = None
    password_file: str | None = None
    api_key: SecretStr | None = None
    api_key_file: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout_s: float = Field(30.0, gt=0)  # every request the sink makes
    index_prefix: str = ""
    refresh: Literal["false", "true", "wait_for"] = "false"
    bulk_max_actions: int = Field(1000, gt=0)  # per bulk request (count bound)
    bulk_max_bytes: int = Field(10 * 1024 * 1024, gt=0)  # per bulk request (size bound)
    bulk_item_retries: int = Field(3, ge=0)  # in-sink retries of 429/5xx items, then Retryable
    index_settings: dict[str, Any] = Field(default_factory=dict)  # applied on index creation
    mappings: dict[str, Any] = Field(default_factory=dict)  # applied on index creation
    # How JSON columns are mapped (docs/sinks/elasticsearch.md): "stored" (kept in _source, not
    # indexed: no row's shape can conflict), "flattened" (leaves searchable as keywords; objects
    # only), "dynamic" (Elasticsearch's dynamic mapping) or a mapping object of your own.
    json_mapping: JsonMapping = "stored"
    json_column_mappings: dict[str, dict[str, JsonMapping]] = Field(
        default_factory=dict
    )  # target -> column -> mapping, over json_mapping

    @property
    def hung_after_s(self) -> float:
        return self.request_timeout_s

    @field_validator("index_prefix")
    @classmethod
    def _lowercase_prefix(cls, value: str) -> str:
        if value != value.lower() or re.search(r'[\\/*?"<>| ,#:]', value):
            raise ValueError('index names are lowercase, without \\ / * ? " < > | , # : or spaces')
        if value.startswith(("_", "-", "+")):
            raise ValueError("an index name must not start with _, - or +")
        return value


class ClickHouseSettings(SinkSettings):
    KEYLESS_DEFAULT: ClassVar[KeylessPolicy] = "append"  # an analytics table takes event rows

    mode: Literal["server", "embedded"] | None = None  # None: server if host is set, else embedded
    host: str | None = None
    port: int = Field(8123, gt=0, lt=65536)
    username: str = "default"
    password: SecretStr | None = None
    password_file: str | None = None
    database: str = "default"
    secure: bool = False
    ca_cert: str | None = None
    data_dir: str = ".devstack/chdb-embedded"
    connect_timeout_s: float = Field(10.0, gt=0)
    send_receive_timeout_s: float = Field(120.0, gt=0)  # every request, server mode
    low_cardinality: dict[str, list[str]] = Field(default_factory=dict)  # target table -> columns
    verify_certs: bool = True
    # Inserts remembered per table for insert_deduplication_token (non-replicated MergeTree).
    deduplication_window: int = Field(1000, ge=0)
    # A column whose source type became safely wider (Int32 -> Int64, …) is widened by the sink
    # (MODIFY COLUMN, then the _current view is re-created). False: the type stays as it is.
    widen_columns: bool = True

    @property
    def hung_after_s(self) -> float:
        return self.send_receive_timeout_s

    @property
    def effective_mode(self) -> Literal["server", "embedded"]:
        if self.mode is not None:
            return self.mode
        return "server" if self.host else "embedded"


class SourceSettings(_Section):
    """The source PostgreSQL the connector captures, for ``fanout verify`` and ``fanout repair``
    (read-only, except the Debezium signal rows ``repair`` inserts into ``signal_table``)."""

    host: str = "127.0.0.1"
    port: int = Field(5432, gt=0, lt=65536)
    user: str = "postgres"
    password: SecretStr | None = None
    password_file: str | None = None  # the password read from this file (a mounted Secret)
    dbname: str = "postgres"
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    sslrootcert: str | None = None  # CA file the server's certificate is checked against
    connect_timeout_s: int = Field(10, gt=0)
    statement_timeout_s: float = Field(300.0, ge=0)  # one page of a verify; 0: none
    application_name: str = "fanout-verify"
    # The connector's signal.data.collection ("schema.table"): where repair asks Debezium for
    # an incremental snapshot of the keys that differ. None: repair refuses to run.
    signal_table: str | None = None

    @field_validator("signal_table")
    @classmethod
    def _qualified(cls, value: str | None) -> str | None:
        if value is not None and len(value.split(".")) != 2:
            raise ValueError("write it as schema.table, as in signal.data.collection")
        return value

    def conninfo(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` (the only place the password is unwrapped)."""
        return libpq_conninfo(self, self.statement_timeout_s)


def libpq_conninfo(
    settings: PostgresSettings | SourceSettings,
    statement_timeout_s: float,
    lock_timeout_s: float = 0,
) -> dict[str, Any]:
    """``psycopg.connect`` keyword arguments of a PostgreSQL connection section (the sink's
    and the verified source's)."""
    info: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "user": settings.user,
        "dbname": settings.dbname,
        "sslmode": settings.sslmode,
        "connect_timeout": settings.connect_timeout_s,
        "application_name": settings.application_name,
        # A peer gone without a word (a dropped network) is noticed in about a minute.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    # Sent only when set: a pooler that refuses startup options (PgBouncer without
    # ignore_startup_parameters=options) works with both at 0.
    options = [
        f"-c {name}={round(seconds * 1000)}"
        for name, seconds in (
            ("statement_timeout", statement_timeout_s),
            ("lock_timeout", lock_timeout_s),
        )
        if seconds
    ]
    if options:
        info["options"] = " ".join(options)
    if settings.password is not None:
        info["password"] = settings.password.get_secret_value()
    for name in ("sslrootcert", "sslcert", "sslkey"):
        if getattr(settings, name, None):
            info[name] = getattr(settings, name)
    sslpassword = getattr(settings, "sslpassword", None)
    if sslpassword is not None:
        info["sslpassword"] = sslpassword.get_secret_value()
    return info


class SinksSettings(_Section):
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    elasticsearch: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)

    def get(self, name: str) -> SinkSettings:
        if name not in SINK_NAMES:
            raise ConfigError(f"--sink: unknown sink {name!r}; known: {', '.join(SINK_NAMES)}")
        sink: SinkSettings = getattr(self, name)
        return sink

    def enabled(self) -> list[str]:
        return [name for name in SINK_NAMES if self.get(name).enabled]


class SchemaRegistrySettings(_Section):
    """A Confluent-compatible schema registry (``kafka.value_format: avro``)."""

    url: str | None = None  # e.g. http://registry:8081, or Apicurio's .../apis/ccompat/v7
    basic_auth_user: str | None = None
    basic_auth_password: SecretStr | None = None
    basic_auth_password_file: str | None = None  # the password read from this file (a Secret)
    ssl_ca_location: str | None = None  # CA (PEM) the registry's certificate is checked against
    timeout_s: float = Field(10.0, gt=0)  # one HTTP request
    # How long an unreachable registry (refused, timeout, 5xx) is retried before the worker
    # stops with a ConfigError; a record is never dead-lettered because the registry is down.
    unavailable_after_s: float = Field(60.0, ge=0)


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    topics: list[str] = Field(default_factory=list)
    topic_pattern: str | None = None  # a regex; librdkafka subscribes to "^" + pattern
    group_prefix: str = "fanout"
    dlq_prefix: str = "fanout.dlq"
    # DLQ topics are created with these (cleanup.policy=delete): how long entries are kept
    # (-1: forever), and the largest record; an entry larger than that is stored truncated
    # (fanout.truncated header) and the producer sends nothing larger (message.max.bytes).
    dlq_retention_ms: int = Field(30 * 24 * 3600 * 1000, ge=-1)
    dlq_max_message_bytes: int = Field(1_000_000, ge=64 * 1024, le=100 * 1024 * 1024)
    dlq_partitions: int = Field(1, gt=0)
    dlq_replication_factor: int | None = Field(None, gt=0)  # None: the brokers' default
    # Topic globs whose rows are ExtractNewRecordState output (flattened) although they carry
    # none of its __ fields or headers; elsewhere such a row is not taken (DLQ, stage decode).
    flattened_topics: list[str] = Field(default_factory=list)
    client_id: str = "fanout"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: str | None = None  # the password read from this file (a mounted Secret)
    # OAUTHBEARER through OIDC client credentials: librdkafka fetches and refreshes the token.
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_client_secret_file: str | None = None
    oauth_token_endpoint_url: str | None = None
    oauth_scope: str | None = None
    ssl_ca_location: str | None = None  # CA (PEM) the brokers' certificates are checked against
    ssl_certificate_location: str | None = None  # client certificate (PEM), mutual TLS
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    ssl_key_password_file: str | None = None
    # How long the broker keeps a member that stopped heartbeating (SIGKILL, OOM, a lost node)
    # and its partitions: a restarted worker gets none before. Kafka's 45 s meant ~45 s of
    # nothing after every crash; at 10 s the dead member is gone about when its successor has
    # started (bench/rejoin.py; docs/OPERATIONS.md, "Start-up, restart and rejoin").
    # librdkafka heartbeats from its own thread, so slow batches never miss one.
    session_timeout_ms: int = Field(10_000, gt=0)
    max_poll_interval_ms: int = Field(300_000, gt=0)
    # Static group membership (librdkafka group.instance.id): a restarted member with the same
    # id takes its partitions back without a rebalance. Unique per process; the Helm chart
    # sets it to the pod name where pods have stable names (StatefulSets).
    group_instance_id: str | None = None
    # What librdkafka pre-fetches ahead of the batch being written, per consumer: its 64 MiB
    # default queue was the largest buffer of a draining worker (queued.max.messages.kbytes,
    # fetch.max.bytes; bench: 8 MiB saves ~70 MiB of peak RSS at the same drain rate).
    prefetch_max_kbytes: int = Field(8192, gt=0)
    fetch_max_bytes: int = Field(8 * 1024 * 1024, ge=1_000_000)  # >= librdkafka's message.max.bytes
    extra: dict[str, str | int | bool] = Field(default_factory=dict)  # raw librdkafka settings
    version_source: dict[str, VersionSource] = Field(default_factory=dict)  # topic glob -> source
    # Null-value messages: "auto" = skipped on topics whose deletes travel as records (full
    # envelopes, flattened with __deleted), deletes on other flattened topics, DLQ before any
    # row of the topic was seen; "delete"/"skip" force it. See docs/ENVELOPES.md.
    tombstones: Literal["auto", "delete", "skip"] = "auto"
    # topic glob -> the connector's unavailable.value.placeholder (unchanged TOASTed values);
    # topics no glob matches use Debezium's default, __debezium_unavailable_value.
    unavailable_value_placeholders: dict[str, str] = Field(default_factory=dict)
    # How message values (and keys, unless key_format says otherwise) are encoded: JsonConverter
    # JSON, or Avro in the Confluent wire format (magic byte, schema id) read through
    # schema_registry. See docs/ENVELOPES.md, "Avro".
    value_format: Literal["json", "avro"] = "json"
    key_format: Literal["json", "avro"] | None = None  # None: as value_format
    schema_registry: SchemaRegistrySettings = Field(default_factory=SchemaRegistrySettings)

    @model_validator(mode="after")
    def _registry_for_avro(self) -> KafkaSettings:
        avro = "avro" in (self.value_format, self.key_format)
        if avro and not self.schema_registry.url:
            raise ValueError(
                "kafka.schema_registry.url is required when kafka.value_format (or key_format)"
                " is avro"
            )
        registry = self.schema_registry
        # A look-up blocks the poll loop: it must end before the group and liveness give up
        # (``/healthz`` calls a loop stalled after max_poll_interval_ms too, ``runtime.app``).
        if (
            avro
            and registry.unavailable_after_s + registry.timeout_s
            >= self.max_poll_interval_ms / 1000
        ):
            raise ValueError(
                "kafka.schema_registry.unavailable_after_s + timeout_s must stay below"
                " kafka.max_poll_interval_ms (the consumer would leave its group, and /healthz"
                " call the worker stalled, while waiting)"
            )
        return self

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaSettings:
        """SASL settings that cannot work together fail at start, naming what is missing."""
        if {"sasl.mechanism", "sasl.mechanisms", "sasl.password"} & set(self.extra):
            return self  # raw librdkafka settings (kafka.extra) take over
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(
                f"sasl_mechanism is set but security_protocol is {self.security_protocol}; "
                "use SASL_SSL (or SASL_PLAINTEXT)"
            )
        # No password is no error here: a config is checked (check-config, the chart's tests)
        # where the Secret is absent; a missing one fails the login with one clear line.
        userpass = self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
        if userpass and not self.sasl_username:
            raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_username")
        return self

    @field_validator("topic_pattern")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings shared by consumers, producers and admin clients."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "sasl.oauthbearer.client.id": self.oauth_client_id,
            "sasl.oauthbearer.client.secret": self.oauth_client_secret,
            "sasl.oauthbearer.token.endpoint.url": self.oauth_token_endpoint_url,
            "sasl.oauthbearer.scope": self.oauth_scope,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password,
        }
        if self.sasl_mechanism == "OAUTHBEARER" and self.oauth_token_endpoint_url:
            conf["sasl.oauthbearer.method"] = "oidc"
        for key, value in optional.items():
            if isinstance(value, SecretStr):
                conf[key] = value.get_secret_value()
            elif value is not None:
                conf[key] = value
        conf.update(self.extra)
        return conf

    def subscription(self) -> list[str]:
        if self.topic_pattern:
            pattern = self.topic_pattern
            return [pattern if pattern.startswith("^") else "^" + pattern]
        return list(self.topics)


class MetricsSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, lt=65536)  # 0 picks a free port (tests)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FANOUT_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )
    yaml_path: ClassVar[Path | None] = None

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    sinks: SinksSettings = Field(default_factory=SinksSettings)
    source: SourceSettings | None = None  # for verify / repair only; `run` never reads it
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.yaml_path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=cls.yaml_path))
        return tuple(sources)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load settings from ``path`` (or ``$FANOUT_CONFIG``) and the environment.

    Raises ConfigError with one line per problem naming where it is (file and line, or the env
    var), the key path and what is wrong: ``fanout.yaml:12: sinks.postgres.port: …``.
    """
    yaml_path = Path(path) if path else _env_config_path()
    file = None
    if yaml_path is not None:
        file = settings_file.read(yaml_path, "--config" if path else "FANOUT_CONFIG")
    loader = type("_Settings", (Settings,), {"yaml_path": yaml_path})
    try:
        settings: Settings = loader(**overrides)
    except ValidationError as exc:
        raise ConfigError(settings_file.describe(exc, file, Settings)) from None
    except SettingsError as exc:  # an env var that is not the JSON its key takes
        raise ConfigError(settings_file.describe_env_parsing(Settings, exc)) from None
    return settings


def require_subscription(settings: Settings) -> None:
    if not settings.kafka.topics and not settings.kafka.topic_pattern:
        raise ConfigError("kafka.topics: set kafka.topics or kafka.topic_pattern")


def _env_config_path() -> Path | None:
    value = os.environ.get("FANOUT_CONFIG")
    return Path(value) if value else None
