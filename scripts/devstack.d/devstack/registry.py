"""A schema registry for Avro: the Apicurio Registry, serving the Confluent-compatible API at
/apis/ccompat/v7 (what fanout's kafka.schema_registry.url reads) and its own v2 API (what the
Apicurio converter on Kafka Connect's plugin path writes through)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from . import probes
from .context import HOST, Context, java_home, unpack_tar
from .procs import Launch
from .services import HERE, Service, maven_copy_dependencies

REGISTRY_VERSION = os.environ.get("FANOUT_DEVSTACK_REGISTRY_VERSION", "3.3.3")
# The Quarkus fast-jar distribution Apicurio attaches to its app artifact (classifier "all").
REGISTRY_APP = "io.apicurio:apicurio-registry-app"
# The converter Debezium writes Avro with: 3.x's serde modules are not on Maven Central as served
# here, 2.6.13.Final's are; it registers through the v2 API, which the 3.x registry still serves.
CONVERTER_VERSION = os.environ.get("FANOUT_DEVSTACK_APICURIO_CONVERTER_VERSION", "2.6.13.Final")
CONVERTER_CLASS = "io.apicurio.registry.utils.converter.AvroConverter"
CONVERTER_API = "org.apache.kafka.connect.storage.Converter"
MANAGEMENT_PORT = 8082  # Quarkus' management interface (health, metrics), kept off 0.0.0.0:9000
CCOMPAT_PATH = "/apis/ccompat/v7"


class Registry(Service):
    """Apicurio Registry with its default in-memory storage (H2): schemas live as long as the
    process. Quarkus 3 compiled for Java 21, so it runs on the newest JDK in /usr/lib/jvm."""

    name = "registry"
    port = 8081
    extra_ports = (MANAGEMENT_PORT,)
    start_timeout = 180.0  # ~35 s on an idle 2-core machine, more while others build

    @property
    def home(self) -> Path:
        return self.ctx.cache / f"apicurio-registry-{REGISTRY_VERSION}"

    def install(self) -> None:
        if (self.home / ".complete").exists():
            return
        from .cdc import maven_get  # cdc imports this module (the converter for Connect)

        archive = maven_get(self.ctx, REGISTRY_APP, REGISTRY_VERSION, "tar.gz", "all")
        self.ctx.log(f"unpacking {archive.name} into {self.home}")
        unpack_tar(archive, self.home)

    def launch(self) -> Launch:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        argv = [
            str(java_home(21) / "bin/java"),
            "-Xms64m",
            "-Xmx384m",
            "-XX:+UseSerialGC",  # one small heap, two shared cores
            f"-Dquarkus.http.host={HOST}",
            f"-Dquarkus.http.port={self.port}",
            f"-Dquarkus.management.host={HOST}",
            f"-Dquarkus.management.port={MANAGEMENT_PORT}",
            "-Dquarkus.http.access-log.enabled=false",
            f"-Djava.io.tmpdir={self.dir}",
            "-jar",
            str(self.home / "quarkus-run.jar"),
        ]
        return Launch(argv, self.dir, self.log)

    def probe(self) -> str:
        base = f"http://{HOST}:{self.port}"
        info = probes.http_json(f"{base}/apis/registry/v3/system/info")
        status, body = probes.http(f"{base}{CCOMPAT_PATH}/subjects")
        if status != 200:
            raise probes.NotReady(f"registry: {CCOMPAT_PATH}/subjects -> {status} {body[:200]!r}")
        return f"Apicurio Registry {info.get('version')}, Confluent API at {CCOMPAT_PATH}"


def converter_plugins(ctx: Context) -> Path:
    """The plugin.path entry holding the Apicurio converter (its folder is one plugin)."""
    return ctx.cache / f"apicurio-converter-{CONVERTER_VERSION}"


def install_converter(ctx: Context) -> None:
    """The Apicurio Avro converter as a Kafka Connect plugin, unless already there.

    The worker discovers plugins by their ServiceLoader manifests (plugin.discovery=
    service_load) and the converter's jars ship none, so one small jar adds it, as Kafka's
    `connect-plugin-path sync-manifests` would."""
    root = converter_plugins(ctx)
    if (root / ".complete").exists():
        return
    ctx.log(f"resolving the Apicurio converter {CONVERTER_VERSION} with maven")
    plugin = root / "apicurio-converter"
    pom = HERE / "registry" / "converter-pom.xml"
    maven_copy_dependencies(ctx, pom, {"apicurio.converter.version": CONVERTER_VERSION}, plugin)
    with zipfile.ZipFile(plugin / "fanout-devstack-converter-manifest.jar", "w") as jar:
        jar.writestr(f"META-INF/services/{CONVERTER_API}", CONVERTER_CLASS + "\n")
    (root / ".complete").touch()
