"""Long tests ahead, the default for an app with long tests, on the embedded stack: the PR
pipeline starts them on the PR's head, and CI of the merge commit (the same tree) takes their
result and the PR's checks instead of running them again; with `ci.long_tests: merge`, CI of the
merge runs them. Real forge merge, git trees, Temporal, registry and engine."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from baton.batches import LONG_TESTS_CONTEXT
from tests.e2e.stack import E2EStack, running_stack
from tests.e2e.test_change_flow import gate_is

pytestmark = pytest.mark.docker


def long_tests_at_the_merge(config: dict) -> None:
    app = next(a for a in config["apps"] if a["name"] == "sample-app")
    app["ci"] = {"long_tests": "merge"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[E2EStack]:
    """The embedded stack with examples/baton.yaml as it is: sample-app has long tests and no
    `ci.long_tests`."""
    with running_stack(tmp_path_factory.mktemp("baton"), base_image) as stack:
        yield stack


@pytest.fixture
def stack_at_merge(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[E2EStack]:
    with running_stack(
        tmp_path_factory.mktemp("baton"), base_image, long_tests_at_the_merge
    ) as stack:
        yield stack


def tree(stack: E2EStack, commit: str) -> str:
    repo = stack.forge().repo_path("sample-app")
    done = subprocess.run(
        ["git", "rev-parse", f"{commit}^{{tree}}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_ci_of_the_merge_takes_the_long_tests_the_pr_started(stack: E2EStack) -> None:
    change, pr = stack.open_pr("e2e-ahead")
    detail = stack.wait(change, lambda d: d.change.state == "awaiting-merge")
    assert detail.change.reason is None, detail.change.reason

    merge = stack.forge("bob").merge_pull_request("sample-app", pr.number, pr.head_sha)
    detail = stack.wait(change, gate_is("approval", "staging"))

    assert merge != pr.head_sha and tree(stack, merge) == tree(stack, pr.head_sha)
    ci = next(s for s in detail.change.timeline if s.name.startswith("integrate"))
    checks = {c.name: c for c in ci.checks}
    assert checks["long_test"].passed
    assert checks["long_test"].summary.endswith(
        f"at {pr.head_sha[:12]}; run beside its PR pipeline, same tree as {merge[:12]}"
    )
    assert checks["long_test"].log_ref is not None  # the run's own log, kept in the registry
    reused = f"passed on the PR's head {pr.head_sha[:12]}, same tree as {merge[:12]}"
    assert all(checks[name].summary.endswith(reused) for name in ("lint", "test")), checks
    # CI built, tested and published its own commit's image all the same.
    assert detail.change.artifact is not None and detail.change.artifact.commit == merge
    assert stack.registry_digest("sample-app", merge) == detail.change.artifact.image_digest


def test_with_long_tests_at_the_merge_ci_of_the_merge_runs_them(stack_at_merge: E2EStack) -> None:
    stack = stack_at_merge
    change, pr = stack.open_pr("e2e-at-merge")
    detail = stack.wait(change, lambda d: d.change.state == "awaiting-merge")
    assert detail.change.reason is None, detail.change.reason
    # The PR pipeline started no long tests: their commit status never came to its head.
    contexts = {s.context for s in stack.forge().list_commit_statuses("sample-app", pr.head_sha)}
    assert "baton/pr" in contexts and LONG_TESTS_CONTEXT not in contexts, contexts

    merge = stack.forge("bob").merge_pull_request("sample-app", pr.number, pr.head_sha)
    detail = stack.wait(change, gate_is("approval", "staging"))

    ci = next(s for s in detail.change.timeline if s.name.startswith("integrate"))
    checks = {c.name: c for c in ci.checks}
    assert checks["long_test"].passed, checks["long_test"]
    # CI ran every check itself, on the merge commit.
    assert not any(
        "beside its PR pipeline" in c.summary or "passed on the PR's head" in c.summary
        for c in checks.values()
    ), checks
    assert checks["long_test"].log_ref is not None
    assert detail.change.artifact is not None and detail.change.artifact.commit == merge
