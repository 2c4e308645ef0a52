"""A second, secured Elasticsearch node for tests: the devstack's own distribution with
security on, TLS on HTTP and users of the file realm with roles from ``roles.yml``.

The devstack's integ-test Elasticsearch carries ``x-pack-security``; its node runs with security
off for every other test, so this one is separate: its own ports (free ones), data and config
in a temporary directory, the devstack CA's server certificate (``.devstack/tls``), a heap of
384 MiB, started as the devstack's service user when run as root (Elasticsearch refuses root).
It starts in 20 s on an idle machine (minutes on a loaded one: `elasticsearch -d` returns once
the node is up) and is stopped (SIGTERM to the pid it wrote) when the context ends.

API keys cannot be made here: creating one needs the security index, whose mapping uses the
``pattern_capture`` filter of ``analysis-common``, a module this distribution lacks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from elasticsearch import Elasticsearch

from tests.support.pipeline import REPO, wait_for

sys.path.insert(0, str(REPO / "scripts" / "devstack.d"))
from devstack.context import Context, java_home
from devstack.services import ES_VERSION

SUPERUSER = ("fanout_admin", "secured-es-admin-1")
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class SecuredNode:
    url: str  # https://127.0.0.1:<port>
    ca: Path

    def client(self, user: tuple[str, str] = SUPERUSER) -> Elasticsearch:
        return Elasticsearch(self.url, ca_certs=str(self.ca), basic_auth=user, request_timeout=30)


@contextmanager
def secured_elasticsearch(
    certs: Path, users: Mapping[str, tuple[str, str]], roles_yml: str
) -> Iterator[SecuredNode]:
    """A running secured node; ``users`` maps a user name to (password, role), ``roles_yml``
    defines the roles (the superuser ``fanout_admin`` is added)."""
    ctx = Context.create(REPO)
    home = ctx.cache / f"elasticsearch-{ES_VERSION}"
    if not (home / "bin" / "elasticsearch").exists():
        raise RuntimeError(f"{home} is missing: run `scripts/devstack up elasticsearch`")
    workdir = Path(tempfile.mkdtemp(prefix="fanout-secured-es-"))
    workdir.chmod(0o755)  # the service user must reach it
    pid_file = workdir / "pid"
    try:
        http_port = _configure(home, workdir, certs, roles_yml)
        runner = _Runner(home, workdir, ctx.run_user)
        for name, (password, role) in {**users, SUPERUSER[0]: (SUPERUSER[1], "superuser")}.items():
            runner.run("elasticsearch-users", "useradd", name, "-p", password, "-r", role)
        runner.run("elasticsearch", "-d", "-p", str(pid_file))
        node = SecuredNode(f"https://127.0.0.1:{http_port}", certs / "ca.pem")
        _wait_healthy(node, workdir)
        yield node
    finally:
        _stop(pid_file)
        shutil.rmtree(workdir, ignore_errors=True)


def _configure(home: Path, workdir: Path, certs: Path, roles_yml: str) -> int:
    conf = workdir / "config"
    shutil.copytree(home / "config", conf)
    (conf / "elasticsearch.keystore").unlink(missing_ok=True)
    for name in ("ca.pem", "server.pem", "server.key"):
        shutil.copy(certs / name, conf / name)
    for sub in ("data", "logs", "tmp"):
        (workdir / sub).mkdir()
    http_port, transport_port = _free_port(), _free_port()
    (conf / "elasticsearch.yml").write_text(
        f"""cluster.name: fanout-secured-test
node.name: secured
path.data: {workdir / "data"}
path.logs: {workdir / "logs"}
network.host: 127.0.0.1
http.port: {http_port}
transport.port: {transport_port}
discovery.type: single-node
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
xpack.security.enabled: true
xpack.security.http.ssl.enabled: true
xpack.security.http.ssl.key: server.key
xpack.security.http.ssl.certificate: server.pem
xpack.security.http.ssl.certificate_authorities: [ca.pem]
xpack.security.transport.ssl.enabled: false
"""
    )
    (conf / "roles.yml").write_text(roles_yml)
    (conf / "jvm.options.d").mkdir(exist_ok=True)
    (conf / "jvm.options.d" / "heap.options").write_text("-Xms384m\n-Xmx384m\n")
    return http_port


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Runner:
    """Runs the distribution's commands as the user that may run them."""

    def __init__(self, home: Path, workdir: Path, user: str | None) -> None:
        self.home, self.workdir, self.user = home, workdir, user
        if user is not None:
            subprocess.run(["chown", "-R", user, str(workdir)], check=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ES_PATH_CONF": str(workdir / "config"),
            "ES_JAVA_HOME": str(java_home(21)),
            "ES_TMPDIR": str(workdir / "tmp"),
            "ES_JAVA_OPTS": "",
            "HOME": str(workdir),
        }

    def run(self, tool: str, *args: str) -> None:
        argv = [str(self.home / "bin" / tool), *args]
        if self.user is not None:
            env_args = [f"{k}={v}" for k, v in self.env.items()]
            argv = ["runuser", "-u", self.user, "--", "env", *env_args, *argv]
        # Output to a file, not a pipe: a daemonized node keeps its inherited streams open.
        out = self.workdir / f"{tool}.out"
        with out.open("w") as sink:
            proc = subprocess.run(
                argv, env=self.env, cwd=self.workdir, stdout=sink, stderr=subprocess.STDOUT,
                timeout=600, check=False,
            )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {out.read_text()[-2000:]}")


def _wait_healthy(node: SecuredNode, workdir: Path) -> None:
    with node.client() as client:

        def healthy() -> bool:
            try:
                health = client.cluster.health(wait_for_status="yellow", timeout="5s")
            except Exception:  # not listening yet
                return False
            return health.get("status") in ("green", "yellow")

        try:
            wait_for(healthy, START_TIMEOUT_S, "the secured Elasticsearch node", interval_s=0.5)
        except AssertionError as exc:
            logs = "\n".join(p.read_text()[-3000:] for p in (workdir / "logs").glob("*.log"))
            raise RuntimeError(f"{exc}\n{logs}") from None


def _stop(pid_file: Path) -> None:
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 60, "the node to stop")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
