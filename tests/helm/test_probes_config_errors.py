"""Probes against a worker stopped by a configuration error: it fails /healthz and /readyz for
``configErrorExitS`` and then exits 2 by itself. Neither liveness nor the startup probe may end
the container first, or the operator sees a failed probe and a restart instead of the exit
code and the log line that name the cause."""

from __future__ import annotations

from typing import Any

from tests.helm.chart import component, config_of, container, render, workloads


def budget_s(probe: dict[str, Any]) -> int:
    """How long the probe fails before the kubelet restarts the container."""
    return int(probe["periodSeconds"]) * int(probe["failureThreshold"])


def exit_s(manifests: list[dict[str, Any]], sink: str) -> float:
    return float(config_of(manifests, sink)["sinks"][sink].get("config_error_exit_s", 180))


def test_liveness_and_startup_outlast_every_sinks_config_error_exit() -> None:
    manifests = render("full")
    for workload in workloads(manifests):
        probes, sink = container(workload), component(workload)
        for name in ("livenessProbe", "startupProbe"):
            probe = probes[name]
            # a period more than the wait: the worker's own exit comes first
            assert budget_s(probe) >= exit_s(manifests, sink) + probe["periodSeconds"], name


def test_a_longer_config_error_wait_raises_the_liveness_threshold_a_shorter_one_keeps_it() -> None:
    sets = ["sinks.postgres.configErrorExitS=600", "sinks.elasticsearch.configErrorExitS=0"]
    manifests = render("full", sets=sets)
    liveness = {component(w): container(w)["livenessProbe"] for w in workloads(manifests)}
    assert budget_s(liveness["postgres"]) >= 600 + 15
    assert liveness["postgres"]["failureThreshold"] == 600 // 15 + 2
    assert liveness["elasticsearch"]["failureThreshold"] == 4  # the chart's value suffices
    startup = container(workloads(manifests)[0])["startupProbe"]
    assert startup["failureThreshold"] == 180  # 30 minutes already outlast 600 s
