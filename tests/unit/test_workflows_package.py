"""The `workflows` package imports no workflow, and keeps no state a workflow run could change:
Temporal's sandbox imports a workflow's modules afresh for every run it starts; Baton's workers
run workflows outside it (`workers.main.WORKFLOW_RUNNER`), so every run shares these modules."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

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


# Workers run workflows outside Temporal's sandbox (workers.main.WORKFLOW_RUNNER): the package's
# modules are imported once per worker, not once per workflow run, so no run may change their state.
# Module or class level containers are read-only tables, looked up or spread as keyword arguments.
TABLES = {
    "hold_client.WATCH",
    "promotion.ROLLOUT_STAGE",
    "record.ICONS",
    "registry.WORKFLOWS",
    "rollout.steps.QUICK",
    "rollout.sync_waiter.SYNCED_BY",
    "telling.DEPLOYMENT_STATES",
}
MUTATORS = {"append", "extend", "insert", "pop", "popitem", "clear", "update", "setdefault"}
MUTATORS |= {"add", "discard", "remove", "sort", "reverse", "__setitem__", "__delitem__"}


def modules() -> list[ModuleType]:
    return [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(workflows.__path__, "workflows.")
    ]


def defined(module: ModuleType) -> Iterator[tuple[str, object]]:
    """Every name `module` assigns at its top level or in a class body, with its value."""
    tree = ast.parse(Path(module.__file__ or "").read_text())
    for node in tree.body:
        owner: object = module
        body = [node]
        if isinstance(node, ast.ClassDef):
            owner, body = getattr(module, node.name), node.body
        prefix = f"{node.name}." if isinstance(node, ast.ClassDef) else ""
        for statement in body:
            targets: list[ast.expr] = []
            if isinstance(statement, ast.Assign):
                targets = statement.targets
            elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                targets = [statement.target]
            for target in targets:
                if isinstance(target, ast.Name) and not target.id.startswith("__"):
                    yield prefix + target.id, getattr(owner, target.id)


def test_the_package_holds_no_mutable_state_but_read_only_tables() -> None:
    containers = {
        f"{module.__name__.removeprefix('workflows.')}.{name}"
        for module in modules()
        for name, value in defined(module)
        if isinstance(value, list | dict | set | bytearray)
    }
    assert containers == TABLES


def test_no_workflow_code_changes_a_table_or_a_global() -> None:
    names = {table.rsplit(".", 1)[1] for table in TABLES}
    changes = []
    for module in modules():
        for node in ast.walk(ast.parse(Path(module.__file__ or "").read_text())):
            if isinstance(node, ast.Global):
                changes.append(f"{module.__name__}: global {', '.join(node.names)}")
            changed = None
            if isinstance(node, ast.Subscript) and not isinstance(node.ctx, ast.Load):
                changed = node.value  # TABLE[key] = value, del TABLE[key]
            elif isinstance(node, ast.Attribute) and node.attr in MUTATORS:
                changed = node.value  # TABLE.update(...)
            if isinstance(changed, ast.Name) and changed.id in names:
                changes.append(f"{module.__name__}:{node.lineno} changes {changed.id}")
    assert changes == []
