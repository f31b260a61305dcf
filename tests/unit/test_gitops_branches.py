"""`gitops.layout: branches`: each environment's manifests and inputs on a branch of its own. The
real propose, merge, revert and head activities against a GitOps repository on the local forge."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.context import Context
from activities.deploy import (
    MergeInput,
    ProposeInput,
    RevertInput,
    gitops_head,
    merge_gitops_pr,
    propose_gitops_change,
    revert_gitops_change,
)
from baton.config import parse_config
from baton.local.cluster import LocalCluster
from baton.models import GitOpsPullRequest, Rendered, RolloutInput
from tests.fakes.records import fake_artifact
from tests.fixtures.cli import run_baton
from tests.fixtures.gitops import gitops_context
from tests.fixtures.manifests import DEPLOYMENT

CONFIG = """
gitops: {layout: branches, branch: "env/{env}", path: "rendered/{app}", values: "values/{app}.yaml"}
apps:
  - {name: sample-app, repo: sample-app, chart: chart, image: sample-app}
environments:
  - {name: dev, namespace: dev}
  - {name: staging, namespace: staging}
"""
MANIFESTS = "rendered/sample-app/manifests.yaml"
FIRST, SECOND = "1" * 40, "2" * 40


@pytest.fixture
def context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    """A GitOps repository whose main holds the values every environment branch starts with."""
    return gitops_context(
        tmp_path, monkeypatch, CONFIG, {"values/sample-app.yaml": "replicas: 1\n"}
    )


def rollout(context: Context, env: str, commit: str) -> RolloutInput:
    return RolloutInput(
        change_id="change/sample-app/1",
        app=context.config.app("sample-app"),
        environment=context.config.environment(env),
        artifact=fake_artifact("sample-app", commit, registry="127.0.0.1:5000"),
        author="alice",
    )


def deploy(context: Context, env: str, commit: str, content: str) -> tuple[GitOpsPullRequest, str]:
    """Propose and merge `commit` into `env` through the activities; the PR and the merge."""
    input = rollout(context, env, commit)
    rendered = Rendered(
        path=MANIFESTS,
        content_ref=context.blobs.put(content),
        content_hash="sha256:x",
        diff_markdown="",
        changed_objects=1,
    )
    run = ActivityEnvironment().run
    pr = run(propose_gitops_change, ProposeInput(rollout=input, rendered=rendered, body="deploy"))
    return pr, run(merge_gitops_pr, MergeInput(rollout=input, pr=pr))


def branch_file(context: Context, branch: str, path: str) -> str | None:
    return context.gitops.read(path, f"refs/heads/{branch}")


def test_each_environment_deploys_on_its_own_branch_made_from_the_base(context: Context) -> None:
    # No env/dev yet: dev's inputs are read from main, where its branch will start.
    assert context.gitops.of("dev").read("values/sample-app.yaml") == "replicas: 1\n"

    pr, merged = deploy(context, "dev", FIRST, DEPLOYMENT)

    assert context.forge.get_pull_request("gitops", pr.number).base_branch == "env/dev"
    assert branch_file(context, "env/dev", MANIFESTS) == DEPLOYMENT
    assert branch_file(context, "env/dev", "values/sample-app.yaml") == "replicas: 1\n"
    assert branch_file(context, "main", MANIFESTS) is None  # the base is left alone
    assert branch_file(context, "env/staging", MANIFESTS) is None
    assert ActivityEnvironment().run(gitops_head, rollout(context, "dev", FIRST)) == merged

    staging = DEPLOYMENT.replace("web", "web-staging")
    _, staged = deploy(context, "staging", FIRST, staging)
    # The same path holds each environment's own manifests, on its branch.
    assert branch_file(context, "env/staging", MANIFESTS) == staging
    assert branch_file(context, "env/dev", MANIFESTS) == DEPLOYMENT
    assert not context.gitops.is_ancestor(merged, staged)


def test_a_revert_goes_back_on_the_environments_branch(context: Context) -> None:
    deploy(context, "dev", FIRST, DEPLOYMENT)
    newer = DEPLOYMENT.replace("web", "web-2")
    _, merged = deploy(context, "dev", SECOND, newer)

    revert = ActivityEnvironment().run(
        revert_gitops_change,
        RevertInput(rollout=rollout(context, "dev", SECOND), revision=merged, body="revert"),
    )

    assert revert.pr is not None and not revert.removed
    pr = context.forge.get_pull_request("gitops", revert.pr.number)
    assert pr.base_branch == "env/dev"
    context.forge.merge_pull_request("gitops", pr.number, pr.head_sha)
    assert branch_file(context, "env/dev", MANIFESTS) == DEPLOYMENT


def test_the_local_cluster_watches_each_environments_branch(
    context: Context, tmp_path: Path
) -> None:
    cluster = LocalCluster(
        context.config, context.settings, tmp_path / "gitops.git", client=object()
    )
    assert {t.key: t.source.branch for t in cluster.targets} == {
        "dev/sample-app": "env/dev",
        "staging/sample-app": "env/staging",
    }


@pytest.mark.parametrize(
    ("branch", "problem"),
    [
        ("deploy", "'deploy' names no environment: every environment would share one branch"),
        ("env/{env}..x", "'env/{env}..x' is not a git branch name"),
        ("env/{region}", "unknown placeholder(s) region"),
    ],
)
def test_config_check_refuses_a_branch_template_git_or_the_layout_cannot_use(
    tmp_path: Path, branch: str, problem: str
) -> None:
    config = tmp_path / "baton.yaml"
    config.write_text(CONFIG.replace('branch: "env/{env}"', f'branch: "{branch}"'))

    checked = run_baton("config", "check", str(config))

    assert checked.returncode == 2
    (line,) = checked.stderr.strip().splitlines()
    assert f"gitops.branch: {problem}" in line, line
    assert parse_config(CONFIG.replace("{env}", "{environment}")).gitops.branch_of("prod") == (
        "env/prod"
    )
