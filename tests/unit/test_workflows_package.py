"""The `workflows` package imports no workflow: Temporal's sandbox imports a workflow's modules
afresh for every run it starts, so what a workflow's package imports, every run pays for."""

from __future__ import annotations

import subprocess
import sys

import pytest

import workflows
from baton.tools import PROJECT_ROOT
from workflows.registry import WORKFLOWS

OTHERS = ["change", "batch", "pipelines", "lane", "hold", "images", "reconcile", "promotion"]


def imported_by(module: str) -> set[str]:
    """The `workflows` modules a fresh interpreter holds after importing `module`."""
    code = f"import sys, {module}; print(*(m for m in sys.modules if m.startswith('workflows')))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


def test_a_rollout_imports_no_other_workflow() -> None:
    loaded = imported_by("workflows.rollout")
    assert "workflows.rollout.workflow" in loaded
    assert loaded.isdisjoint(f"workflows.{name}" for name in OTHERS), sorted(loaded)


def test_importing_the_package_imports_no_workflow() -> None:
    assert imported_by("workflows") == {"workflows"}


def test_the_package_still_lists_every_workflow_for_workers() -> None:
    assert workflows.WORKFLOWS is WORKFLOWS
    assert {flow.__name__ for flow in WORKFLOWS} >= {"ChangeWorkflow", "EnvironmentRollout"}


def test_a_name_the_package_does_not_have_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'ChangeWorkflows'"):
        workflows.ChangeWorkflows  # noqa: B018
