"""The change's one comment on its pull request, and its commits' authors, on a real Temporal
server: the real `update_change_comment` and `change_authors` activities against the local forge
(real git repositories and its records), the pipelines and deploy steps stood in for as in
test_change.py. The forge loses its first answer to a comment, as a dropped connection would:
Temporal retries the activity, and the retry edits the comment it finds by its marker."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowUpdateFailedError

from activities import context
from activities.forge import change_authors, report_deployment, update_change_comment
from baton.config import (
    ApprovalPolicy,
    AuthConfig,
    BatonConfig,
    EnvironmentConfig,
    UserRecord,
    VerifyConfig,
)
from baton.forges.base import ForgeError
from baton.forges.github import GitHubForge
from baton.local.forge import LocalForge
from baton.models import ChangePlan, ChangeStatus, Decision, RolloutStatus
from baton.pr_comment import marker
from baton.settings import Settings
from baton.temporal import (
    SearchAttributes,
    TaskQueues,
    Updates,
    WorkflowTypes,
    change_id,
    rollout_id,
)
from tests.conftest import at_gate, git, serving, until
from tests.fakes.forges import FakeGitHub
from tests.workflows import test_pipelines as pipelines
from tests.workflows import test_rollout as rollout
from tests.workflows.test_change import (
    change_activities,
    environment,
    merge_commit,
    open_change,
    pull_request,
    rollout_of,
)
from tests.workflows.test_pipelines import APP, Steps
from tests.workflows.test_rollout import M
from workflows import WORKFLOWS

# The stand-ins' fixtures, as test_change.py uses them.
steps, fresh_world = pipelines.steps, rollout.fresh_world
MARKER = marker(change_id(APP.name, 1))


class LosesFirstAnswer(LocalForge):
    """The local forge, whose first answer to a comment is lost after the comment was made."""

    lost = 0

    def upsert_comment(self, repo: str, number: int, marker: str, body: str) -> int:
        made = super().upsert_comment(repo, number, marker, body)
        if not self.lost:
            self.lost += 1
            raise ForgeError("connection reset by peer before the forge's answer arrived")
        return made


@pytest.fixture
def forge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LosesFirstAnswer:
    """PR #1 of the app on the local forge: opened by alice, its commit by Bob (whose email
    `auth.users` maps, in other case), as the worker's forge and configuration."""
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))
    forge = LosesFirstAnswer(tmp_path / "forge")
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "README.md").write_text("web\n")
    forge.create_repo(APP.repo, from_dir=seed)
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", forge.clone_url(APP.repo), str(work))
    (work / "app.py").write_text("print('hello')\n")
    git(work, "add", "-A")
    subprocess.run(
        ["git", "-c", "user.name=Bob", "-c", "user.email=Bob@Example.com", "commit", "-qm", "hi"],
        cwd=work,
        check=True,
    )
    git(work, "push", "-q", "origin", "HEAD:refs/heads/feature-1")
    forge.open_pull_request(APP.repo, "feature-1", "main", "change 1", "", "alice")
    config = BatonConfig(
        apps=[APP], auth=AuthConfig(users={"bob": UserRecord(emails=["bob@example.com"])})
    )
    worker_context = context.Context(Settings(home=tmp_path / "home"), config)
    worker_context.__dict__["forge"] = forge  # the cached adapter
    monkeypatch.setattr(context, "_current", worker_context)
    return forge


@pytest.fixture
async def client(isolated_client: Client, steps: Steps) -> AsyncIterator[Client]:
    activities = with_real(change_activities(steps), update_change_comment, change_authors)
    async with serving(isolated_client, WORKFLOWS, activities):
        yield isolated_client


def with_real(activities: dict[str, list], *real: Callable) -> dict[str, list]:
    """`activities` with the `real` ones in place of their stand-ins on the workflows queue."""
    names = {a.__name__ for a in real}  # the stand-ins are named as the real ones
    queue = activities[TaskQueues.WORKFLOWS]
    activities[TaskQueues.WORKFLOWS] = [*(a for a in queue if a.__name__ not in names), *real]
    return activities


def comments(forge: LocalForge) -> list[str]:
    """Baton's comments on PR #1."""
    return [body for _, body in forge.list_comments(APP.repo, 1) if MARKER in body]


