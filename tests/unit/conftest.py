"""Unit tests see only the settings they set: no ``FANOUT_*`` variable of the shell (a shell
where ``eval "$(scripts/devstack env)"`` ran has a dozen) reaches ``load_settings`` here."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_fanout_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("FANOUT_"):
            monkeypatch.delenv(name)
