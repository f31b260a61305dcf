"""The PR check of a Kustomize app: its kustomization builds, validates, and can be bundled."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.checks import kustomize_build
from baton.logs import LogStore
from tests.fixtures.kustomize import OVERLAY, write


@pytest.fixture
def logs(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path / "logs")


def test_a_layout_with_base_component_generator_and_both_patch_kinds_passes(kustomize_app, logs):
    result = kustomize_build(kustomize_app / OVERLAY, root=kustomize_app, logs=logs)
    assert result.passed, result.summary
    assert result.summary == "4 objects rendered, all valid"
    assert "ConfigMap/web-config-" in result.excerpt  # generated, with its hash suffix


def test_a_missing_patch_file_fails_in_kustomizes_words(kustomize_app, logs):
    (kustomize_app / OVERLAY / "replicas.json").unlink()
    result = kustomize_build(kustomize_app / OVERLAY, root=kustomize_app, logs=logs)
    assert not result.passed
    assert result.summary.startswith(f"kustomize build of {kustomize_app / OVERLAY} failed: ")
    assert "\n" not in result.summary
    assert "replicas.json: no such file or directory" in result.excerpt


def test_a_component_without_a_kustomization_fails_naming_it(kustomize_app, logs):
    (kustomize_app / "deploy/components/tracing/kustomization.yaml").unlink()
    result = kustomize_build(kustomize_app / OVERLAY, root=kustomize_app, logs=logs)
    assert not result.passed
    assert result.summary == (
        "deploy/components/tracing (reached from deploy/overlays/production) has no "
        "kustomization.yaml: add one or fix the reference"
    )


def test_a_kustomization_outside_the_repository_fails_before_any_merge(tmp_path, logs):
    root = write(tmp_path / "app", {"deploy/kustomization.yaml": "resources: [../../shared]\n"})
    write(tmp_path / "shared", {"kustomization.yaml": "resources: []\n"})
    result = kustomize_build(root / "deploy", root=root, logs=logs)
    assert not result.passed
    assert "outside the repository" in result.summary
