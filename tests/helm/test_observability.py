"""The chart's Grafana dashboard and PrometheusRule, and the metrics they name.

- Every metric a dashboard panel or an alert names is exported by a real worker: one
  `fanout run --sink postgres` drains a small stream against the local stack and its
  `/metrics` is read (marked `integration`: it needs `scripts/devstack up`).
- The rules pass `promtool check rules`, and `promtool test rules` fires (and does not fire)
  each alert on made-up series. promtool comes from scripts/install-promtool (built from the
  Go module proxy once, then cached); if it cannot be built here those tests skip, saying why.
- The dashboard ConfigMap validates against the Kubernetes schema; the PrometheusRule is a
  custom resource without one there, so its fields are asserted here.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.helm.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    REPO,
    Manifest,
    of_kind,
    render,
    render_error,
)

OPERATOR_API = "extraApiVersions={monitoring.coreos.com/v1}"
RULE_ON = ["prometheusRule.enabled=true", OPERATOR_API]
DASHBOARD_ON = ["grafanaDashboard.enabled=true"]
DASHBOARD_FILE = CHART / "dashboards" / "fanout.json"
OPERATIONS = REPO / "docs" / "OPERATIONS.md"
ALERTS = (
    "FanoutConsumerLagGrowing",
    "FanoutSinkDown",
    "FanoutWorkerDown",
    "FanoutDeadLetters",
    "FanoutNoProgress",
)
# The default selector of a release `cdc` in `data` running only the PostgreSQL sink.
POSTGRES_JOB = f"{RELEASE}-fanout-postgres-metrics"
POD_NAME = f"{RELEASE}-fanout-postgres-7d9f-abcde"
# Labels Prometheus adds to every scraped series (the ServiceMonitor's target labels), and `le`
# of histogram buckets: a query may group by them although the worker does not export them.
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "container", "endpoint", "le"}
KUBE_VERSIONS = ("1.27.0", latest_version())

METRIC = re.compile(r"\bfanout_[a-z0-9_]+")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


# --- what the dashboard and the rules name ---------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but the rows (rows hold no query)."""
    return [p for p in board["panels"] if p["type"] != "row"]


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    queries = [
        (f"panel {p['title']!r}", str(t["expr"])) for p in panels(board) for t in p["targets"]
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            queries.append((f"variable {variable['name']}", str(variable["query"]["query"])))
    return queries


def rule_groups(manifests: list[Manifest]) -> list[dict[str, Any]]:
    (rule,) = of_kind(manifests, "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def alert_rules(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule_groups(manifests) for r in g["rules"] if "alert" in r}


def rule_queries(manifests: list[Manifest]) -> list[tuple[str, str]]:
    return [
        (f"rule {r.get('alert', r.get('record'))}", str(r["expr"]))
        for g in rule_groups(manifests)
        for r in g["rules"]
    ]


def referenced_queries() -> list[tuple[str, str]]:
    """Every query the chart ships: the dashboard's and the default alerts'."""
    return dashboard_queries(dashboard()) + rule_queries(render("default", sets=RULE_ON))


def metric_names(expr: str) -> set[str]:
    """The fanout metric names in a PromQL expression (`up` is Prometheus' own)."""
    return set(METRIC.findall(expr))


def grouping_labels(expr: str) -> set[str]:
    return {
        label.strip()
        for group in GROUPING.findall(expr)
        for label in group.split(",")
        if label.strip()
    }


# --- what a worker exports -------------------------------------------------------------------


@dataclass(frozen=True)
class Exposition:
    """A /metrics page: the declared metrics (`# TYPE` lines) and the samples present."""

    types: dict[str, str]  # name -> counter | gauge | histogram | ...
    samples: dict[str, set[str]]  # sample name -> label names seen on it

    @classmethod
    def parse(cls, text: str) -> Exposition:
        types: dict[str, str] = {}
        samples: dict[str, set[str]] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                types[name] = kind
            elif line and not line.startswith("#"):
                name, _, rest = line.partition("{")
                name = name.split(" ")[0]
                labels = set(re.findall(r'(\w+)="', rest.rpartition("}")[0])) if rest else set()
                samples.setdefault(name, set()).update(labels)
        return cls(types, samples)

    def declared(self, name: str) -> str | None:
        """The exported metric a referenced name belongs to (`x_bucket` -> histogram `x`)."""
        if name in self.types:
            return name
        for suffix in HISTOGRAM_SUFFIXES:
            base = name.removesuffix(suffix)
            if base != name and self.types.get(base) == "histogram":
                return base
        return None

    def has_samples(self, name: str) -> bool:
        """A sample of a referenced name: itself, or for a histogram its `_count`."""
        base = self.declared(name)
        if base is not None and self.types.get(base) == "histogram":
            return f"{base}_count" in self.samples
        return name in self.samples

    def labels(self) -> set[str]:
        return {
            label
            for name, seen in self.samples.items()
            if name.startswith("fanout_")
            for label in seen
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def _pg_conninfo() -> dict[str, Any]:
    """The PostgreSQL of the local stack, from the FANOUT_* variables the runtime reads."""
    env = os.environ.get
    return {
        "host": env("FANOUT_SINKS__POSTGRES__HOST", "127.0.0.1"),
        "port": int(env("FANOUT_SINKS__POSTGRES__PORT", "5432")),
        "user": env("FANOUT_SINKS__POSTGRES__USER", "fanout"),
        "password": env("FANOUT_SINKS__POSTGRES__PASSWORD", "fanout"),
        "dbname": env("FANOUT_SINKS__POSTGRES__DBNAME", "fanout"),
    }


@pytest.fixture(scope="module")
def worker_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exposition]:
    """/metrics of `fanout run --sink postgres` after it drained a stream with one poison
    record (so the DLQ counter has a sample) delivered twice (so stale events are counted)."""
    # Imported here, not at the top: the chart and promtool tests of this module then collect
    # and run even while the runtime's test support does not import (work in progress).
    import psycopg
    from confluent_kafka.admin import AdminClient

    from tests.integration.runtime_support import new_pipeline, stream
    from tests.support.debezium import produce_stream
    from tests.support.pipeline import (
        WorkerProcess,
        bootstrap,
        create_topic,
        produce,
        wait_caught_up,
        wait_for,
    )

    hint = "start the local stack with `python3 scripts/devstack up` (docs/DEVSTACK.md)"
    pg = _pg_conninfo()
    try:
        with psycopg.connect(**pg, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        AdminClient({"bootstrap.servers": bootstrap()}).list_topics(timeout=10)
    except Exception as exc:
        pytest.fail(f"the local stack is not answering ({exc}); {hint}", pytrace=False)

    line = new_pipeline(pg, tmp_path_factory.mktemp("observability"))
    create_topic(line.topic, partitions=3)
    messages = stream(300, n_keys=50, seed=14)
    produce_stream(line.topic, messages)
    produce(line.topic, [(b'{"id": 1}', b"{not json")])  # a decode failure: one DLQ record
    produce_stream(line.topic, messages[:150])  # older versions again: skipped as stale
    port = _free_port()
    config = line.config()
    config["metrics"] = {"port": port}
    worker = WorkerProcess("postgres", config, line.workdir).start()
    try:
        wait_for(lambda: _get(port, "/readyz")[0] == 200 or not worker.alive, 60, "/readyz")
        assert worker.alive, f"the worker exited:\n{worker.log()[-3000:]}"
        wait_caught_up(line.group, [line.topic])

        def metrics_with_lag() -> str:
            # The lag gauge is set by the worker loop every 10 s once it holds its partitions.
            page = _get(port, "/metrics")[1]
            return page if "fanout_consumer_lag{" in page else ""

        yield Exposition.parse(wait_for(metrics_with_lag, 30, "the worker to report its lag"))
    finally:
        code = worker.stop()
        with psycopg.connect(**pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{line.schema}" CASCADE')
        deleted = AdminClient({"bootstrap.servers": bootstrap()}).delete_topics(
            [line.topic, line.dlq_topic]
        )
        for future in deleted.values():
            future.exception(timeout=30)  # tidying up: a topic left behind fails nothing
    assert code == 0, f"the worker did not stop cleanly ({code}):\n{worker.log()[-3000:]}"


# --- every named metric is exported ----------------------------------------------------------

# Metrics that only get a sample once something happens that this stream does not cause: a
# retry needs a failed write (a store taken down, which would disturb the other tests sharing
# the stack), an unknown column an event without columns the target has no value for, a
# skipped key-less row a table without a primary key (tests/integration/test_fidelity_keyless.py
# counts those). prometheus-client declares every registered metric (`# HELP`/`# TYPE`) from
# the start, which is what is checked for these.
DECLARED_ONLY = {
    "fanout_retries_total",
    "fanout_columns_unknown_total",
    "fanout_keyless_skipped_total",
}


@pytest.mark.integration
def test_every_metric_the_dashboard_and_the_alerts_name_is_exported_by_a_worker(
    worker_metrics: Exposition,
) -> None:
    named: dict[str, list[str]] = {}
    for where, expr in referenced_queries():
        for name in metric_names(expr):
            named.setdefault(name, []).append(where)
    assert len(named) >= 9, sorted(named)
    missing = {n: w for n, w in named.items() if worker_metrics.declared(n) is None}
    assert not missing, f"named but not exported by the worker: {missing}"
    silent = {
        n: w
        for n, w in named.items()
        if worker_metrics.declared(n) not in DECLARED_ONLY and not worker_metrics.has_samples(n)
    }
    assert not silent, f"exported without a sample after a drained stream: {silent}"


@pytest.mark.integration
def test_every_label_a_query_groups_by_is_on_the_exported_series(
    worker_metrics: Exposition,
) -> None:
    known = worker_metrics.labels() | TARGET_LABELS
    for where, expr in referenced_queries():
        assert grouping_labels(expr) <= known, (where, grouping_labels(expr) - known)
    for panel in panels(dashboard()):
        for target in panel["targets"]:
            legend = set(LEGEND_LABEL.findall(target.get("legendFormat", "")))
            assert legend <= known, (panel["title"], legend - known)


@pytest.mark.integration
def test_the_dashboard_shows_every_metric_the_worker_exports(worker_metrics: Exposition) -> None:
    # prometheus-client adds a `<name>_created` gauge (creation time) per counter and histogram.
    exported = {
        name
        for name in worker_metrics.types
        if name.startswith("fanout_") and not name.endswith("_created")
    }
    shown = {
        worker_metrics.declared(name)
        for _, expr in dashboard_queries(dashboard())
        for name in metric_names(expr)
    }
    assert exported - shown == set(), "add a panel to helm/fanout/dashboards/fanout.json"


# --- the dashboard ConfigMap ------------------------------------------------------------------


def dashboard_configmap(*files: str, sets: tuple[str, ...] = ()) -> Manifest:
    (configmap,) = [
        m
        for m in of_kind(render(*files, sets=list(sets)), "ConfigMap")
        if m["metadata"]["name"].endswith("-dashboard")
    ]
    return configmap


def test_no_dashboard_and_no_rule_by_default() -> None:
    manifests = render("default")
    assert not [m for m in manifests if m["metadata"]["name"].endswith("-dashboard")]
    assert of_kind(manifests, "PrometheusRule") == []


def test_the_dashboard_configmap_carries_the_sidecar_label_and_the_json_as_is() -> None:
    configmap = dashboard_configmap("default", sets=tuple(DASHBOARD_ON))
    meta = configmap["metadata"]
    assert meta["name"] == f"{RELEASE}-fanout-dashboard"
    assert meta["namespace"] == NAMESPACE
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert configmap["data"] == {"fanout.json": DASHBOARD_FILE.read_text().rstrip("\n")}


def test_the_dashboard_label_namespace_and_annotations_are_values() -> None:
    configmap = dashboard_configmap("observability")
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["annotations"]["grafana_folder"] == "Data"
    sets = (
        *DASHBOARD_ON,
        "grafanaDashboard.labelKey=example.com/dashboard",
        "grafanaDashboard.labelValue=fanout",
        "grafanaDashboard.labels.team=data",
        "commonLabels.tier=cdc",
    )
    labels = dashboard_configmap("default", sets=sets)["metadata"]["labels"]
    assert labels["example.com/dashboard"] == "fanout"
    assert "grafana_dashboard" not in labels
    assert labels["team"] == "data"
    assert labels["tier"] == "cdc"


def test_a_numeric_label_value_is_rendered_as_a_string() -> None:
    """`--set grafanaDashboard.labelValue=1` gives Helm a number; a label must be a string."""
    sets = (*DASHBOARD_ON, "grafanaDashboard.labelValue=1")
    assert (
        dashboard_configmap("default", sets=sets)["metadata"]["labels"]["grafana_dashboard"] == "1"
    )


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_the_dashboard_configmap_validates(version: str) -> None:
    kubernetes_validate.validate(dashboard_configmap("observability"), version, strict=True)


def test_the_dashboard_has_a_datasource_and_a_sink_variable_used_by_every_query() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["sink"]["type"] == "query"
    assert variables["sink"]["datasource"]["uid"] == "${datasource}"
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'sink=~"$sink"' in target["expr"], panel["title"]
            assert 'namespace=~"$namespace"' in target["expr"], panel["title"]


def test_the_dashboard_has_the_panels_the_operators_need() -> None:
    board = dashboard()
    by_metric: dict[str, list[str]] = {}
    for panel in panels(board):
        for target in panel["targets"]:
            for name in metric_names(target["expr"]):
                by_metric.setdefault(name, []).append(panel["title"])
    assert {
        "fanout_consumer_lag",
        "fanout_events_consumed_total",
        "fanout_events_written_total",
        "fanout_stale_events_total",
        "fanout_dlq_total",
        "fanout_retries_total",
        "fanout_sink_up",
        "fanout_batch_seconds_bucket",
        "fanout_end_to_end_latency_seconds_bucket",
    } <= set(by_metric)
    exprs = [t["expr"] for p in panels(board) for t in p["targets"]]
    assert any("by (namespace, sink, topic, partition)" in e for e in exprs), "lag per partition"
    assert any("by (sink, op)" in e and "fanout_events_written_total" in e for e in exprs)
    assert any("by (sink, stage)" in e and "fanout_dlq_total" in e for e in exprs)
    quantiles = [e for e in exprs if e.startswith("histogram_quantile(")]
    assert len(quantiles) == 6 and all("by (sink, le)" in e for e in quantiles)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in board["panels"])


# --- the PrometheusRule -----------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@functools.cache
def operations_anchors() -> set[str]:
    return {
        github_anchor(line.lstrip("#"))
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }


def test_the_rule_needs_the_prometheus_operator() -> None:
    error = render_error("default", sets=["prometheusRule.enabled=true"])
    assert "prometheusRule.enabled needs the Prometheus Operator" in error
    assert "monitoring.coreos.com/v1" in error


def test_the_rule_object() -> None:
    manifests = render("observability")
    (rule,) = of_kind(manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == f"{RELEASE}-fanout"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    (group,) = rule["spec"]["groups"]
    assert group["name"] == f"{RELEASE}-fanout.alerts"
    assert set(rule["spec"]) == {"groups"}
    names = [r.get("alert") for r in group["rules"]]
    assert names == [*ALERTS, "FanoutEndToEndLatencyHigh"], "the extra rule comes last"
    for each in group["rules"]:
        assert set(each) <= {"alert", "expr", "for", "labels", "annotations"}
        assert isinstance(each["expr"], str)
        assert re.fullmatch(r"[0-9]+[smh]", each["for"])


def test_each_alert_links_to_its_runbook_section() -> None:
    for values, base in (
        ("default", "docs/OPERATIONS.md"),
        ("observability", "https://git.example.com/data/fanout/-/blob/main/docs/OPERATIONS.md"),
    ):
        sets = RULE_ON if values == "default" else []
        for name, rule in alert_rules(render(values, sets=sets)).items():
            if name not in ALERTS:  # the extra rule of the observability values
                continue
            url = rule["annotations"]["runbook_url"]
            assert url == f"{base}#{name.lower()}"
            assert name.lower() in operations_anchors(), f"no section `### {name}`"
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_runbook_sections_link_to_sections_that_exist() -> None:
    text = OPERATIONS.read_text()
    section = text[text.index("\n## Alerts") :]
    for anchor in re.findall(r"\]\(#([^)]+)\)", section):
        assert anchor in operations_anchors(), anchor


def test_alerts_select_this_release_and_take_their_values() -> None:
    rules = alert_rules(render("observability"))
    selector = (
        f'namespace="{NAMESPACE}", '
        f'job=~"{RELEASE}-fanout-postgres-metrics|{RELEASE}-fanout-clickhouse-metrics"'
    )
    for name in ALERTS:
        assert selector in rules[name]["expr"], name
        assert rules[name]["labels"]["team"] == "data"
        assert rules[name]["annotations"]["dashboard"].endswith("/d/fanout-overview")
    lag = rules["FanoutConsumerLagGrowing"]
    assert "> 50000" in lag["expr"] and "offset 15m" in lag["expr"]
    assert rules["FanoutSinkDown"]["for"] == "10m"
    assert rules["FanoutSinkDown"]["labels"]["severity"] == "page"
    assert rules["FanoutWorkerDown"]["labels"]["severity"] == "critical"
    assert rules["FanoutDeadLetters"]["expr"].rstrip().endswith(") > 5")
    assert rules["FanoutDeadLetters"]["for"] == "1m"
    assert "> 10)" in rules["FanoutNoProgress"]["expr"]


def test_a_custom_selector_replaces_the_default_one() -> None:
    sets = [*RULE_ON, 'prometheusRule.selector=cluster="eu1"\\, app="fanout"']
    for name, rule in alert_rules(render("default", sets=sets)).items():
        assert '{cluster="eu1", app="fanout"}' in rule["expr"], name
        assert "job=~" not in rule["expr"]


def test_an_alert_can_be_turned_off() -> None:
    sets = [*RULE_ON, "prometheusRule.alerts.noProgress.enabled=false"]
    assert set(alert_rules(render("default", sets=sets))) == set(ALERTS) - {"FanoutNoProgress"}


# --- promtool ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def promtool() -> str:
    """scripts/install-promtool's binary (a build of several minutes the first time)."""
    try:
        out = subprocess.run(
            [str(REPO / "scripts" / "install-promtool")],
            check=True,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        stderr = exc.stderr if isinstance(exc.stderr, str) else ""
        pytest.skip(f"promtool could not be built here (scripts/install-promtool): {stderr[-800:]}")
    return out.stdout.strip().splitlines()[-1]


def rule_file(tmp_path: Path, manifests: list[Manifest]) -> Path:
    """The PrometheusRule's groups as a Prometheus rule file."""
    path = tmp_path / "fanout-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(manifests)}, sort_keys=False))
    return path


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("values", ["default", "observability"])
def test_promtool_check_rules(promtool: str, tmp_path: Path, values: str) -> None:
    sets = RULE_ON if values == "default" else []
    path = rule_file(tmp_path, render(values, sets=sets))
    result = run_promtool(promtool, "check", "rules", "--lint-fatal", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# The labels a ServiceMonitor gives the PostgreSQL sink's pod, and those of a per-sink alert.
TARGET = {"namespace": NAMESPACE, "job": POSTGRES_JOB, "pod": POD_NAME, "instance": "10.0.0.7:9108"}
SINK = {"namespace": NAMESPACE, "sink": "postgres"}


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    """An input series scraped from the PostgreSQL sink's pod."""
    rendered = ", ".join(f'{k}="{v}"' for k, v in {**TARGET, **labels}.items())
    return {"series": f"{metric}{{{rendered}}}", "values": values}


def expect(name: str, at: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    """An `alert_rule_test`: the alerts firing at `at` (none given: none may fire)."""
    return {"eval_time": at, "alertname": name, "exp_alerts": list(alerts)}


# What each alert says once its templates are rendered (promtool compares every annotation).
def sink_down() -> dict[str, Any]:
    return {
        "exp_labels": {**TARGET, "sink": "postgres", "severity": "critical"},
        "exp_annotations": {
            "summary": f"fanout cannot write to postgres (pod {POD_NAME})",
            "description": f"Pod {POD_NAME} has found its postgres store unavailable for 5m: its "
            "partitions are paused and it retries with backoff. Nothing is lost or "
            "dead-lettered, but the sink falls behind.",
            "runbook_url": "docs/OPERATIONS.md#fanoutsinkdown",
        },
    }


def dead_letters(stage: str, records: int) -> dict[str, Any]:
    return {
        "exp_labels": {**SINK, "stage": stage, "severity": "warning"},
        "exp_annotations": {
            "summary": f"fanout sent records of postgres to the DLQ (stage {stage})",
            "description": f"About {records} records failed at stage {stage} for sink postgres "
            "within 10m and went to its dead-letter topic; their neighbours were written.",
            "runbook_url": "docs/OPERATIONS.md#fanoutdeadletters",
        },
    }


def worker_down() -> dict[str, Any]:
    return {
        "exp_labels": {**TARGET, "sink": "postgres", "severity": "critical"},
        "exp_annotations": {
            "summary": f"fanout worker {POD_NAME} (postgres) is not running",
            "description": f"Prometheus could not scrape {POD_NAME} (job {POSTGRES_JOB}) for "
            "most of the last 5m. A worker that keeps exiting is usually misconfigured: a "
            "setting or credential the sink refuses makes it exit with code 2 (log line "
            '"invalid configuration"), and Kubernetes restarts it in a loop.',
            "runbook_url": "docs/OPERATIONS.md#fanoutworkerdown",
        },
    }


def no_progress(lag: str) -> dict[str, Any]:
    return {
        "exp_labels": {**SINK, "severity": "critical"},
        "exp_annotations": {
            "summary": f"fanout sink postgres makes no progress: lag {lag}",
            "description": f"Sink postgres (namespace data) has {lag} records of lag but "
            "consumed nothing in 10m.",
            "runbook_url": "docs/OPERATIONS.md#fanoutnoprogress",
        },
    }


def lag_growing(lag: str) -> dict[str, Any]:
    return {
        "exp_labels": {**SINK, "severity": "warning"},
        "exp_annotations": {
            "summary": f"fanout sink postgres is falling behind: lag {lag} and growing",
            "description": "The consumer group of sink postgres (namespace data) is more than "
            "10000 records behind and further behind than 10m ago: it consumes slower than the "
            "topics grow.",
            "runbook_url": "docs/OPERATIONS.md#fanoutconsumerlaggrowing",
        },
    }


def lag(values: str, partition: str = "0", **labels: str) -> dict[str, str]:
    return series(
        "fanout_consumer_lag", values, sink="postgres", topic="t", partition=partition, **labels
    )


# Default thresholds: sink down for 5m; DLQ window 10m, threshold 0, at once; worker down:
# under half the scrapes of 5m, for 5m; no progress: lag > 0, nothing consumed in 10m, for 5m;
# lag growing: above 10000 and above its value 10m ago, for 5m. One sample a minute.
UNIT_TESTS: list[dict[str, Any]] = [
    {  # the store goes away at 2m: pending from 2m, firing from 7m
        "input_series": [series("fanout_sink_up", "1 1 0x12", sink="postgres")],
        "alert_rule_test": [
            expect("FanoutSinkDown", "6m"),
            expect("FanoutSinkDown", "8m", sink_down()),
        ],
    },
    {  # a store that stays up
        "input_series": [series("fanout_sink_up", "1x15", sink="postgres")],
        "alert_rule_test": [expect("FanoutSinkDown", "12m")],
    },
    {  # the first DLQ record of a process: the counter appears at 5m, with value 1
        "input_series": [series("fanout_dlq_total", "_x5 1x20", sink="postgres", stage="decode")],
        "alert_rule_test": [
            expect("FanoutDeadLetters", "4m"),
            expect("FanoutDeadLetters", "6m", dead_letters("decode", 1)),
            # No record since: resolved once the window has passed.
            expect("FanoutDeadLetters", "17m"),
        ],
    },
    {  # a counter that existed for long goes from 3 to 5 at 16m
        "input_series": [series("fanout_dlq_total", "3x15 5x20", sink="postgres", stage="write")],
        "alert_rule_test": [
            expect("FanoutDeadLetters", "15m"),
            expect("FanoutDeadLetters", "18m", dead_letters("write", 2)),
        ],
    },
    {  # a crash loop: scraped now and then, down most of the time
        "input_series": [series("up", "0 0 0 1 0 0 0 0 1 0 0 0 0 1 0 0")],
        "alert_rule_test": [
            expect("FanoutWorkerDown", "3m"),
            expect("FanoutWorkerDown", "11m", worker_down()),
        ],
    },
    {  # a worker that runs
        "input_series": [series("up", "1x15")],
        "alert_rule_test": [expect("FanoutWorkerDown", "12m")],
    },
    {  # lag, and the consumed counter stands still: firing 5m after it starts
        "input_series": [
            lag("40x20"),
            series("fanout_events_consumed_total", "100x20", sink="postgres"),
        ],
        "alert_rule_test": [
            expect("FanoutNoProgress", "3m"),
            expect("FanoutNoProgress", "6m", no_progress("40")),
        ],
    },
    {  # lag, and a worker that has consumed nothing since it started (no counter at all)
        "input_series": [lag("40x20")],
        "alert_rule_test": [expect("FanoutNoProgress", "6m", no_progress("40"))],
    },
    {  # lag while consuming: progress
        "input_series": [
            lag("40x20"),
            series("fanout_events_consumed_total", "100+10x20", sink="postgres"),
        ],
        "alert_rule_test": [expect("FanoutNoProgress", "12m")],
    },
    {  # lag growing 3000 a minute on two partitions, one of them reported by two pods during
        # a rebalance (counted once): above 10000 from 4m, above its value 10m ago from 10m,
        # firing from 15m
        "input_series": [
            lag("0+1000x30", partition="0"),
            lag("0+2000x30", partition="1"),
            lag(
                "0+2000x30",
                partition="1",
                pod=f"{RELEASE}-fanout-postgres-7d9f-fghij",
                instance="10.0.0.8:9108",
            ),
        ],
        "alert_rule_test": [
            expect("FanoutConsumerLagGrowing", "12m"),
            expect("FanoutConsumerLagGrowing", "16m", lag_growing("48k")),
        ],
    },
    {  # a large but steady lag is not growing
        "input_series": [lag("50000x30")],
        "alert_rule_test": [expect("FanoutConsumerLagGrowing", "20m")],
    },
    {  # another release's series (other namespace, other job) never fire this release's alerts
        "input_series": [
            series("fanout_sink_up", "0x15", sink="postgres", namespace="other"),
            series("up", "0x15", job="other-fanout-postgres-metrics"),
        ],
        "alert_rule_test": [expect("FanoutSinkDown", "12m"), expect("FanoutWorkerDown", "12m")],
    },
]


def test_promtool_unit_tests_fire_each_alert_when_it_should(promtool: str, tmp_path: Path) -> None:
    rules = rule_file(tmp_path, render("default", sets=RULE_ON))
    tests = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", **case} for case in UNIT_TESTS],
    }
    path = tmp_path / "fanout-rules.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = run_promtool(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {check["alertname"] for case in UNIT_TESTS for check in case["alert_rule_test"]}
    assert tested == set(ALERTS)
