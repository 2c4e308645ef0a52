"""Backfill runs: explicit, one Job per sink and run id, and upgrades never touch a run's Job.

A Job's pod template is immutable: an upgrade that changed it would fail ("field is
immutable"). The chart keeps the template free of anything unrelated upgrades change, and on a
cluster it re-renders an existing run's template as the cluster has it (`lookup`). The last
test proves that with `helm template --dry-run=server` against a stand-in API server that
answers the two requests `lookup` makes.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.chart import (
    NAMESPACE,
    RELEASE,
    Manifest,
    by_name,
    container,
    helm_path,
    of_kind,
    pod_spec,
    render,
    run_helm,
    template_args,
)

RUN = ["backfill.runId=reload-1", "backfill.sinks={postgres,elasticsearch}"]
JOB = f"{RELEASE}-fanout-backfill-postgres-reload-1"


def job_text(*sets: str) -> str:
    """The backfill Jobs exactly as `helm template` prints them."""
    args = template_args(["full"], list(sets))
    result = run_helm(*args, "--show-only", "templates/backfill-job.yaml")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_backfill_jobs_run_exactly_fanout_backfill() -> None:
    jobs = by_name(render("full"), "Job")
    assert sorted(jobs) == [
        f"{RELEASE}-fanout-backfill-clickhouse-initial-load",
        f"{RELEASE}-fanout-backfill-postgres-initial-load",
    ]
    for name, job in jobs.items():
        sink = job["metadata"]["labels"]["fanout/sink"]
        assert sink in name
        assert job["metadata"]["labels"]["fanout/backfill-run"] == "initial-load"
        assert container(job)["args"] == [
            "backfill",
            "--sink",
            sink,
            "--from",
            "2025-01-31T00:00:00Z",
            "--id",
            "initial-load",
        ]
        assert job["spec"]["backoffLimit"] == 3
        assert job["spec"]["activeDeadlineSeconds"] == 86400
        assert pod_spec(job)["restartPolicy"] == "Never"
        volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
        assert volumes["config"]["configMap"]["name"] == f"{RELEASE}-fanout-{sink}-config"


def test_no_backfill_job_without_a_run_id() -> None:
    assert of_kind(render("default", sets=["backfill.sinks={postgres}"]), "Job") == []
    assert of_kind(render("full", sets=["backfill.runId="]), "Job") == []


def test_a_finished_job_is_not_deleted_by_a_ttl_so_no_upgrade_makes_it_again() -> None:
    """After a TTL deleted it, the next upgrade with the same run id would run it again."""
    for job in of_kind(render("full"), "Job"):
        assert "ttlSecondsAfterFinished" not in job["spec"]


def test_each_run_is_its_own_job() -> None:
    base = ["backfill.sinks={postgres}"]
    first = of_kind(render("default", sets=[*base, "backfill.runId=first"]), "Job")[0]
    second = of_kind(render("default", sets=[*base, "backfill.runId=second"]), "Job")[0]
    assert first["metadata"]["name"] != second["metadata"]["name"]
    assert container(second)["args"][-1] == "second"


def test_job_pod_template_carries_nothing_an_unrelated_upgrade_changes() -> None:
    for job in of_kind(render("full"), "Job"):
        template = job["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert "helm.sh/chart" not in labels
        assert "app.kubernetes.io/version" not in labels
        assert "team" not in labels, "commonLabels stay on the Job, off its pod template"
        assert not any(
            k.startswith("checksum/") for k in template["metadata"].get("annotations", {})
        )


def test_job_template_is_byte_identical_across_config_changes() -> None:
    before = job_text(*RUN)
    assert JOB in before
    after = job_text(
        *RUN,
        "sinks.postgres.batch.maxEvents=100",
        "sinks.postgres.batch.maxWaitMs=2000",
        "sinks.elasticsearch.requestTimeoutS=90",
        "kafka.bootstrapServers=other-kafka:9092",
        "logging.level=DEBUG",
        "podAnnotations.restarted=now",
        "podLabels.tier=cdc",
        "commonLabels.team=data",
    )
    assert after == before


def test_backfill_pods_have_their_own_labels_and_annotations() -> None:
    sets = [*RUN, "backfill.podAnnotations.example\\.com/owner=data"]
    sets.append("backfill.podLabels.purpose=reload")
    (job,) = [j for j in of_kind(render("full", sets=sets), "Job") if j["metadata"]["name"] == JOB]
    metadata = job["spec"]["template"]["metadata"]
    assert metadata["annotations"] == {"example.com/owner": "data"}
    assert metadata["labels"]["purpose"] == "reload"


# --- an upgrade against a cluster ------------------------------------------------------------


class FakeApi(ThreadingHTTPServer):
    """Answers what `lookup "batch/v1" "Job"` asks: batch/v1 discovery and GET of one Job."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.paths: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.paths.append(path)
        job = re.fullmatch(rf"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/([^/]+)", path)
        if path == "/apis/batch/v1":
            resource = {"name": "jobs", "singularName": "job", "namespaced": True, "kind": "Job"}
            resource["verbs"] = ["get", "list", "create", "update", "patch", "delete"]
            body = {"kind": "APIResourceList", "groupVersion": "batch/v1", "resources": [resource]}
            self._send(200, {"apiVersion": "v1", **body})
        elif job and job.group(1) in self.server.jobs:
            self._send(200, self.server.jobs[job.group(1)])
        else:
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure"}
            self._send(404, {**status, "reason": "NotFound", "code": 404, "message": path})

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeApi, Path]]:
    api = FakeApi()
    thread = threading.Thread(target=api.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    server = f"http://127.0.0.1:{api.server_address[1]}"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    yield api, kubeconfig
    api.shutdown()
    api.server_close()


def render_against(kubeconfig: Path, *sets: str) -> list[Manifest]:
    """`helm template --dry-run=server`: what `helm upgrade` renders, lookups included."""
    args = [*template_args(["default"], list(sets)), "--dry-run=server"]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HELM_NAMESPACE": NAMESPACE}
    result = subprocess.run(
        [helm_path(), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def as_the_api_server_keeps_it(job: Manifest) -> dict[str, Any]:
    """The Job as stored: defaults and controller labels added to its template."""
    stored = copy.deepcopy(job)
    template = stored["spec"]["template"]
    uid = "6f1c0d8e-0000-4000-8000-000000000001"
    template["metadata"]["labels"].update(
        {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": job["metadata"]["name"],
            "controller-uid": uid,
            "job-name": job["metadata"]["name"],
        }
    )
    template["metadata"]["creationTimestamp"] = None
    for each in template["spec"]["containers"]:
        each.setdefault("terminationMessagePath", "/dev/termination-log")
        each.setdefault("terminationMessagePolicy", "File")
    template["spec"].setdefault("dnsPolicy", "ClusterFirst")
    template["spec"].setdefault("schedulerName", "default-scheduler")
    stored["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    stored["status"] = {"succeeded": 1}
    return stored


def test_an_upgrade_keeps_an_existing_runs_template_as_the_cluster_has_it(
    cluster: tuple[FakeApi, Path],
) -> None:
    api, kubeconfig = cluster
    run = ["backfill.runId=reload-1", "backfill.sinks={postgres}"]
    installed = render_against(kubeconfig, *run)
    (job,) = of_kind(installed, "Job")
    assert container(job)["image"] == "fanout:0.1.0"
    assert f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job['metadata']['name']}" in api.paths
    stored = as_the_api_server_keeps_it(job)
    api.jobs[job["metadata"]["name"]] = stored

    upgraded = render_against(
        kubeconfig,
        *run,
        "image.tag=0.2.0",
        "sinks.postgres.batch.maxEvents=100",
        "extraEnv[0].name=TZ",
        "extraEnv[0].value=UTC",
        "backfill.resources.limits.memory=2Gi",
    )
    (deployment,) = of_kind(upgraded, "Deployment")
    assert container(deployment)["image"] == "fanout:0.2.0", "the upgrade did change the pods"
    (again,) = of_kind(upgraded, "Job")
    assert again["spec"]["template"] == stored["spec"]["template"]
    dump = yaml.safe_dump
    assert dump(again["spec"]["template"]) == dump(stored["spec"]["template"])

    other_run = render_against(
        kubeconfig, "backfill.runId=reload-2", "backfill.sinks={postgres}", "image.tag=0.2.0"
    )
    (new_job,) = of_kind(other_run, "Job")
    assert container(new_job)["image"] == "fanout:0.2.0", "a new run takes the new image"
