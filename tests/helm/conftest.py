"""Chart and image tests need helm: install it (idempotent, cached) via scripts/install-helm."""

from __future__ import annotations

import pytest

from tests.helm.chart import helm_path


@pytest.fixture(scope="session", autouse=True)
def helm() -> str:
    return helm_path()
