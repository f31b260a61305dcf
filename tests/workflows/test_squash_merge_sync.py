"""Acceptance: with `forge.merge: squash` on the GitHub fake, a rollout's GitOps PR merges as
GitHub squashes it, and the sync gate waits for that squash commit, not the PR's head.

EnvironmentRollout runs with the real merge and ancestry activities against a GitOps repository
on FakeGitHub (squash merges only); rendering, reconcile, sync status and verification are
test_rollout's stand-ins; the GitOps PR is proposed through the real adapter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import context as activity_context
from activities.context import Context
from activities.deploy import ProposeInput, is_descendant, merge_gitops_pr
from baton.config import parse_config
from baton.models import GitOpsPullRequest, RolloutStatus, SyncEvent
from baton.settings import Settings
from baton.temporal import TaskQueues
from tests.conftest import at_gate
from tests.fakes.forges import FakeGitHub
from tests.workflows import test_rollout as rollout
from tests.workflows.test_rollout import notes_when, rollout_input, start
from workflows.rollout import EnvironmentRollout

TOKEN = "gitops-token"
fresh_world = rollout.fresh_world


@pytest.fixture
def github(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    """FakeGitHub holding acme/gitops, whose settings allow squash merges only; activities
    use it with `forge.merge: squash`."""
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GITOPS_TOKEN", TOKEN)
    seed = tmp_path / "seed"
    (seed / "rendered/prod/web").mkdir(parents=True)
    (seed / "rendered/prod/web/manifests.yaml").write_text("# nothing yet\n")
    with FakeGitHub(tmp_path / "forge", {TOKEN: "baton"}) as fake:
        fake.create_repo("acme/gitops", from_dir=seed)
        fake.allow_merge_methods("squash")
        config = parse_config(
            f"""
forge: {{kind: github, url: "{fake.url}", merge: squash, credentials: {{token_env: GITOPS_TOKEN}}}}
gitops: {{repo: acme/gitops}}
apps: [{{name: web, repo: acme/web, chart: chart, image: web}}]
environments: [{{name: prod, namespace: prod}}]
"""
        )
        context = Context(Settings(home=tmp_path / "home"), config)
        monkeypatch.setattr(activity_context, "_current", context)
        yield fake


@activity.defn(name="propose_gitops_change")
def propose(input: ProposeInput) -> GitOpsPullRequest:
    """The rollout's GitOps PR of two commits, pushed and opened through the real adapter."""
    ctx = activity_context.current()
    branch = "baton/web/prod/ffffffffffff"
    ctx.gitops.propose(branch, input.rendered.path, "kind: Deployment\n", "Deploy web")
    ctx.gitops.propose(branch, "rendered/prod/web/NOTES", "why\n", "Explain")
    pr = ctx.forge.open_pull_request("acme/gitops", branch, "main", "Deploy web", "", "baton")
    return GitOpsPullRequest(
        number=pr.number, url=pr.html_url, head_branch=pr.head_branch, head_sha=pr.head_sha
    )


@pytest.fixture
async def workers(temporal_env: WorkflowEnvironment, github: FakeGitHub) -> AsyncIterator[Client]:
    client = temporal_env.client
    deploy = Worker(
        client,
        task_queue=TaskQueues.DEPLOY,
        activities=[
            rollout.render_environment,
            propose,
            merge_gitops_pr,
            rollout.close,
            rollout.revert,
            is_descendant,
            rollout.request_reconcile,
            rollout.check_sync,
            rollout.verify,
            rollout.verify_running,
            rollout.gitops_head,
        ],
        activity_executor=ThreadPoolExecutor(4),
    )
    flows = Worker(client, task_queue=TaskQueues.WORKFLOWS, workflows=[EnvironmentRollout])
    async with deploy, flows:
        yield client


async def test_squash_merged_gitops_pr_and_the_sync_gate_waits_for_the_squash_commit(
    workers: Client, github: FakeGitHub
) -> None:
    handle = await start(workers, rollout_input(required=0))

    status = await at_gate(handle, "sync", RolloutStatus)

    (pr,) = github.store.list_pull_requests("acme/gitops")
    squash = pr.merge_commit_sha
    assert pr.state == "merged" and squash is not None and squash != pr.head_sha
    main = github._branches("acme/gitops", "main")["main"]
    assert squash == main
    parents = github.store._git("acme/gitops", "rev-list", "--parents", "-1", squash).stdout
    assert len(parents.split()) == 2  # one parent: squashed
    assert status.gate is not None
    assert status.gate.description == f"waiting for prod to sync {squash[:12]}"

    # The PR's own head never lands on main: an event for it does not pass the gate.
    await handle.signal(
        EnvironmentRollout.sync_event, SyncEvent(revision=pr.head_sha, state="ready")
    )
    await notes_when(handle, 1)
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=squash, state="ready"))

    result = await handle.result()
    assert result.outcome == "deployed"
    final = await handle.query(EnvironmentRollout.status)
    sync = next(s for s in final.timeline if s.name == "sync")
    assert sync.outcome == "succeeded" and sync.detail.endswith(f"at {squash[:12]}")
    notes = [s.detail for s in final.timeline if s.name == "note"]
    assert notes == [f"ignored sync event for older revision {pr.head_sha[:12]}"]
