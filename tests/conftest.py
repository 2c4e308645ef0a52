"""Suite-wide pytest set-up.

Tests under tests/integration/ need the real local services (`scripts/devstack up`); they are
marked `integration` automatically, so `pytest -m 'not integration'` runs without services.
"""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs the local stack (scripts/devstack up); set automatically"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)