async def test_one_comment_follows_the_change_and_no_commit_author_may_approve(
    client: Client, forge: LosesFirstAnswer
) -> None:
    rollout.world.polled_synced = {M}
    prod = EnvironmentConfig(
        name="prod",
        namespace="prod",
        approvals=ApprovalPolicy(required=1, approvers=["carol", "bob"]),
    )
    plan = ChangePlan(
        app=APP, environments=[environment("dev"), prod], pr_comment=True, commit_authors=True
    )
    change = await open_change(client, 1, plan=plan)
    await at_gate(change, "merge", ChangeStatus)
    seen = await until(
        lambda: comments(forge),
        lambda found: bool(found) and "waiting for the pull request to be merged" in found[-1],
        "the comment at the merge gate",
    )
    assert len(seen) == 1 and "**awaiting-merge**" in seen[0]
    assert forge.lost == 1  # the first answer was lost: the retry edited, it did not post again

    await pull_request(change, "merged", merge_commit_sha=merge_commit(1))
    deploy = rollout_of(client, 1, "prod")
    await at_gate(deploy, "approval", RolloutStatus)
    seen = await until(
        lambda: comments(forge),
        lambda found: "0/1 approvals for prod (waiting on carol)" in found[-1],
        "the comment at prod's approval gate",
    )
    assert "| dev | ✅ deployed |" in seen[0] and "| prod | ⏳ approval |" in seen[0]

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await deploy.execute_update(Updates.APPROVE, Decision(user="bob"))
    assert refused.value.cause.message.startswith(
        "bob is an author of the change's commits and prod's policy forbids self-approval"
    )
    await deploy.execute_update(Updates.APPROVE, Decision(user="carol"))
    status = await change.result()

    assert status.state == "completed" and status.authors == ["alice", "bob"]
    final = comments(forge)
    assert len(final) == 1 and len(forge.list_comments(APP.repo, 1)) == 1
    assert "**completed**: deployed to dev, prod" in final[0]
    assert "| dev | ✅ deployed |" in final[0] and "| prod | ✅ deployed |" in final[0]
    board = f"{Settings().api_url}/board/changes/{status.id.removeprefix('change/')}"
    assert f"Board: [{status.id}]({board})" in final[0]
    assert final[0].endswith(MARKER)

    # Each rollout hands the comment over as it ends: no write asked for from its outcome on,
    # and the change writes once the rollout's stage ended.
    for env in ("dev", "prod"):
        events = (await rollout_of(client, 1, env).fetch_history()).events
        outcome = max(i for i, event in enumerate(events) if sets_outcome(event))
        assert not [e for e in events[outcome:] if writes_comment(e)], env
    events = (await change.fetch_history()).events
    rollouts_ended = [
        i
        for i, e in enumerate(events)
        if e.child_workflow_execution_completed_event_attributes.workflow_type.name
        == WorkflowTypes.ROLLOUT
    ]
    assert len(rollouts_ended) == 2
    for ended, then in zip(rollouts_ended, rollouts_ended[1:] + [len(events)], strict=True):
        assert [e for e in events[ended:then] if writes_comment(e)]


def sets_outcome(event: HistoryEvent) -> bool:
    """An upsert of the outcome's search attribute: the rollout's end."""
    attributes = event.upsert_workflow_search_attributes_event_attributes.search_attributes
    return SearchAttributes.OUTCOME.name in attributes.indexed_fields


def writes_comment(event: HistoryEvent) -> bool:
    scheduled = event.activity_task_scheduled_event_attributes
    return scheduled.activity_type.name == "update_change_comment"


TOKEN = "github-token-for-baton"


@pytest.fixture
def github(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    """The app on a fake GitHub, PR #1 opened by alice with a commit of hers (her email is
    linked to her account `alice-gh`, Baton's user `al`), merged: the worker's forge is the
    real GitHub adapter."""
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "README.md").write_text("web\n")
    with FakeGitHub(tmp_path / "github", {TOKEN: "baton"}, page_size=2) as fake:
        fake.create_repo(APP.repo, from_dir=seed)
        fake.push(APP.repo, "feature-1", {"app.py": "print('hello')\n"})
        fake.accounts["alice@example.invalid"] = "alice-gh"
        fake.open_pull_request(APP.repo, "feature-1", "main", "change 1", "", "alice")
        config = BatonConfig(
            apps=[APP], auth=AuthConfig(users={"al": UserRecord(forge_users=["alice-gh"])})
        )
        worker_context = context.Context(Settings(home=tmp_path / "home"), config)
        worker_context.__dict__["forge"] = GitHubForge(fake.url, TOKEN)
        monkeypatch.setattr(context, "_current", worker_context)
        yield fake


@pytest.fixture
async def github_client(isolated_client: Client, steps: Steps) -> AsyncIterator[Client]:
    activities = with_real(
        change_activities(steps), update_change_comment, change_authors, report_deployment
    )
    activities[TaskQueues.DEPLOY] += [rollout.verify, rollout.verify_running]  # dev has an endpoint
    async with serving(isolated_client, WORKFLOWS, activities):
        yield isolated_client


async def test_on_github_each_environment_gets_a_deployment_and_the_pr_its_comment(
    github_client: Client, github: FakeGitHub
) -> None:
    rollout.world.polled_synced = {M}
    dev = environment("dev").model_copy(
        update={"verify": VerifyConfig(url="https://dev.example.com/version")}
    )
    plan = ChangePlan(
        app=APP,
        environments=[dev, environment("prod")],
        pr_comment=True,
        deployments=True,
        commit_authors=True,
    )
    change = await open_change(github_client, 1, plan=plan)
    await at_gate(change, "merge", ChangeStatus)
    merged = github.merge(APP.repo, 1)
    await pull_request(change, "merged", merge_commit_sha=merged)

    status = await change.result()

    assert status.state == "completed" and status.authors == ["alice", "al", "alice-gh"]
    assert [(d["sha"], d["environment"], d["ref"]) for d in github.deployments] == [
        (merged, "dev", merged),
        (merged, "prod", merged),
    ]
    dev_statuses = github.deployment_statuses[github.deployments[0]["id"]]
    assert [s["state"] for s in dev_statuses] == ["in_progress", "success"]
    assert dev_statuses[-1]["environment_url"] == "https://dev.example.com/version"
    assert dev_statuses[0]["log_url"].endswith(quote(rollout_id(APP.name, "dev", merged), safe=""))
    [comment] = [body for _, body in github.store.list_comments(APP.repo, 1)]
    assert "**completed**: deployed to dev, prod" in comment and comment.endswith(MARKER)
