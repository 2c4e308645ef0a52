"""A second, private Kafka broker for the broker-restart fault: the jars the devstack resolved
(``scripts/devstack.d/devstack/services.py``), one KRaft node on free ports, its data in a
temporary directory. Restarting it disturbs nobody else; the shared broker of the stack keeps
serving everyone's tests.
"""

from __future__ import annotations

import base64
import glob
import os
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from tests.support.pipeline import wait_for

CACHE = Path(os.environ.get("FANOUT_DEVSTACK_CACHE", "/var/cache/fanout-devstack"))
HOST = "127.0.0.1"

SERVER = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=6
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
log.retention.ms=-1
"""
LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {logs}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def kafka_libs() -> Path | None:
    found = sorted(glob.glob(str(CACHE / "kafka-[0-9]*" / "libs" / ".complete")))
    return Path(found[-1]).parent if found else None


def java() -> str | None:
    return shutil.which("java") or next(
        iter(sorted(glob.glob("/usr/lib/jvm/java-17-*/bin/java"))), None
    )


@dataclass
class PrivateKafka:
    """``start()``, ``restart()``, ``stop()``; ``bootstrap`` is ``127.0.0.1:<port>``."""

    home: Path
    libs: Path
    java: str
    port: int = field(default_factory=_free_port)
    controller: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def _argv(self, main: str, heap: str) -> list[str]:
        return [
            self.java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseSerialGC",  # a small test broker on a shared machine: one GC thread
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp",
            f"{self.libs}/*",
            main,
        ]

    def format(self) -> None:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        server = SERVER.format(
            host=HOST, port=self.port, controller=self.controller, data=self.home / "data"
        )
        (self.home / "server.properties").write_text(server)
        (self.home / "log4j2.properties").write_text(LOG4J.format(logs=self.home / "logs"))
        cluster_id = "-"
        while cluster_id.startswith("-"):  # the tool would take it for an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        config = str(self.home / "server.properties")
        subprocess.run(
            [
                *self._argv("kafka.tools.StorageTool", "128m"),
                "format",
                "-t",
                cluster_id,
                "-c",
                config,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> PrivateKafka:
        log = (self.home / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [*self._argv("kafka.Kafka", "384m"), str(self.home / "server.properties")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 120) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            try:
                return bool(admin.list_topics(timeout=2).brokers)
            except Exception:
                return False

        wait_for(answers, timeout_s, f"the private broker on {self.bootstrap}", interval_s=0.5)

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL if it does not end within 60 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self) -> str:
        path = self.home / "logs" / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
