"""`helm lint --strict` on the defaults, every ci/*-values.yaml value set and every example."""

from __future__ import annotations

import pytest

from tests.helm.chart import CHART, CI_VALUES, run_helm

VALUE_SETS = sorted(path.name for path in CI_VALUES.glob("*-values.yaml"))
EXAMPLES = sorted(str(path) for path in (CHART / "examples").glob("*.yaml"))


def test_the_ci_value_sets_cover_each_sink_alone_everything_and_the_options() -> None:
    expected = {"default", "postgres", "elasticsearch", "clickhouse", "clickhouse-embedded", "full"}
    expected |= {"keda-sasl", "pod-extras"}
    assert {name.removesuffix("-values.yaml") for name in VALUE_SETS} >= expected


@pytest.mark.parametrize("values", [None, *VALUE_SETS, *EXAMPLES])
def test_lint_strict(values: str | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values:
        args += ["-f", str(CI_VALUES / values)]  # an absolute path (an example) stays itself
    result = run_helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
