"""The real Debezium source: a PostgreSQL cluster with logical decoding, and Kafka Connect with
the Debezium PostgreSQL connector on its plugin path (connectors are created over REST)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import probes, procs
from .context import HOST, Context, java_home, need_tool, run, unpack_tar
from .procs import Launch
from .registry import CONVERTER_CLASS, converter_plugins, install_converter
from .services import (
    HERE,
    KAFKA_VERSION,
    M2_REPO,
    MVN_FLAGS,
    Postgres,
    Service,
    maven_copy_dependencies,
)

DEBEZIUM_VERSION = os.environ.get("FANOUT_DEVSTACK_DEBEZIUM_VERSION", "3.6.1.Final")
POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
DEBEZIUM_PLUGIN = "io.debezium:debezium-connector-postgres"
SOURCE_USER = SOURCE_PASSWORD = "debezium"
SOURCE_DB = "source"


class SourcePostgres(Postgres):
    """A second cluster, apart from the sink's: `wal_level=logical` and replication slots are
    the source's business, and tests may do anything to it without touching the sink's data.
    The role may replicate (slots), and owns the database, so it may create publications
    and the tables it publishes."""

    name = "source-pg"
    port = 5433
    user, password, dbname = SOURCE_USER, SOURCE_PASSWORD, SOURCE_DB
    role_options = "LOGIN REPLICATION"
    conf_templates = ("devstack.conf", "source.conf")
    tls_user = None  # the sink's cluster is the one with TLS

    def probe(self) -> str:
        version = super().probe()
        wal_level = self.psql("SHOW wal_level")
        if wal_level != "logical":  # e.g. a cluster started by hand without source.conf
            raise probes.NotReady(f"source-pg: wal_level is {wal_level}, not logical")
        return version


class Connect(Service):
    """Kafka Connect in standalone mode: one JVM, no internal topics or group rebalances, and
    still the full REST API to create and delete connectors at runtime. Connectors created over
    REST are not kept across a restart (standalone persists offsets only)."""

    name = "connect"
    port = 8083
    start_timeout = 120.0
    needs = ("kafka",)

    @property
    def libs(self) -> Path:
        return self.ctx.cache / f"kafka-connect-{KAFKA_VERSION}" / "libs"

    @property
    def plugins(self) -> Path:
        """plugin.path: one sub-folder per plugin, each with its own class loader."""
        return self.ctx.cache / f"debezium-postgres-{DEBEZIUM_VERSION}"

    @property
    def main_log(self) -> Path:
        return self.dir / "logs" / "worker.log"  # log4j2; stdout stays nearly empty

    def install(self) -> None:
        need_tool(self.ctx, "java", "openjdk-17-jre-headless")
        if not (self.libs / ".complete").exists():
            self.ctx.log(f"resolving Kafka Connect {KAFKA_VERSION} jars with maven")
            maven_copy_dependencies(
                self.ctx,
                HERE / "connect" / "runtime-pom.xml",
                {"kafka.version": KAFKA_VERSION},
                self.libs,
            )
        if not (self.plugins / ".complete").exists():
            self._install_plugin()
        install_converter(self.ctx)  # Avro through the registry component

    def _install_plugin(self) -> None:
        """Debezium's own plugin archive (the `plugin` tar.gz on Maven Central), unpacked as its
        install guide says: the very jars users put on their plugin path."""
        archive = maven_get(self.ctx, DEBEZIUM_PLUGIN, DEBEZIUM_VERSION, "tar.gz", "plugin")
        self.ctx.log(f"unpacking {archive.name} into {self.plugins}")
        unpack_tar(archive, self.plugins)

    def _write_config(self) -> Path:
        conf = self.dir / "config"
        conf.mkdir(parents=True, exist_ok=True)
        for sub in ("data", "logs"):
            (self.dir / sub).mkdir(exist_ok=True)
        values = {
            "HOST": HOST,
            "PORT": str(self.port),
            "PLUGINS": str(self.plugins),
            "CONVERTERS": str(converter_plugins(self.ctx)),
            "DATA": str(self.dir / "data"),
            "LOGS": str(self.dir / "logs"),
        }
        for name in ("worker.properties", "log4j2.properties"):
            text = (HERE / "connect" / name).read_text()
            for key, value in values.items():
                text = text.replace(f"@{key}@", value)
            (conf / name).write_text(text)
        return conf

    def launch(self) -> Launch:
        conf = self._write_config()
        argv = [
            str(java_home(17, newest=False) / "bin/java"),
            "-Xms128m",  # grows to the cap only when a big snapshot needs it
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={conf / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone",
            str(conf / "worker.properties"),
        ]
        return Launch(argv, self.dir, self.log)

    def outdated(self) -> str | None:
        leader = procs.read_pidfile(self.pidfile)
        if leader is None or not procs.is_ours(leader, self.dir):
            return None
        try:
            status, body = probes.http(
                f"http://{HOST}:{self.port}/connector-plugins?connectorsOnly=false"
            )
        except probes.NotReady:
            return None  # not answering: `up` waits for it as for any starting service
        if status == 200 and CONVERTER_CLASS.encode() not in body:
            # A worker started before the converter joined plugin.path: a restart reads it.
            return f"{CONVERTER_CLASS} is not on its plugin path yet"
        return None

    def probe(self) -> str:
        base = f"http://{HOST}:{self.port}"
        # /health answers 200 only once the worker has finished starting (KIP-1017).
        status, body = probes.http(f"{base}/health")
        if status != 200:
            raise probes.NotReady(f"connect: /health -> {status} {body[:200]!r}")
        status, body = probes.http(f"{base}/connector-plugins?connectorsOnly=true")
        if status != 200:
            raise probes.NotReady(f"connect: /connector-plugins -> {status} {body[:200]!r}")
        found = [p for p in json.loads(body) if p.get("class") == POSTGRES_CONNECTOR]
        if not found:
            raise probes.NotReady(f"connect: {POSTGRES_CONNECTOR} is not on the plugin path")
        worker = probes.http_json(f"{base}/")
        return f"Connect {worker.get('version')}, Debezium PostgreSQL {found[0].get('version')}"


def maven_get(ctx: Context, coords: str, version: str, ext: str, classifier: str) -> Path:
    """One artifact from Maven Central into the local repository (kept there as a cache, as
    the Elasticsearch zip is); its path."""
    group, artifact = coords.split(":")
    folder = M2_REPO / group.replace(".", "/") / artifact / version
    path = folder / f"{artifact}-{version}-{classifier}.{ext}"
    if not path.exists():
        mvn = need_tool(ctx, "mvn", "maven")
        ctx.log(f"downloading {coords}:{version}:{ext}:{classifier} with maven")
        run(
            [
                mvn,
                *MVN_FLAGS,
                "dependency:get",
                f"-Dartifact={coords}:{version}:{ext}:{classifier}",
                "-Dtransitive=false",
            ],
            f"maven ({artifact} {classifier})",
        )
    return path


CDC_SERVICES: list[type[Service]] = [SourcePostgres, Connect]
