"""The example values under helm/fanout/examples/: each renders, its objects validate, every
sink's config.yaml loads with the runtime's settings model with its secrets read from the
mounted Secret, and docs/DEPLOYMENT.md creates exactly the Secret keys the example reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.helm.chart import CHART, REPO, component, config_of, of_kind, render, workloads
from tests.helm.test_render import CRD_GROUPS, KUBE_VERSIONS, SECRETS_DIR, secret_settings
from tests.helm.test_runtime_contract import write_config

settings_module = pytest.importorskip("fanout.settings")

EXAMPLES = sorted(str(path) for path in (CHART / "examples").glob("*.yaml"))
SECURED = str(CHART / "examples" / "secured-values.yaml")
DEPLOYMENT_DOC = REPO / "docs" / "DEPLOYMENT.md"


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("example", EXAMPLES)
def test_each_example_renders_objects_that_validate(example: str, version: str) -> None:
    manifests = render(example)
    assert workloads(manifests)
    for manifest in manifests:
        if manifest["apiVersion"].split("/")[0] not in CRD_GROUPS:
            kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("example", EXAMPLES)
def test_each_example_config_loads_with_the_runtime(example: str, tmp_path: Path) -> None:
    manifests = render(example)
    for workload in workloads(manifests):
        settings = settings_module.load_settings(write_config(manifests, workload, tmp_path))
        settings_module.require_subscription(settings)
        assert settings.sinks.enabled() == [component(workload)]


def test_the_secured_example_reaches_every_store_over_tls_with_secrets_from_files(
    tmp_path: Path,
) -> None:
    manifests = render(SECURED)
    assert of_kind(manifests, "Secret") == []  # all in the existing Secret
    loaded = {
        component(w): settings_module.load_settings(write_config(manifests, w, tmp_path))
        for w in workloads(manifests)
    }
    assert set(loaded) == {"postgres", "elasticsearch", "clickhouse"}
    for settings in loaded.values():
        kafka = settings.kafka
        assert (kafka.security_protocol, kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
        assert kafka.sasl_password is not None
        assert kafka.ssl_ca_location == ca_of(settings)
    pg = loaded["postgres"].sinks.postgres
    assert (pg.sslmode, pg.sslrootcert) == ("verify-full", ca_of(loaded["postgres"]))
    assert pg.password is not None
    es = loaded["elasticsearch"].sinks.elasticsearch
    assert es.api_key is not None and es.password is None
    assert all(host.startswith("https://") for host in es.hosts)
    assert es.ca_certs == ca_of(loaded["elasticsearch"])
    ch = loaded["clickhouse"].sinks.clickhouse
    assert (ch.effective_mode, ch.secure) == ("server", True)
    assert ch.ca_cert == ca_of(loaded["clickhouse"])
    assert ch.password is not None


def ca_of(settings: Any) -> str:
    """ca.crt of the Secret as mounted for this pod (write_config mounts it under tmp_path)."""
    return str(Path(settings.kafka.sasl_password_file).with_name("ca.crt"))


def keys_the_example_reads() -> set[str]:
    """Secret keys named by the …_file settings and file paths of the secured example."""
    manifests = render(SECURED)
    keys = set()
    for sink in ("postgres", "elasticsearch", "clickhouse"):
        config = config_of(manifests, sink)
        text = yaml.safe_dump(config)
        keys |= set(re.findall(rf"{re.escape(SECRETS_DIR)}/([\w.-]+)", text))
        assert all(str(path).startswith(SECRETS_DIR) for path in secret_settings(config).values())
    return keys


def test_the_deployment_guide_creates_exactly_the_secret_keys_the_example_reads() -> None:
    text = DEPLOYMENT_DOC.read_text()
    match = re.search(
        r"kubectl -n \S+ create secret generic fanout-credentials(.*?)```", text, re.S
    )
    assert match, "docs/DEPLOYMENT.md: no `kubectl … create secret generic fanout-credentials`"
    created = set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", match.group(1)))
    assert created == keys_the_example_reads()
    assert "helm/fanout/examples/secured-values.yaml" in text
