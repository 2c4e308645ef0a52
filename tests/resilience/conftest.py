"""The resilience suite runs on the local stack like tests/integration/, with its fixtures.

The soak tests are marked ``slow`` (``python -m pytest -m slow tests/resilience``); the fast
subset runs in the default suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# The stack's fixtures, shared with tests/integration/.
from tests.integration.conftest import (  # noqa: F401
    clickhouse,
    endpoints,
    es,
    kafka_admin,
    kafka_bootstrap,
    pg,
    pg_conninfo,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)
