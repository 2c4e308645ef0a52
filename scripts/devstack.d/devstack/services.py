"""The four local services: how each is installed, configured, started and probed."""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path

from . import probes, procs, tls
from .context import (
    HOST,
    Context,
    DevstackError,
    apt_install,
    ensure_service_user,
    give_to_service_user,
    java_home,
    need_tool,
    remove_stale_tmp,
    run,
)
from .procs import Launch

HERE = Path(__file__).resolve().parent.parent  # scripts/devstack.d
KAFKA_VERSION = os.environ.get("FANOUT_DEVSTACK_KAFKA_VERSION", "4.1.1")
ES_VERSION = os.environ.get("FANOUT_DEVSTACK_ES_VERSION", "9.2.8")
ES_ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch"
PG_USER = PG_PASSWORD = PG_DB = "fanout"
M2_REPO = Path(os.environ.get("FANOUT_DEVSTACK_M2", Path.home() / ".m2" / "repository"))
MVN_FLAGS = ["-q", "-B", f"-Dmaven.repo.local={M2_REPO}"]
_pg_install_lock = threading.Lock()


class Service:
    name = ""
    port = 0
    extra_ports: tuple[int, ...] = ()
    start_timeout = 90.0
    stop_signal = signal.SIGTERM
    stop_timeout = 30.0
    needs: tuple[str, ...] = ()  # services that must answer before this one starts

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.dir = ctx.service_dir(self.name)
        self.pidfile = self.dir / "pid"
        self.log = self.dir / "logs" / f"{self.name}.log"  # the process's stdout and stderr

    @property
    def main_log(self) -> Path:
        """The log to show first: where the service writes its own messages."""
        return self.log

    def not_installable(self) -> str | None:
        """Why this service cannot be run from this tree (None: it can)."""
        return None

    def install(self) -> None:
        """Fetch and unpack what is missing (cached across checkouts)."""

    def launch(self) -> Launch:
        """Write config, initialise data on first start, say how to start the process."""
        raise NotImplementedError

    def probe(self) -> str:
        """One real request; the version the service reports. Raises probes.NotReady."""
        raise NotImplementedError

    def bootstrap(self) -> None:
        """After the first successful probe of a freshly started process."""

    def outdated(self) -> str | None:
        """Why the running process must be restarted to take this tree's configuration (None:
        it need not, or none runs)."""
        return None

    def after_up(self) -> None:
        """Once the service answers, started or adopted: what the tree adds to a running service
        (users, roles, reloaded settings), idempotent."""

    def details(self) -> list[tuple[bool, str]]:
        """Extra lines for `status` (other listeners), probing each: (answers, line)."""
        return []


def maven_copy_dependencies(ctx: Context, pom: Path, props: dict[str, str], dest: Path) -> None:
    """Copy the runtime dependencies of `pom` into `dest`, marked `.complete` once whole.

    Resolved into a temporary folder renamed at the end, so an interrupted run never leaves
    a half-filled `dest` that would pass for installed."""
    mvn = need_tool(ctx, "mvn", "maven")
    remove_stale_tmp(dest)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    run(
        [
            mvn,
            *MVN_FLAGS,
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            *(f"-D{key}={value}" for key, value in props.items()),
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ],
        f"maven ({pom.relative_to(HERE)})",
    )
    (tmp / ".complete").touch()
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


# --- Kafka ------------------------------------------------------------------------------


