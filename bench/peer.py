"""The peer: Kafka Connect (standalone) with the Debezium JDBC sink connector into PostgreSQL.

Kafka Connect 4.1.1 runtime + ``io.debezium:debezium-connector-jdbc`` 3.5.0.Final (3.6.1.Final
is refused by Maven Central from this machine) + the PostgreSQL JDBC driver, resolved from
``bench/connect/pom.xml`` into ``.devstack/bench/connect-libs`` on first use. Java 17, heap
512 MiB, JsonConverter with schemas for key and value, upsert + deletes, its own consumer group
(``connect-<name>``) and its own tables (``kc_<run>_<table>`` in ``public``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from bench import env
from bench.probes import Drain, LagWatcher, TreeSampler
from bench.stream import Stream

REPO = Path(__file__).resolve().parents[1]
LIBS = REPO / ".devstack" / "bench" / "connect-libs"
WORKDIR = REPO / "bench" / "results" / "tmp"
JAVA_HOME = Path(os.environ.get("BENCH_JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64"))
DEBEZIUM_JDBC = "3.5.0.Final"
CONNECT = "4.1.1"
BATCH_SIZE = 5000
DRAIN_TIMEOUT_S = 600
STALL_S = 150  # no commit at all by then: the worker is stuck, give up


def ensure_libs() -> Path:
    if not any(LIBS.glob("debezium-connector-jdbc-*.jar")):
        LIBS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mvn", "-q", "dependency:copy-dependencies", f"-DoutputDirectory={LIBS}"],
            cwd=REPO / "bench" / "connect",
            check=True,
        )
    return LIBS


def _worker_properties(directory: Path) -> str:
    return "\n".join(
        [
            f"bootstrap.servers={env.bootstrap()}",
            "key.converter=org.apache.kafka.connect.json.JsonConverter",
            "value.converter=org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable=true",
            "value.converter.schemas.enable=true",
            f"offset.storage.file.filename={directory / 'offsets'}",
            "offset.flush.interval.ms=1000",  # sink offsets are committed at this interval
            "listeners=http://127.0.0.1:0",
            "plugin.discovery=only_scan",
            "consumer.max.poll.records=5000",
            "consumer.auto.offset.reset=earliest",
        ]
    )


def _sink_properties(name: str, topic: str, run: str) -> str:
    pg = env.settings().sinks.postgres
    password = pg.password.get_secret_value() if pg.password else ""
    return "\n".join(
        [
            f"name={name}",
            "connector.class=io.debezium.connector.jdbc.JdbcSinkConnector",
            "tasks.max=1",
            f"topics={topic}",
            f"connection.url=jdbc:postgresql://{pg.host}:{pg.port}/{pg.dbname}",
            f"connection.username={pg.user}",
            f"connection.password={password}",
            "insert.mode=upsert",
            "delete.enabled=true",
            "primary.key.mode=record_key",
            "schema.evolution=basic",
            f"batch.size={BATCH_SIZE}",
            f"collection.name.format=kc_{run}_${{source.table}}",
        ]
    )


def _start_at_beginning(group: str, stream: Stream) -> None:
    """Commit offset 0 for the connector's group, so it reads the whole topic whatever the
    worker's reset policy (and fails loudly if the log start ever moved)."""
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(stream.topic, p, 0) for p in stream.ends]
    )
    admin = AdminClient({"bootstrap.servers": env.bootstrap()})
    admin.alter_consumer_group_offsets([request])[group].result(timeout=30)


def drain(stream: Stream) -> tuple[Drain, str]:
    """Run the connector until its group is at lag 0; returns the drain and the table prefix."""
    libs = ensure_libs()
    run = env.new_id()
    name = f"bench-kc-{run}"
    directory = WORKDIR / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "worker.properties").write_text(_worker_properties(directory))
    (directory / "sink.properties").write_text(_sink_properties(name, stream.topic, run))
    log = (directory / "connect.log").open("wb")
    _start_at_beginning(f"connect-{name}", stream)
    watcher = LagWatcher(env.bootstrap(), stream.topic, stream.ends)
    started = time.monotonic()
    process = subprocess.Popen(
        [
            str(JAVA_HOME / "bin" / "java"),
            "-Xms512m",
            "-Xmx512m",
            f"-Dlog4j2.configurationFile={REPO / 'bench' / 'connect' / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone",
            str(directory / "worker.properties"),
            str(directory / "sink.properties"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    sampler = TreeSampler(process.pid).start()
    try:
        first, seconds = watcher.wait_drained(
            f"connect-{name}", started, lambda: process.poll() is None, DRAIN_TIMEOUT_S, STALL_S
        )
        rss, cpu = sampler.stop()
    except Exception:
        print((directory / "connect.log").read_text()[-4000:])
        raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    shutil.rmtree(directory / "offsets", ignore_errors=True)
    return Drain(seconds, first, rss, cpu, watcher.errors), f"kc_{run}_"


def converged(stream: Stream, prefix: str) -> bool:
    """Whether each ``kc_<run>_<table>`` holds as many rows as the final state has."""
    import psycopg
    from psycopg import sql

    from bench.stream import spec_of

    with psycopg.connect(**env.settings().sinks.postgres.conninfo()) as conn:
        for table, rows in stream.final.items():
            name = prefix + spec_of(table).table
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", name))
            ).fetchone()
            if count is None or count[0] != len(rows):
                print(f"  {name}: {count} rows, expected {len(rows)}")
                return False
    return True
