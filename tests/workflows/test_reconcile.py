"""The reconciler against a real local forge whose webhooks reach nobody (the API is down), on a
real Temporal server with test_pipelines.py's stand-in steps: what the missed deliveries would
have done happens once, and a reading that finds nothing new does nothing."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecution

from activities.deploy import ProposeInput
from activities.forge import CommitInput
from baton.config import AuthConfig, BatonConfig, UserRecord
from baton.ingress import Ingress
from baton.local.forge import LocalForge
from baton.models import ChangeStatus, GitOpsPullRequest, RolloutStatus
from baton.reconcile import Reconciler
from baton.settings import Settings
from baton.temporal import Queries, TaskQueues, change_id
from tests.conftest import at_gate, gate_shown, serving, until, visible
from tests.workflows import test_pipelines as pipelines
from tests.workflows.test_change import timeline
from tests.workflows.test_pipelines import APP, Steps
from workflows import WORKFLOWS
from workflows.rollout import EnvironmentRollout

steps = pipelines.steps  # the stand-ins' fixture


@pytest.fixture
async def client(isolated_client: Client, steps: Steps, forge: LocalForge) -> AsyncIterator[Client]:
    activities = steps.activities()

    @activity.defn(name="merged_pull_request")
    async def merged_pull_request(input: CommitInput) -> int | None:
        return forge.merged_pull_request(input.repo, input.sha)

    activities[TaskQueues.WORKFLOWS].append(merged_pull_request)
    async with serving(isolated_client, WORKFLOWS, activities):
        yield isolated_client


@pytest.fixture
def forge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalForge:
    """The app's repository on a local forge with no webhook receiver: every delivery is lost."""
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))  # read by the forge's push hook
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "app.txt").write_text("v1\n")
    forge = LocalForge(tmp_path / "forge")
    forge.create_repo(APP.repo, from_dir=seed)
    return forge


@pytest.fixture
def reconciler(client: Client, forge: LocalForge) -> Reconciler:
    ingress = Ingress(client, BatonConfig(apps=[APP]), Settings(), via="reconciler")
    return Reconciler(ingress, forge, "reconciler:test")


def push(
    forge: LocalForge,
    branch: str,
    content: str,
    repo: str = APP.repo,
    author: tuple[str, str] = ("Alice", "alice@example.invalid"),
) -> str:
    """Commit `content` on `branch` (made from main) of `repo` in a clone as `author` (name,
    email) and push it; the new head."""
    work = forge.root.parent / f"work-{repo.replace('/', '-')}-{branch.replace('/', '-')}"
    git = ["git", "-c", f"user.name={author[0]}", "-c", f"user.email={author[1]}"]
    if not work.exists():
        clone = [*git, "clone", "--quiet", forge.clone_url(repo), str(work)]
        subprocess.run(clone, check=True)
        subprocess.run([*git, "checkout", "--quiet", "-B", branch], cwd=work, check=True)
    (work / "app.txt").write_text(content)
    subprocess.run([*git, "commit", "--quiet", "-am", content], cwd=work, check=True)
    subprocess.run([*git, "push", "--quiet", "origin", branch], cwd=work, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True, text=True
    ).stdout.strip()


def open_pr(forge: LocalForge, branch: str) -> tuple[int, str]:
    head = push(forge, branch, f"{branch}\n")
    pr = forge.open_pull_request(APP.repo, branch, "main", f"Add {branch}", "", "alice")
    return pr.number, head


async def listed(client: Client, workflow_id: str, gate: str) -> list[WorkflowExecution]:
    """The running workflows as visibility lists them, once it lists `workflow_id` at a `gate`
    (kept to answer later, as a visibility store that lags behind would)."""

    await visible(client, workflow_id, lambda e: gate_shown(e) == gate, f"a {gate} gate listed")
    return [e async for e in client.list_workflows("ExecutionStatus = 'Running'")]


def lagging(
    monkeypatch: pytest.MonkeyPatch, client: Client, earlier: list[WorkflowExecution]
) -> None:
    """Make `client`'s visibility answer what it listed `earlier`, of the query's workflow type."""

    async def list_workflows(query: str) -> AsyncIterator[WorkflowExecution]:
        for execution in earlier:
            if f"WorkflowType = '{execution.workflow_type}'" in query:
                yield execution

    monkeypatch.setattr(client, "list_workflows", list_workflows)


async def completed(client: Client, number: int) -> ChangeStatus:
    handle = client.get_workflow_handle(change_id(APP.name, number), result_type=ChangeStatus)
    return await handle.result()