class Kafka(Service):
    name = "kafka"
    port = 9092
    extra_ports = (9093, tls.KAFKA_SASL_PORT)
    start_timeout = 90.0

    @property
    def libs(self) -> Path:
        return self.ctx.cache / f"kafka-{KAFKA_VERSION}" / "libs"

    def install(self) -> None:
        if (self.libs / ".complete").exists():
            return
        need_tool(self.ctx, "java", "openjdk-17-jre-headless")
        self.ctx.log(f"resolving Apache Kafka {KAFKA_VERSION} jars with maven")
        maven_copy_dependencies(
            self.ctx, HERE / "kafka" / "pom.xml", {"kafka.version": KAFKA_VERSION}, self.libs
        )

    def java_argv(self, main: str, heap: str, log4j: Path) -> list[str]:
        return [
            str(java_home(17, newest=False) / "bin/java"),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.dir / 'logs'}",
            "-cp",
            f"{self.libs}/*",
            main,
        ]

    def write_config(self) -> Path:
        conf = self.dir / "config"
        conf.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        values = {
            "DATA": self.dir / "data",
            "LOGS": self.dir / "logs",
            "HOST": HOST,
            "SASL_PORT": tls.KAFKA_SASL_PORT,
            "KEYSTORE": tls.certs_of(self.ctx).keystore,
            "KEYSTORE_PASSWORD": tls.KEYSTORE_PASSWORD,
        }
        for name in ("server.properties", "log4j2.properties", "tools-log4j2.properties"):
            text = (HERE / "kafka" / name).read_text()
            for key, value in values.items():
                text = text.replace(f"@{key}@", str(value))
            (conf / name).write_text(text)
        return conf

    def launch(self) -> Launch:
        tls.ensure(self.ctx)
        conf = self.write_config()
        if not (self.dir / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self.ctx.log(f"kafka: formatting storage (cluster id {cluster_id})")
            tools_log4j = conf / "tools-log4j2.properties"
            fmt = ["format", "-t", cluster_id, "-c", str(conf / "server.properties")]
            run(
                [*self.java_argv("kafka.tools.StorageTool", "256m", tools_log4j), *fmt],
                "kafka storage format",
            )
        argv = self.java_argv("kafka.Kafka", "512m", conf / "log4j2.properties")
        return Launch([*argv, str(conf / "server.properties")], self.dir, self.log)

    @property
    def main_log(self) -> Path:
        return self.dir / "logs" / "server.log"  # log4j2; stdout stays nearly empty

    def cli(self, main: str, args: list[str]) -> list[str]:
        conf = self.write_config()
        return self.java_argv(main, "256m", conf / "tools-log4j2.properties") + args

    def probe(self) -> str:
        cluster = probes.kafka(HOST, self.port)
        return f"{self._reported_version()} (cluster {cluster.cluster_id})"

    def outdated(self) -> str | None:
        leader = procs.read_pidfile(self.pidfile)
        if leader is None or not procs.is_ours(leader, self.dir):
            return None
        if not procs.port_owner(tls.KAFKA_SASL_PORT)[1]:
            # A broker started before the listener was added: a restart reads the new
            # server.properties; the data (KRaft metadata, topics, offsets) is kept as is.
            return f"it has no SASL_SSL listener on {HOST}:{tls.KAFKA_SASL_PORT} yet"
        return None

    def after_up(self) -> None:
        """The SCRAM user of the SASL_SSL listener, created through the plain listener with
        Kafka's own kafka-configs (KRaft keeps it in the metadata log), then the listener
        checked: a TLS handshake verified against the devstack CA and an ApiVersions answer."""
        certs = tls.ensure(self.ctx)
        stamp = self.dir / "data" / f".scram-{tls.KAFKA_SASL_USER}"
        wanted = hashlib.sha256(tls.KAFKA_SASL_PASSWORD.encode()).hexdigest()
        if not stamp.exists() or stamp.read_text().strip() != wanted:
            self.ctx.log(f"kafka: SCRAM-SHA-512 user {tls.KAFKA_SASL_USER!r} (kafka-configs)")
            scram = f"SCRAM-SHA-512=[iterations=8192,password={tls.KAFKA_SASL_PASSWORD}]"
            args = ["--bootstrap-server", f"{HOST}:{self.port}", "--alter", "--add-config"]
            args += [scram, "--entity-type", "users", "--entity-name", tls.KAFKA_SASL_USER]
            run(self.cli("kafka.admin.ConfigCommand", args), "kafka-configs (SCRAM user)")
            stamp.write_text(wanted + "\n")
        deadline = time.monotonic() + 30
        while True:
            try:
                probes.kafka_tls(HOST, tls.KAFKA_SASL_PORT, certs.ca)
                return
            except probes.NotReady as exc:
                if time.monotonic() > deadline:
                    raise DevstackError(
                        f"kafka: the SASL_SSL listener does not answer: {exc}"
                    ) from None
            time.sleep(0.5)

    def details(self) -> list[tuple[bool, str]]:
        where = f"{HOST}:{tls.KAFKA_SASL_PORT}"
        try:
            probes.kafka_tls(HOST, tls.KAFKA_SASL_PORT, tls.certs_of(self.ctx).ca)
        except probes.NotReady as exc:
            return [(False, f"  SASL_SSL      down  {where:<15} {exc}")]
        line = (
            f"  SASL_SSL      up    {where:<15} {tls.KAFKA_SASL_MECHANISM} user "
            f"{tls.KAFKA_SASL_USER}, TLS by {tls.certs_of(self.ctx).ca}"
        )
        return [(True, line)]

    def _reported_version(self) -> str:
        try:
            text = self.main_log.read_text(errors="replace")[-2_000_000:]
        except OSError:
            text = ""
        found = re.findall(r"Kafka version: (\S+)", text)
        return found[-1] if found else KAFKA_VERSION


# --- Elasticsearch ----------------------------------------------------------------------


class Elasticsearch(Service):
    name = "elasticsearch"
    port = 9200
    extra_ports = (9300,)
    start_timeout = 180.0
    stop_timeout = 60.0

    @property
    def home(self) -> Path:
        return self.ctx.cache / f"elasticsearch-{ES_VERSION}"

    def _zip(self) -> Path:
        repo = M2_REPO
        group, artifact = ES_ARTIFACT.split(":")
        return (
            repo / group.replace(".", "/") / artifact / ES_VERSION / f"{artifact}-{ES_VERSION}.zip"
        )

    def install(self) -> None:
        ensure_service_user(self.ctx)
        if (self.home / ".complete").exists():
            return
        archive = self._zip()
        if not archive.exists():
            mvn = need_tool(self.ctx, "mvn", "maven")
            self.ctx.log(f"downloading Elasticsearch {ES_VERSION} with maven")
            run(
                [
                    mvn,
                    *MVN_FLAGS,
                    "dependency:get",
                    f"-Dartifact={ES_ARTIFACT}:{ES_VERSION}:zip",
                    "-Dtransitive=false",
                ],
                "maven (elasticsearch zip)",
            )
        self.ctx.log(f"unpacking {archive.name} into {self.home}")
        remove_stale_tmp(self.home)
        tmp = self.home.with_name(f"{self.home.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        _unzip(archive, tmp)
        (tmp / f"elasticsearch-{ES_VERSION}" / ".complete").touch()
        shutil.rmtree(self.home, ignore_errors=True)
        (tmp / f"elasticsearch-{ES_VERSION}").rename(self.home)
        shutil.rmtree(tmp, ignore_errors=True)
        self.ctx.cache.chmod(0o755)

    def _write_config(self) -> Path:
        conf = self.dir / "config"
        if not (conf / "jvm.options").exists():
            shutil.copytree(self.home / "config", conf, dirs_exist_ok=True)
        logs = self.dir / "logs"
        jvm = (self.home / "config" / "jvm.options").read_text()
        jvm = re.sub(
            r"^-Xlog:gc.*$",
            f"-Xlog:gc*:file={logs}/gc.log:utctime:filecount=2,filesize=16m",
            jvm,
            flags=re.M,
        )
        jvm = jvm.replace("-XX:+HeapDumpOnOutOfMemoryError", "-XX:-HeapDumpOnOutOfMemoryError")
        (conf / "jvm.options").write_text(jvm)
        (conf / "jvm.options.d").mkdir(exist_ok=True)
        (conf / "jvm.options.d" / "devstack.options").write_text("-Xms512m\n-Xmx512m\n")
        yml = (HERE / "elasticsearch" / "elasticsearch.yml").read_text()
        yml = yml.replace("@DATA@", str(self.dir / "data")).replace("@LOGS@", str(logs))
        (conf / "elasticsearch.yml").write_text(yml.replace("@HOST@", HOST))
        return conf

    def launch(self) -> Launch:
        for sub in ("data", "logs", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        conf = self._write_config()
        give_to_service_user(self.ctx, self.dir)
        env = {
            "ES_PATH_CONF": str(conf),
            "ES_JAVA_HOME": str(java_home(21)),
            "ES_TMPDIR": str(self.dir / "tmp"),
            "ES_JAVA_OPTS": "",
            "HOME": str(self.dir),
        }
        return Launch(
            [str(self.home / "bin" / "elasticsearch")], self.dir, self.log, env, self.ctx.run_user
        )

    def probe(self) -> str:
        # The integ-test distribution has no rest-root module, so no `GET /`: ask the node.
        base = f"http://{HOST}:{self.port}"
        health = probes.http_json(f"{base}/_cluster/health?wait_for_status=yellow&timeout=2s")
        if health.get("timed_out") or health.get("status") not in ("green", "yellow"):
            raise probes.NotReady(f"elasticsearch: cluster health {health.get('status')}")
        nodes = probes.http_json(f"{base}/_nodes/_local?filter_path=nodes.*.version")
        found = nodes.get("nodes")
        versions = [n.get("version") for n in found.values()] if isinstance(found, dict) else []
        return str(versions[0]) if versions else "?"


def _unzip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, dest))
            mode = info.external_attr >> 16
            if mode & 0o777:
                path.chmod(mode & 0o777)


# --- PostgreSQL -------------------------------------------------------------------------


class Postgres(Service):
    name = "postgres"
    port = 5432
    start_timeout = 60.0
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for clients to leave
    user, password, dbname = PG_USER, PG_PASSWORD, PG_DB
    role_options = "LOGIN CREATEDB"
    conf_templates: tuple[str, ...] = ("devstack.conf",)  # in scripts/devstack.d/postgres/
    # TLS (tls.conf, the devstack CA's server certificate) and a role that may log in over TLS
    # only, with a SCRAM password; None: plain connections only.
    tls_user: str | None = tls.PG_TLS_USER

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> Path:
        sock = self.dir / "run"
        if len(f"{sock}/.s.PGSQL.{self.port}") < 100:
            return sock
        digest = hashlib.sha1(str(self.dir).encode()).hexdigest()[:12]
        return Path(f"/tmp/fanout-devstack-{digest}")

    def bindir(self) -> Path:
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/postgres"),
            key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        )
        if not found:
            with _pg_install_lock:  # two PostgreSQL services may both find it missing
                if not any(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
                    _apt_install_postgres(self.ctx)
            return self.bindir()
        return found[-1].parent

    def install(self) -> None:
        ensure_service_user(self.ctx)
        self.bindir()

    def _initdb(self, bindir: Path) -> None:
        self.ctx.log(f"{self.name}: initdb")
        give_to_service_user(self.ctx, self.dir)
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
            cwd=self.dir,
            user=self.ctx.run_user,
            group=self.ctx.run_user,
            capture_output=True,
            check=True,
            text=True,
        )
        conf = self.data / "postgresql.conf"
        conf.write_text(conf.read_text() + "\ninclude 'devstack.conf'\n")

    def launch(self) -> Launch:
        bindir = self.bindir()
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.data, ignore_errors=True)
            try:
                self._initdb(bindir)
            except subprocess.CalledProcessError as exc:
                raise DevstackError(f"initdb failed:\n{exc.stdout}\n{exc.stderr}") from exc
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._write_conf()
        give_to_service_user(self.ctx, self.dir)
        give_to_service_user(self.ctx, self.socket_dir)
        return Launch(
            [str(bindir / "postgres"), "-D", str(self.data)],
            self.dir,
            self.log,
            {"HOME": str(self.dir)},
            self.ctx.run_user,
        )

    def _write_conf(self) -> bool:
        """devstack.conf, and with TLS the server certificate and key and the pg_hba.conf lines
        of the TLS role; whether any file changed (a running server then reloads)."""
        templates = [*self.conf_templates, *(["tls.conf"] if self.tls_user else [])]
        text = "".join((HERE / "postgres" / name).read_text() for name in templates)
        files = {
            "devstack.conf": text.replace("@HOST@", HOST)
            .replace("@PORT@", str(self.port))
            .replace("@SOCKET_DIR@", str(self.socket_dir))
            .replace("@TLS_USER@", self.tls_user or "")
        }
        if self.tls_user:
            certs = tls.ensure(self.ctx)
            files["server.crt"] = certs.server_cert.read_text()
            files["server.key"] = certs.server_key.read_text()
            files["pg_hba.conf"] = self._hba(self.tls_user)
        changed = False
        for name, content in files.items():
            path = self.data / name
            if path.exists() and path.read_text() == content:
                continue
            path.write_text(content)
            path.chmod(0o600 if name == "server.key" else 0o644 if name != "pg_hba.conf" else 0o600)
            if self.ctx.run_user:
                user = pwd.getpwnam(self.ctx.run_user)
                os.chown(path, user.pw_uid, user.pw_gid)
            changed = True
        return changed

    def _hba(self, role: str) -> str:
        """pg_hba.conf with the TLS role's lines first (first match wins): TLS and SCRAM, or
        nothing."""
        marker = "# devstack tls"
        lines = (self.data / "pg_hba.conf").read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.rstrip("\n").endswith(marker)]
        ours = [
            f"hostssl all {role} {HOST}/32 scram-sha-256  {marker}\n",
            f"host    all {role} all reject  {marker}\n",
        ]
        return "".join(ours + kept)

    def after_up(self) -> None:
        """With TLS: files as this tree wants them (a running server reloads: ssl and pg_hba
        need no restart), the TLS role and its password, then one verified TLS login."""
        if not self.tls_user:
            return
        if self._write_conf():
            self.ctx.log(f"{self.name}: TLS settings written; reloading")
            self.psql("SELECT pg_reload_conf()", admin=True)
        self.psql(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"'{self.tls_user}') THEN CREATE ROLE {self.tls_user} LOGIN; END IF; END$$; "
            f"SET password_encryption = 'scram-sha-256'; "
            f"ALTER ROLE {self.tls_user} PASSWORD '{tls.PG_TLS_PASSWORD}'; "
            f"GRANT {self.user} TO {self.tls_user}",
            admin=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.tls_login()
                return
            except probes.NotReady as exc:
                if time.monotonic() > deadline:
                    raise DevstackError(
                        f"{self.name}: no TLS login as {self.tls_user}: {exc}"
                    ) from None
            time.sleep(0.5)

    def tls_login(self) -> str:
        """One login as the TLS role with the server certificate verified (verify-full);
        the TLS version it got."""
        assert self.tls_user
        env = {
            **os.environ,
            "PGPASSWORD": tls.PG_TLS_PASSWORD,
            "PGSSLMODE": "verify-full",
            "PGSSLROOTCERT": str(tls.certs_of(self.ctx).ca),
            "PGCONNECT_TIMEOUT": "3",
        }
        sql = "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        argv = [str(self.bindir() / "psql"), "-p", str(self.port), "-h", HOST]
        argv += ["-U", self.tls_user, "-d", self.dbname, "-XAtq", "-c", sql]
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=env, check=False, timeout=15
        )
        if proc.returncode != 0:
            raise probes.NotReady(f"{self.name}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout.strip()

    def details(self) -> list[tuple[bool, str]]:
        if not self.tls_user:
            return []
        where = f"{HOST}:{self.port}"
        try:
            version = self.tls_login()
        except probes.NotReady as exc:
            return [(False, f"  TLS           down  {where:<15} {exc}")]
        line = (
            f"  TLS           up    {where:<15} {version}, SCRAM user {self.tls_user} "
            f"(hostssl only), CA {tls.certs_of(self.ctx).ca}"
        )
        return [(True, line)]

    def psql(self, sql: str, *, admin: bool = False) -> str:
        if admin:
            target = ["-h", str(self.socket_dir), "-U", "postgres", "-d", "postgres"]
        else:
            target = ["-h", HOST, "-U", self.user, "-d", self.dbname]
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "3"}
        proc = subprocess.run(
            [
                str(self.bindir() / "psql"),
                "-p",
                str(self.port),
                *target,
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=15,
        )
        if proc.returncode != 0:
            raise probes.NotReady(f"{self.name}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout.strip()

    def bootstrap(self) -> None:
        self.psql(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"'{self.user}') THEN CREATE ROLE {self.user} {self.role_options} "
            f"PASSWORD '{self.password}'; END IF; END$$;",
            admin=True,
        )
        if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.dbname}'", admin=True):
            self.psql(f"CREATE DATABASE {self.dbname} OWNER {self.user}", admin=True)

    def probe(self) -> str:
        try:
            version = self.psql("SELECT version()")
        except probes.NotReady as exc:
            if "does not exist" in str(exc) or "authentication failed" in str(exc):
                self.bootstrap()
                version = self.psql("SELECT version()")
            else:
                raise
        return version.split(" on ")[0]


def _apt_install_postgres(ctx: Context) -> None:
    """Debian's postgresql, without letting the package start its own cluster on 5432."""
    policy = Path("/usr/sbin/policy-rc.d")
    ours = ctx.as_root and not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        apt_install(ctx, "postgresql")
    finally:
        if ours:
            policy.unlink()


# --- ClickHouse (chDB-backed HTTP endpoint) ---------------------------------------------


class ClickHouse(Service):
    name = "clickhouse"
    port = 8123
    start_timeout = 90.0

    @property
    def module(self) -> Path:
        return self.ctx.repo / "tests" / "support" / "chdb_http.py"

    def not_installable(self) -> str | None:
        if not self.module.exists():
            return "not installed (tests/support/chdb_http.py is not in this tree yet)"
        return None

    def install(self) -> None:
        python = os.environ.get("FANOUT_DEVSTACK_PYTHON", sys.executable)
        check = subprocess.run(
            [python, "-c", "import importlib.util as u; exit(u.find_spec('chdb') is None)"],
            check=False,
        )
        if check.returncode != 0:
            raise DevstackError(
                f"clickhouse: the Python package chdb is missing for {python}: run "
                f"`{python} -m pip install -e '.[dev]'` (or `make install`), or point "
                "FANOUT_DEVSTACK_PYTHON at an interpreter that has it"
            )

    def launch(self) -> Launch:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        python = os.environ.get("FANOUT_DEVSTACK_PYTHON", sys.executable)
        pythonpath = os.pathsep.join(
            p for p in (str(self.ctx.repo), os.environ.get("PYTHONPATH", "")) if p
        )
        argv = [
            python,
            "-m",
            "tests.support.chdb_http",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.dir / "data"),
        ]
        return Launch(argv, self.dir, self.log, {"PYTHONPATH": pythonpath})

    def probe(self) -> str:
        base = f"http://{HOST}:{self.port}"
        status, body = probes.http(f"{base}/ping")
        if status != 200 or body != b"Ok.\n":
            raise probes.NotReady(f"clickhouse: /ping answered {status} {body[:100]!r}")
        status, body = probes.http(f"{base}/?user=default", b"SELECT version()")
        if status != 200:
            raise probes.NotReady(f"clickhouse: SELECT version() -> {status} {body[:200]!r}")
        return body.decode().strip()


SERVICES: list[type[Service]] = [Kafka, Elasticsearch, Postgres, ClickHouse]
