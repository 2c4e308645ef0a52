"""The container image, built and run for real.

`fanout run --sink postgres` runs in the image the way the Helm chart runs it: the args, env,
config mount, user, read-only root, tmpfs and probes are taken from `helm template` output, not
written here a second time. Against the local stack it must answer its probes, write the rows of
a fresh Debezium stream to PostgreSQL, and end with exit code 0 on SIGTERM.
"""

from __future__ import annotations

import base64
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.helm.chart import Manifest, by_name, component, container, pod_spec, render, workloads
from tests.image.conftest import BUILD_TIMEOUT_S, podman
from tests.integration.runtime_support import all_tables_state, diff, oracle, stream
from tests.support.debezium import produce_stream
from tests.support.pipeline import create_topic, unique, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.timeout(BUILD_TIMEOUT_S + 600),
]

SINK = "postgres"
READY_TIMEOUT_S = 120
ROWS_TIMEOUT_S = 120


def escape_set(value: str) -> str:
    """A value for `helm --set`, where commas separate items."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


def chart_values(
    *, topic: str, prefix: str, schema: str, pg: Mapping[str, Any], bootstrap: str, port: int
) -> list[str]:
    """The chart's default values with the local stack's addresses: what a user would set."""
    values = {
        "kafka.bootstrapServers": bootstrap,
        "kafka.topics[0]": topic,
        "kafka.groupPrefix": prefix,
        "kafka.dlqPrefix": f"{prefix}.dlq",
        f"sinks.{SINK}.host": pg["host"],
        f"sinks.{SINK}.port": str(pg["port"]),
        f"sinks.{SINK}.user": pg["user"],
        f"sinks.{SINK}.password": pg["password"],
        f"sinks.{SINK}.dbname": pg["dbname"],
        f"sinks.{SINK}.schema": schema,
        # With the host's network (the stack listens on the host's 127.0.0.1), the default
        # 9108 could be taken by another worker on this machine.
        "metrics.port": str(port),
    }
    return [f"{key}={escape_set(value)}" for key, value in values.items()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def podman_memory(quantity: str) -> str:
    """A Kubernetes memory quantity (binary suffixes) in podman's notation."""
    for suffix, unit in (("Ki", "k"), ("Mi", "m"), ("Gi", "g")):
        if quantity.endswith(suffix):
            return quantity.removesuffix(suffix) + unit
    return quantity  # plain bytes


@dataclass
class ChartPod:
    """One sink's pod as the chart renders it, as a `podman run` command line."""

    image: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    probes: dict[str, tuple[str, int]] = field(default_factory=dict)
    grace_s: int = 30

    @classmethod
    def render(cls, manifests: list[Manifest], sink: str, files: Path) -> ChartPod:
        (workload,) = [w for w in workloads(manifests) if component(w) == sink]
        spec, fanout = pod_spec(workload), container(workload)
        pod = cls(image=fanout["image"], grace_s=int(spec.get("terminationGracePeriodSeconds", 30)))
        if "command" in fanout:
            (entrypoint, *rest) = fanout["command"]
            pod.options += ["--entrypoint", entrypoint]
            pod.args += rest
        pod.args += fanout.get("args", [])
        assert "envFrom" not in fanout, "envFrom is not emulated here"
        for item in fanout.get("env", []):
            pod.env[item["name"]] = env_value(manifests, workload, item)
        pod._security(spec.get("securityContext", {}), fanout.get("securityContext", {}))
        pod._volumes(manifests, spec, fanout, files)
        limit = fanout.get("resources", {}).get("limits", {}).get("memory")
        if limit:
            pod.options += ["--memory", podman_memory(str(limit))]
        ports = {p["name"]: int(p["containerPort"]) for p in fanout.get("ports", [])}
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind in fanout:
                get = fanout[kind]["httpGet"]
                port = get["port"]
                pod.probes[kind] = (get["path"], ports[port] if isinstance(port, str) else port)
        return pod

    def _security(self, pod: Mapping[str, Any], box: Mapping[str, Any]) -> None:
        merged = {**pod, **box}  # the container's settings win, as in Kubernetes
        user = merged.get("runAsUser")
        group = merged.get("runAsGroup")
        if merged.get("runAsNonRoot"):
            assert user not in (None, 0), "runAsNonRoot without a non-zero runAsUser"
        if user is not None:
            self.options += ["--user", f"{user}:{group}" if group is not None else str(user)]
        if "fsGroup" in pod:
            self.options += ["--group-add", str(pod["fsGroup"])]
        if merged.get("readOnlyRootFilesystem"):
            # Kubernetes adds no writable /tmp, /run or /var/tmp of its own; podman would.
            self.options += ["--read-only", "--read-only-tmpfs=false"]
        if "ALL" in merged.get("capabilities", {}).get("drop", []):
            self.options += ["--cap-drop", "all"]
        if merged.get("allowPrivilegeEscalation") is False:
            self.options += ["--security-opt", "no-new-privileges"]
        assert not merged.get("privileged"), "a privileged pod is not what the chart should render"
        # seccompProfile RuntimeDefault: podman applies its default profile anyway.

    def _volumes(
        self,
        manifests: list[Manifest],
        spec: Mapping[str, Any],
        box: Mapping[str, Any],
        files: Path,
    ) -> None:
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in box.get("volumeMounts", []):
            assert "subPath" not in mount, "subPath mounts are not emulated here"
            volume, target = volumes[mount["name"]], mount["mountPath"]
            mode = "ro" if mount.get("readOnly") else "rw"
            if "emptyDir" in volume:
                size = volume["emptyDir"].get("sizeLimit")
                options = f"rw,mode=1777{',size=' + podman_memory(size) if size else ''}"
                self.options += ["--tmpfs", f"{target}:{options}"]
            elif "configMap" in volume:
                data = by_name(manifests, "ConfigMap")[volume["configMap"]["name"]]["data"]
                source = write_files(files / mount["name"], data)
                self.options += ["--volume", f"{source}:{target}:{mode}"]
            elif "secret" in volume:
                secrets = by_name(manifests, "Secret")
                name = volume["secret"]["secretName"]
                assert name in secrets, f"Secret {name} is not made by the chart; cannot mount it"
                data = {k: base64.b64decode(v).decode() for k, v in secrets[name]["data"].items()}
                source = write_files(files / mount["name"], data)
                self.options += ["--volume", f"{source}:{target}:{mode}"]
            else:
                raise AssertionError(f"volume {volume} is not emulated here")

    def run_command(self, name: str) -> list[str]:
        return [
            "run",
            "--detach",
            "--name",
            name,
            # The stack listens on the host's 127.0.0.1, as a cluster's services would on theirs.
            "--network=host",
            # Kubernetes ignores the image's HEALTHCHECK (the chart's probes replace it), and
            # podman's needs systemd timers, which this machine lacks.
            "--no-healthcheck",
            *self.options,
            # Values stay out of the command line: `--env NAME` takes podman's own environment.
            *(arg for key in self.env for arg in ("--env", key)),
            self.image,
            *self.args,
        ]