async def test_missed_opened_and_merged_deliveries_are_acted_on_once(
    client: Client,
    forge: LocalForge,
    reconciler: Reconciler,
    steps: Steps,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, head = open_pr(forge, "first")
    assert await reconciler.run() == [f"{APP.repo}#{first} opened: started change/web/{first}"]
    change = client.get_workflow_handle(change_id(APP.name, first))
    await at_gate(change, "merge", ChangeStatus)
    assert await reconciler.run() == []  # nothing new: nothing signalled
    earlier = await listed(client, change.id, "merge")

    merge = forge.merge_pull_request(APP.repo, first, head)
    assert await reconciler.run() == [f"{APP.repo}#{first} closed: signalled change/web/{first}"]
    assert (await completed(client, first)).merge_commit == merge
    assert await reconciler.run() == []  # the release head is that change's merge commit
    with monkeypatch.context() as lag:  # visibility still lists the change before its merge
        lagging(lag, client, earlier)
        assert await reconciler.run() == []

    # Opened and merged while no delivery arrived: the merge commit gets its PR's change.
    second, head = open_pr(forge, "second")
    merge = forge.merge_pull_request(APP.repo, second, head)
    assert await reconciler.run() == [f"{APP.repo}#{second} closed: signalled change/web/{second}"]
    status = await completed(client, second)
    assert status.merge_commit == merge and status.state == "completed"
    # Validated (the PR's checks never ran), then integrated once.
    reported = [(context, state) for context, state, _ in steps.reported(merge)]
    assert reported.count(("baton/ci", "success")) == 1 and ("baton/pr", "success") in reported
    assert await reconciler.run() == []


async def test_a_push_to_the_release_branch_missed_gets_its_change_once(
    client: Client, forge: LocalForge, reconciler: Reconciler
) -> None:
    assert await reconciler.run() == []  # the first reading notes main's head: the baseline
    head = push(forge, "main", "pushed directly\n")
    change = f"change/web/push-{head[:12]}"
    assert await reconciler.run() == [f"{APP.repo}@{head[:12]} pushed: started {change}"]
    status = await client.get_workflow_handle(change, result_type=ChangeStatus).result()
    assert status.state == "completed" and status.pr_number is None
    assert await reconciler.run() == []


async def test_a_missed_push_names_its_commits_authors_as_baton_users(
    client: Client, forge: LocalForge
) -> None:
    """No delivery said who pushed alice's and dave's commits: the forge's comparison of the old
    and new heads still names their authors, as Baton users where auth.users maps them."""
    users = {"dave": UserRecord(emails=["Dave@Corp.example"])}
    config = BatonConfig(apps=[APP], auth=AuthConfig(users=users))
    reconciler = Reconciler(Ingress(client, config, Settings(), via="reconciler"), forge)
    assert await reconciler.run() == []  # the baseline
    push(forge, "main", "alice's\n")
    head = push(forge, "main", "dave's\n", author=("Dave", "dave@corp.example"))
    change = f"change/web/push-{head[:12]}"

    assert await reconciler.run() == [f"{APP.repo}@{head[:12]} pushed: started {change}"]

    status = await client.get_workflow_handle(change, result_type=ChangeStatus).result()
    assert status.authors == ["alice@example.invalid", "dave"]  # "unknown" pushed: no one
    assert timeline(status)[0][2] == (
        f"{head[:12]} was found on main without a pull request (no delivery named who pushed "
        "it), its commits by alice@example.invalid, dave"
    )


async def test_a_missed_push_whose_old_head_is_gone_names_the_head_commits_author(
    client: Client, forge: LocalForge
) -> None:
    """The head the last reading saw was force-pushed away and pruned: the forge cannot say
    which commits the push brought, so the head commit's author, at least, is named."""
    config = BatonConfig(
        apps=[APP], auth=AuthConfig(users={"dave": UserRecord(emails=["dave@corp.example"])})
    )
    gone = "d" * 40
    ingress = Ingress(client, config, Settings(), via="reconciler")
    reconciler = Reconciler(ingress, forge, heads={APP.name: gone})
    push(forge, "main", "alice's\n")
    head = push(forge, "main", "dave's\n", author=("Dave", "dave@corp.example"))
    change = f"change/web/push-{head[:12]}"

    unknown = (
        f"the commits since {gone[:12]} unknown: commit {gone[:12]} not found in {APP.repo!r}: "
        "never pushed, or force-pushed away; only the head commit's author named"
    )
    assert await reconciler.run() == [
        f"{APP.repo}@{head[:12]} pushed: started {change} ({unknown})"
    ]
    status = await client.get_workflow_handle(change, result_type=ChangeStatus).result()
    assert status.authors == ["dave"]


async def test_an_app_whose_repository_is_missing_is_skipped_saying_so(
    client: Client, forge: LocalForge
) -> None:
    missing = APP.model_copy(update={"name": "gone", "repo": "acme/gone"})
    ingress = Ingress(client, BatonConfig(apps=[missing, APP]), Settings(), via="reconciler")
    reconciler = Reconciler(ingress, forge)
    number, _ = open_pr(forge, "topic")
    assert await reconciler.run() == [
        "gone: not read: repository 'acme/gone' not found: check the name or create it first",
        f"{APP.repo}#{number} opened: started change/web/{number}",
    ]


async def test_a_new_head_a_close_and_a_reopen_reach_the_change(
    client: Client, forge: LocalForge, reconciler: Reconciler
) -> None:
    number, _ = open_pr(forge, "topic")
    await reconciler.run()
    change = client.get_workflow_handle(change_id(APP.name, number))
    await at_gate(change, "merge", ChangeStatus)

    head = push(forge, "topic", "newer\n")
    assert await reconciler.run() == [
        f"{APP.repo}#{number} synchronize: signalled change/web/{number}"
    ]
    status = await until(
        lambda: change.query(Queries.STATUS, result_type=ChangeStatus),
        lambda seen: seen.head_sha == head and seen.gate is not None,
        "the new head validated",
    )
    assert status.gate is not None and status.gate.kind == "merge"

    forge.close_pull_request(APP.repo, number)
    assert await reconciler.run() == [f"{APP.repo}#{number} closed: signalled change/web/{number}"]
    assert (await completed(client, number)).state == "closed"
    assert await reconciler.run() == []

    forge.reopen_pull_request(APP.repo, number)
    assert await reconciler.run() == [f"{APP.repo}#{number} reopened: reopened change/web/{number}"]
    await at_gate(client.get_workflow_handle(change_id(APP.name, number)), "merge", ChangeStatus)
    assert await reconciler.run() == []


async def test_a_review_and_a_merge_by_hand_of_a_gitops_pr_reach_its_rollout(
    isolated_client: Client, forge: LocalForge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollout waits on its GitOps PR (a real one on the local forge); the approval given on
    the forge, then the merge done there, reach it only through the reconciler."""
    from tests.workflows import test_rollout as rollouts

    forge.create_repo("gitops", from_dir=forge.root.parent / "seed")
    branch = "baton/web/prod/ffffffffffff"
    push(forge, branch, "kind: ConfigMap\n", repo="gitops")
    rollout = "rollout/web/prod/" + "f" * 40
    body = f"Deploy\n\nBaton-Rollout: {rollout}\n"
    pr = forge.open_pull_request("gitops", branch, "main", "Deploy web", body, "baton")

    @activity.defn(name="propose_gitops_change")
    async def propose(input: ProposeInput) -> GitOpsPullRequest:
        return GitOpsPullRequest(
            number=pr.number, url=pr.html_url, head_branch=branch, head_sha=pr.head_sha
        )

    deploy = [
        rollouts.render_environment,
        propose,
        rollouts.merge,
        rollouts.close,
        rollouts.revert,
        rollouts.is_descendant,
        rollouts.request_reconcile,
        rollouts.check_sync,
        rollouts.verify,
        rollouts.verify_running,
        rollouts.gitops_head,
    ]
    given = rollouts.rollout_input(required=1)
    approvals = given.environment.approvals.model_copy(update={"merge": "manual"})
    environment = given.environment.model_copy(update={"approvals": approvals})
    manual = given.model_copy(update={"environment": environment})
    config = BatonConfig(apps=[APP], environments=[manual.environment])
    reconciler = Reconciler(Ingress(isolated_client, config, Settings()), forge)
    async with serving(isolated_client, [EnvironmentRollout], {TaskQueues.DEPLOY: deploy}):
        handle = await isolated_client.start_workflow(
            EnvironmentRollout.run, manual, id=rollout, task_queue=TaskQueues.WORKFLOWS
        )
        await at_gate(handle, "approval", RolloutStatus)
        assert await reconciler.gitops() == []
        earlier = await listed(isolated_client, handle.id, "approval")
        forge.submit_review("gitops", pr.number, "carol", "approved")
        # visibility lists the rollout with its PR some time after its workflow task: a reading
        # before that finds nothing, as the next scheduled one would find it
        (acted,) = await until(reconciler.gitops, bool, "the review reconciled")
        assert acted.startswith(f"gitops#{pr.number} reviewed by carol: signalled {handle.id}")
        await at_gate(handle, "merge", RolloutStatus)
        assert await reconciler.gitops() == []
        with monkeypatch.context() as lag:  # visibility still shows the approval gate, uncounted
            lagging(lag, isolated_client, earlier)
            assert await reconciler.gitops() == []
        merge = forge.merge_pull_request("gitops", pr.number, pr.head_sha)
        assert await reconciler.gitops() == [f"gitops#{pr.number} merged: signalled {handle.id}"]
        status = await until(
            lambda: handle.query(Queries.STATUS, result_type=RolloutStatus),
            lambda seen: seen.revision is not None,
            "the merge by hand seen",
        )
        assert status.revision == merge
