"""One error hierarchy: each class says whether a retry can help, activities report errors typed by
their class, and the type names workflows hand to Temporal are classes of that hierarchy."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import api
import baton
import cli
import workflows
from activities.errors import typed_errors
from baton.errors import (
    BatonError,
    ClusterError,
    ConfigurationError,
    DecisionRefused,
    InfrastructureError,
    NotAwaitingApproval,
    NotFrozen,
    RequestError,
    non_retryable,
)
from baton.forges.base import ForgeError, ForgeRefusal, HeadChanged
from baton.forges.http import RateLimited, TokenRejected
from baton.policy import PolicyViolation
from baton.tools import PROJECT_ROOT

SOURCE_DIRS = ["activities", "api", "baton", "bench", "cli", "examples", "scripts", "workers"]
# The classes the workflows' retry policies name: `non_retryable(DeployConfigError, ForgeRefusal)`.
POLICY_CLASSES = {
    "RETRY": ["DeployConfigError", "ForgeRefusal"],
    "POLL": ["SyncFailed", "ClusterConfigError"],
    "CHECK_RETRY": ["CheckConfigError"],
}


def modules(package: ModuleType) -> Iterator[ModuleType]:
    """`package` and every module under it, imported (`__main__` modules run code: skipped)."""
    yield package
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        if not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


def error_classes() -> dict[str, type[BatonError]]:
    """Every class of the hierarchy by name, once every module that may define one is loaded."""
    for package in (baton, api, cli):
        for _ in modules(package):
            pass
    found: dict[str, type[BatonError]] = {}
    pending: list[type[BatonError]] = [BatonError]
    while pending:
        cls = pending.pop()
        assert found.setdefault(cls.__name__, cls) is cls, f"two error classes named {cls.__name__}"
        pending.extend(cls.__subclasses__())
    return found


def retry_policies() -> dict[str, RetryPolicy]:
    """The RetryPolicy objects the workflows define, wherever in workflows/ they live."""
    policies = {}
    for module in modules(workflows):
        for name, value in vars(module).items():
            if isinstance(value, RetryPolicy):
                policies[f"{module.__name__}.{name}"] = value
    return policies


def python_sources() -> Iterator[Path]:
    for top in SOURCE_DIRS:
        yield from (PROJECT_ROOT / top).rglob("*.py")
    yield from (PROJECT_ROOT / "workflows").rglob("*.py")


def application_errors(path: Path) -> Iterator[ast.Call]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name == "ApplicationError":
                yield node


# The hierarchy


def test_each_error_class_name_is_one_class_so_a_temporal_type_names_one_error() -> None:
    assert {"HeadChanged", "SyncFailed", "PolicyViolation", "WebhookRejected"} <= set(
        error_classes()
    )


@pytest.mark.parametrize(
    ("category", "retryable"),
    [
        (ConfigurationError, False),
        (RequestError, False),
        (DecisionRefused, False),
        (ForgeError, True),
        (ClusterError, True),
        (InfrastructureError, True),
    ],
)
def test_categories_say_whether_a_retry_can_help(category: type[BatonError], retryable) -> None:
    assert category.retryable is retryable


def test_what_workflow_validators_refuse_are_decisions_no_retry_can_change() -> None:
    for refusal in (NotAwaitingApproval, NotFrozen, PolicyViolation):
        assert issubclass(refusal, DecisionRefused) and not refusal.retryable


def test_non_retryable_names_the_classes_and_subclasses_a_retry_cannot_help() -> None:
    names = non_retryable(ForgeError)
    assert {"HeadChanged", "NotMergeable", "TokenRejected", "ForgeRefusal"} <= set(names)
    assert not {"ForgeError", "RateLimited", "ForgeUnavailable"} & set(names)
    assert names == sorted(names)


def test_forge_refusals_are_the_protocol_errors_every_adapter_raises() -> None:
    assert non_retryable(ForgeRefusal) == [
        "BranchNotFound",
        "ForgeRefusal",
        "HeadChanged",
        "MergeMethodRefused",
        "NoCommitsBetween",
        "NotMergeable",
        "PullRequestClosed",
        "PullRequestNotFound",
        "RepositoryNotFound",
        "RequiredChecksNotPassing",
        "RevisionNotFound",
    ]


def test_the_names_for_the_workflows_do_not_depend_on_which_adapters_are_loaded() -> None:
    """A worker that never loaded an adapter module hands Temporal the same lists."""
    classes = error_classes()  # every module loaded here
    loaded = {
        policy: non_retryable(*(classes[name] for name in names))
        for policy, names in POLICY_CLASSES.items()
    }
    script = (
        "import json, sys; from baton.errors import *; from baton.forges.base import *; "
        "print(json.dumps({p: non_retryable(*(globals()[n] for n in names)) "
        "for p, names in json.loads(sys.argv[1]).items()}))"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", script, json.dumps(POLICY_CLASSES)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    )
    assert json.loads(fresh.stdout) == loaded


# Workflows and Temporal


def test_every_name_the_workflows_retry_policies_list_is_a_class_no_retry_can_help() -> None:
    classes = error_classes()
    listed = {
        (where, name)
        for where, policy in retry_policies().items()
        for name in policy.non_retryable_error_types or []
    }
    assert listed, "no RetryPolicy with non_retryable_error_types found under workflows/"
    unknown = sorted(f"{where}: {name}" for where, name in listed if name not in classes)
    assert unknown == [], "not an error class in baton.errors' hierarchy"
    retryable = sorted(f"{where}: {name}" for where, name in listed if classes[name].retryable)
    assert retryable == [], "listed as non-retryable, but the class says a retry can help"


def test_every_application_error_raised_outside_tests_has_a_type() -> None:
    untyped = [
        f"{path.relative_to(PROJECT_ROOT)}:{call.lineno}"
        for path in python_sources()
        for call in application_errors(path)
        if not any(k.arg == "type" for k in call.keywords)
    ]
    assert untyped == []


def test_application_error_types_written_as_text_name_error_classes() -> None:
    classes = error_classes()
    unknown = [
        f"{path.relative_to(PROJECT_ROOT)}:{call.lineno}: {k.value.value}"
        for path in python_sources()
        for call in application_errors(path)
        for k in call.keywords
        if k.arg == "type" and isinstance(k.value, ast.Constant) and k.value.value not in classes
    ]
    assert unknown == []


def test_every_activity_reports_baton_errors_typed_by_their_class() -> None:
    untyped = []
    for path in (PROJECT_ROOT / "activities").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                decorators = {ast.unparse(d).split("(")[0] for d in node.decorator_list}
                if "activity.defn" in decorators and "typed_errors" not in decorators:
                    untyped.append(f"{path.relative_to(PROJECT_ROOT)}: {node.name}")
    assert untyped == []


# Activities


@activity.defn
@typed_errors
def merge(number: int) -> str:
    raise HeadChanged("gitops", number, "a" * 40, "b" * 40)


@activity.defn
@typed_errors
def list_statuses(repo: str) -> list:
    raise RateLimited(f"github rate limit reached on GET /repos/{repo}", 429, wait_s=90)


@activity.defn
@typed_errors
async def read_token(repo: str) -> None:
    raise TokenRejected("token rejected by github: check forge.credentials.token_env", 401)


def test_an_activity_reports_a_refusal_under_its_class_name_and_stops_retrying() -> None:
    with pytest.raises(ApplicationError) as info:
        ActivityEnvironment().run(merge, 7)
    error = info.value
    assert error.type == "HeadChanged" and error.non_retryable
    assert error.message == "head of gitops#7 is bbbbbbbbbbbb, not aaaaaaaaaaaa: " + (
        "re-read the pull request and its reviews before merging"
    )


def test_a_rate_limit_is_retried_after_the_wait_the_forge_asked_for() -> None:
    with pytest.raises(ApplicationError) as info:
        ActivityEnvironment().run(list_statuses, "acme/app")
    error = info.value
    assert error.type == "RateLimited" and not error.non_retryable
    assert error.next_retry_delay == timedelta(seconds=90)


async def test_async_activities_report_baton_errors_typed_too() -> None:
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(read_token, "acme/app")
    assert info.value.type == "TokenRejected" and info.value.non_retryable