def env_value(manifests: list[Manifest], workload: Manifest, item: Mapping[str, Any]) -> str:
    if "value" in item:
        return str(item["value"])
    source = item.get("valueFrom", {})
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        secrets = by_name(manifests, "Secret")
        assert ref["name"] in secrets, f"{item['name']}: Secret {ref['name']} is not the chart's"
        return base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
    if source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
        return f"{workload['metadata']['name']}-0"
    raise AssertionError(f"env {item} is not emulated here")


def write_files(directory: Path, data: Mapping[str, str]) -> Path:
    """A ConfigMap or Secret volume's files, readable by the container's non-root user."""
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    for key, text in data.items():
        (directory / key).write_text(text)
        (directory / key).chmod(0o644)
    return directory


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not listening yet


def state(name: str) -> str:
    return podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()


def logs(name: str) -> str:
    result = podman("logs", name)
    return (result.stdout + result.stderr)[-4000:]


@pytest.fixture
def schema(pg_conninfo: dict[str, Any]) -> Iterator[str]:
    name = f"img_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def container_name() -> Iterator[str]:
    """A container name; the container is removed when the test ends, whatever happened."""
    name = f"fanout-image-test-{uuid.uuid4().hex[:8]}"
    yield name
    podman("rm", "--force", "--time", "0", name)


def test_the_image_runs_the_postgres_sink_as_the_chart_starts_it(
    image: str,
    pg_conninfo: dict[str, Any],
    kafka_bootstrap: str,
    schema: str,
    container_name: str,
    tmp_path: Path,
) -> None:
    prefix = unique("img")
    topic = create_topic(f"{prefix}.cdc", partitions=3)
    manifests = render(
        sets=chart_values(
            topic=topic,
            prefix=prefix,
            schema=schema,
            pg=pg_conninfo,
            bootstrap=kafka_bootstrap,
            port=free_port(),
        )
    )
    pod = ChartPod.render(manifests, SINK, tmp_path)
    assert pod.args == ["run", "--sink", SINK]
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(pod.probes)

    # The chart's default image reference names the image scripts/build-image made.
    ids = {
        ref: podman("image", "inspect", "--format", "{{.Id}}", ref) for ref in (pod.image, image)
    }
    assert ids[pod.image].returncode == 0, f"the chart's image {pod.image}: {ids[pod.image].stderr}"
    assert ids[pod.image].stdout == ids[image].stdout

    started = podman(*pod.run_command(container_name), env={**os.environ, **pod.env})
    assert started.returncode == 0, started.stderr

    def probes_pass() -> bool:
        assert state(container_name) == "running", f"container exited:\n{logs(container_name)}"
        return all(http_status(port, path) == 200 for path, port in pod.probes.values())

    try:
        wait_for(probes_pass, READY_TIMEOUT_S, "the chart's probes to answer 200")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ncontainer log:\n{logs(container_name)}") from exc

    messages = stream(1500, n_keys=100, seed=14)
    produce_stream(topic, messages, kafka_bootstrap)
    expected = oracle(messages)
    assert sum(len(rows) for rows in expected.values()) > 0
    with psycopg.connect(**pg_conninfo, autocommit=True) as conn:

        def converged() -> bool:
            assert state(container_name) == "running", f"container exited:\n{logs(container_name)}"
            return all_tables_state(conn, schema) == expected

        try:
            wait_for(converged, ROWS_TIMEOUT_S, f"the stream's rows in PostgreSQL schema {schema}")
        except AssertionError as exc:
            actual = all_tables_state(conn, schema)
            raise AssertionError(
                f"{exc}\n{diff(actual, expected)}\ncontainer log:\n{logs(container_name)}"
            ) from exc
    for path, port in pod.probes.values():
        assert http_status(port, path) == 200, path

    # SIGTERM, as the kubelet sends it; it must drain and exit 0 within the grace period.
    stopping = time.monotonic()
    killed = podman("kill", "--signal", "TERM", container_name)
    assert killed.returncode == 0, killed.stderr
    waited = podman("wait", container_name, timeout_s=pod.grace_s + 10)
    took = time.monotonic() - stopping
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip() == "0", (
        f"exit code {waited.stdout.strip()}:\n{logs(container_name)}"
    )
    assert took < pod.grace_s, f"took {took:.0f}s to stop; the grace period is {pod.grace_s}s"
