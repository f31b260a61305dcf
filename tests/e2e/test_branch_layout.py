"""`gitops.layout: branches` on the embedded stack: `baton demo` carries a change from PR to prod
with each environment's GitOps PRs on its own branch (`env/<env>`, made from main at its first
rollout), the local cluster following each branch, and `baton render` reading the environment's
branch."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.stack import ENVIRONMENTS, E2EStack, running_stack

pytestmark = pytest.mark.docker


def branch_per_environment(config: dict) -> None:
    config["gitops"] |= {"layout": "branches", "branch": "env/{env}", "path": "rendered/{app}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[E2EStack]:
    with running_stack(tmp_path_factory.mktemp("baton"), base_image, branch_per_environment) as s:
        yield s


def show(stack: E2EStack, revision: str) -> str | None:
    git_dir = stack.forge().repo_path("gitops")
    shown = subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", revision],
        check=False,
        capture_output=True,
        text=True,
    )
    return shown.stdout if shown.returncode == 0 else None


def test_a_change_reaches_prod_through_a_branch_per_environment(stack: E2EStack) -> None:
    run = stack.baton("demo", "--auto-approve", "--json")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["state"] == "completed", summary["reason"]
    commit = summary["commit"]
    assert {r["environment"]: r["version"]["commit"] for r in summary["environments"]} == {
        env: commit for env in ENVIRONMENTS
    }

    merged = stack.forge().list_pull_requests("gitops", state="merged")
    bases = {p.head_branch.split("/")[2]: p.base_branch for p in merged}
    assert bases == {env: f"env/{env}" for env in ENVIRONMENTS}
    manifests = {
        env: show(stack, f"refs/heads/env/{env}:rendered/sample-app/manifests.yaml")
        for env in ENVIRONMENTS
    }
    assert None not in manifests.values() and len(set(manifests.values())) == len(ENVIRONMENTS)
    assert show(stack, "refs/heads/main:rendered/sample-app/manifests.yaml") is None

    rendered = stack.baton("render", "sample-app", "--env", "staging", "--commit", commit)
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout == show(
        stack, "refs/heads/env/staging:rendered/sample-app/manifests.yaml"
    )
