"""Workflow tests run their workers in this process: the store is BATON_HOME's (`home`), so no
test depends on a registry it did not start (tests/e2e runs the registry-backed store)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def home_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """BATON_STORE=home for every Settings a test builds without naming its store."""
    monkeypatch.setenv("BATON_STORE", "home")
