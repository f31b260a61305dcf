"""An environment of two clusters in the GitOps repository: the real propose, merge and revert
activities against a repository of the local forge. One commit writes both clusters' manifests,
and the revert undoes that one commit in both."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.context import Context
from activities.deploy import (
    MergeInput,
    ProposeInput,
    RevertInput,
    merge_gitops_pr,
    propose_gitops_change,
    revert_gitops_change,
)
from baton.gitops import RENDERED_FROM, beside
from baton.models import RolloutInput
from tests.fakes.records import fake_artifact
from tests.fixtures.gitops import gitops_context, rendered_for
from tests.fixtures.manifests import DEPLOYMENT

EU = "rendered/prod/eu/sample-app/manifests.yaml"
US = "rendered/prod/us/sample-app/manifests.yaml"
COMMIT = "3" * 40
CONFIG = """
apps:
  - {name: sample-app, repo: sample-app, chart: chart, image: sample-app}
gitops: {path: 'rendered/{env}/{cluster}/{app}'}
environments:
  - name: prod
    namespace: prod
    sync: {kind: apply}
    clusters: [{name: eu}, {name: us}]
"""
RUNNING = DEPLOYMENT
NEW = DEPLOYMENT.replace("replicas: 2", "replicas: 3")


@pytest.fixture
def gitops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    """Both clusters run the same two replicas before the rollout."""
    return gitops_context(tmp_path, monkeypatch, CONFIG, {EU: RUNNING, US: RUNNING})


def rollout(context: Context) -> RolloutInput:
    return RolloutInput(
        change_id="change/sample-app/1",
        app=context.config.app("sample-app"),
        environment=context.config.environment("prod"),
        artifact=fake_artifact("sample-app", COMMIT, registry="127.0.0.1:5000"),
        author="alice",
    )


def test_one_commit_writes_every_cluster_and_its_revert_restores_every_cluster(
    gitops: Context,
) -> None:
    activities = ActivityEnvironment()
    input = rollout(gitops)
    pr = activities.run(
        propose_gitops_change,
        ProposeInput(
            rollout=input,
            rendered=rendered_for(
                gitops, input.app, input.environment, NEW, rendered_from="artifact: sample-app\n"
            ),
            body="",
        ),
    )
    merge = activities.run(merge_gitops_pr, MergeInput(rollout=input, pr=pr))

    assert gitops.gitops.read(EU) == gitops.gitops.read(US) == NEW
    assert gitops.gitops.read(beside(US, RENDERED_FROM)) == "artifact: sample-app\n"
    mirror = gitops.workspace.mirror("gitops", gitops.forge.clone_url("gitops"))
    written = mirror.git.diff("--name-only", f"{merge}^1", merge).split()
    assert {EU, US} <= set(written)

    revert = activities.run(
        revert_gitops_change, RevertInput(rollout=input, revision=merge, body="Rolls back.")
    )
    assert revert.pr is not None and not revert.removed
    reverted = gitops.forge.merge_pull_request("gitops", revert.pr.number, revert.pr.head_sha)

    assert gitops.gitops.read(EU, reverted) == gitops.gitops.read(US, reverted) == RUNNING
    assert gitops.gitops.read(beside(US, RENDERED_FROM), reverted) is None
