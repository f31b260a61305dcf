"""The cluster adapters' tests share a fake Kubernetes API server and Flux's adapter on it; the
Kustomize tests share an app repository laid out as in tests/fixtures/kustomize.py. The store is
BATON_HOME's (`home`) unless a test names another: none depends on a registry it did not start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.cluster.kubernetes import FluxCluster
from tests.fakes.kube_api import FakeKubeAPI
from tests.fixtures.kustomize import write_layout


@pytest.fixture(autouse=True)
def home_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """BATON_STORE=home for every Settings a test builds without naming its store."""
    monkeypatch.setenv("BATON_STORE", "home")


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    """A fake API server with the `staging` namespace the apps deploy to."""
    with FakeKubeAPI() as api:
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "staging"}})
        yield api


@pytest.fixture
def flux_cluster(api: FakeKubeAPI, tmp_path: Path) -> FluxCluster:
    return FluxCluster.connect(api.write_kubeconfig(tmp_path / "kubeconfig"), "fake")


@pytest.fixture
def kustomize_app(tmp_path: Path) -> Path:
    """A Kustomize app's repository: base, component, overlay with both patch kinds."""
    return write_layout(tmp_path / "app")
