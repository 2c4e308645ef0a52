"""`helm lint --strict` on the defaults and on every ci/*-values.yaml value set."""

from __future__ import annotations

import pytest

from tests.helm.chart import CHART, CI_VALUES, run_helm

VALUE_SETS = sorted(path.name for path in CI_VALUES.glob("*-values.yaml"))


def test_the_ci_value_sets_cover_each_sink_alone_everything_and_the_options() -> None:
    expected = {"default", "postgres", "elasticsearch", "clickhouse", "clickhouse-embedded", "full"}
    expected |= {"keda-sasl", "pod-extras"}
    assert {name.removesuffix("-values.yaml") for name in VALUE_SETS} >= expected


@pytest.mark.parametrize("values", [None, *VALUE_SETS])
def test_lint_strict(values: str | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values:
        args += ["-f", str(CI_VALUES / values)]
    result = run_helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
