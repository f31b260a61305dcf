"""Scheduled CI (`apps[].ci.schedule`) on the time-skipping test server: CIBatch, one run of an
app's CI schedule, makes the commits on the release branch since the last integrated one one
change; a pull request merged there ends `batched`, its batch carries it.

The forge is Baton's local forge (real git repositories), read by the real `read_release_batch`
and `merged_pull_request` activities; commit statuses reach it as the real `set_commit_status`
sets them. Pipeline steps and rollouts are test_change.py's stand-ins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities import context as activity_context
from activities.batch import BatchInput, read_release_batch
from activities.context import Context
from activities.forge import CommitStatusInput, merged_pull_request
from baton import changes
from baton.batches import release_batch
from baton.config import AppConfig, BatonConfig, CIConfig
from baton.forges.base import BranchNotFound
from baton.local.forge import LocalForge
from baton.models import ChangeInput, ChangePlan, ChangeStatus
from baton.settings import Settings
from baton.temporal import (
    SearchAttributes,
    TaskQueues,
    WorkflowTypes,
    batch_change_id,
    change_id,
)
from baton.workspace import Workspace
from cli.main import render_change
from tests.conftest import at_gate, git, serving
from tests.fixtures.ports import free_port
from tests.workflows import test_change as change_tests
from tests.workflows import test_rollout as rollout
from tests.workflows.test_change import change_activities, environment, pull_request, start
from tests.workflows.test_pipelines import Steps
from tests.workflows.test_rollout import M
from workflows import WORKFLOWS

# test_change's fixtures: fresh stand-in `Steps` and a fresh rollout `world`.
steps, fresh_world = change_tests.steps, change_tests.fresh_world

CRON = "0 * * * *"
APP = AppConfig(name="web", repo="web", image="web", chart="chart", ci=CIConfig(schedule=CRON))


@dataclass
class Release:
    """The app's repository on the local forge and a developer's clone of it."""

    forge: LocalForge
    clone: Path
    reports_to_forge: bool = True
    """Whether commit statuses reach the forge (off: as if CI had not reported yet)."""

    def commit(self, title: str, author: str = "alice", branch: str = "main") -> str:
        """Commit a change titled `title` by `author` and push it to `branch`; the new head."""
        (self.clone / f"{len(list(self.clone.iterdir()))}.txt").write_text(title)
        git(self.clone, "checkout", "-q", "-B", branch)
        git(self.clone, "add", "-A")
        git(self.clone, "-c", f"user.name={author}", "-c", "user.email=a@example.com", "commit", "-q", "-m", title)  # fmt: skip
        git(self.clone, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return git(self.clone, "rev-parse", "HEAD")

    def merge_pull_request(self, title: str) -> tuple[int, str]:
        """A pull request of one commit, opened and merged into main: its number, the merge."""
        head = self.commit(title, author="bob", branch=f"topic-{title.split()[0].lower()}")
        pr = self.forge.open_pull_request(APP.repo, f"topic-{title.split()[0].lower()}", "main", title, "", "bob")  # fmt: skip
        merge = self.forge.merge_pull_request(APP.repo, pr.number, head)
        git(self.clone, "checkout", "-q", "main")
        git(self.clone, "pull", "-q", "origin", "main")
        return pr.number, merge

    def integrated(self, sha: str) -> None:
        """Mark `sha` integrated, as CI's commit status does."""
        self.forge.set_commit_status(APP.repo, sha, "baton/ci", "success", "7 step(s) passed")


@pytest.fixture
def release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Release]:
    """The worker's context (its forge: the local forge under BATON_HOME, sending its webhooks
    to a port nobody listens on) and the app's repository there, one commit on main."""
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BATON_API_PORT", str(free_port()))
    config = BatonConfig(apps=[APP], environments=[environment("dev")])
    context = Context(Settings(), config)
    monkeypatch.setattr(activity_context, "_current", context)
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "README.md").write_text("web\n")
    forge = context.forge
    assert isinstance(forge, LocalForge)
    forge.create_repo(APP.repo, from_dir=seed)
    git(tmp_path, "clone", "-q", forge.clone_url(APP.repo), "clone")
    yield Release(forge, tmp_path / "clone")


@pytest.fixture
async def client(
    time_skipping_env: WorkflowEnvironment, steps: Steps, release: Release
) -> AsyncIterator[Client]:
    @activity.defn(name="set_commit_status")
    async def set_commit_status(input: CommitStatusInput) -> None:
        steps.statuses.append((input.context, input.sha, input.state, input.description))
        if release.reports_to_forge:
            release.forge.set_commit_status(
                input.repo, input.sha, input.context, input.state, input.description
            )

    activities = change_activities(steps)
    activities[TaskQueues.WORKFLOWS] = [
        set_commit_status if a.__name__ == "set_commit_status" else a  # type: ignore[attr-defined]
        for a in activities[TaskQueues.WORKFLOWS]
    ] + [merged_pull_request]
    activities[TaskQueues.BUILD].append(read_release_batch)
    rollout.world.polled_synced = {M}
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with serving(time_skipping_env.client, WORKFLOWS, activities, executor):
            yield time_skipping_env.client


async def scheduled_run(client: Client, run: int) -> str:
    """One run of the app's CI schedule, as the Schedule starts it (its id, then the time)."""
    return await client.execute_workflow(
        WorkflowTypes.CI_BATCH,
        BatchInput(app=APP.name),
        id=f"ci-batch-{APP.name}-2026-12-01T0{run}:00:00Z",
        task_queue=TaskQueues.WORKFLOWS,
        result_type=str,
    )


async def test_the_commits_since_the_last_integrated_one_become_one_change(
    client: Client, steps: Steps, release: Release, capsys: pytest.CaptureFixture[str]
) -> None:
    base = git(release.clone, "rev-parse", "HEAD")
    release.integrated(base)
    fix = release.commit("Fix the checkout total")
    number, merge = release.merge_pull_request("Cache prices")
    head = release.commit("Tune the cache", author="carol")

    started = await scheduled_run(client, 1)

    change = batch_change_id(APP.name, head)
    summary = f"3 commits on main since {base[:12]} (#{number})"
    assert started == f"started {change}: {summary}"
    status = await client.get_workflow_handle(change, result_type=ChangeStatus).result()
    assert (status.state, status.reason) == ("completed", "deployed to dev")
    assert status.batch is not None
    assert [(c.sha, c.author) for c in status.batch.commits] == [
        (head, "carol"),
        (merge, "baton"),
        (fix, "alice"),
    ]
    assert (status.batch.pull_requests, status.batch.since) == ([number], base)
    assert (status.merge_commit, status.author) == (head, "carol")
    assert status.timeline[0].detail == f"batch of {summary}, integrated on the CI schedule"
    assert [r.environment for r in status.rollouts] == ["dev"]
    # One CI run, on the newest commit, which carries the others; it marks the batch integrated.
    assert {commit for _, commit in steps.started} == {head}
    ci = [(s.context, s.state) for s in release.forge.list_commit_statuses(APP.repo, head)]
    assert ("baton/ci", "success") in ci
    attributes = (await client.get_workflow_handle(change).describe()).typed_search_attributes
    assert attributes.get(SearchAttributes.COMMIT) == head
    # `baton changes show` and the API's change view read it from the published status.
    detail = await changes.show(client, change)
    assert detail.change.batch == status.batch
    render_change(detail)
    shown = capsys.readouterr().out
    assert f"batch: {summary}\n" in shown
    assert f"  {fix[:12]} Fix the checkout total (alice)\n" in shown
    assert f"  {head[:12]} Tune the cache (carol)\n" in shown

    assert await scheduled_run(client, 2) == "web: no commits since the last integrated one"


async def test_a_run_with_no_new_commits_starts_nothing(
    client: Client, steps: Steps, release: Release
) -> None:
    release.integrated(git(release.clone, "rev-parse", "HEAD"))

    assert await scheduled_run(client, 1) == "web: no commits since the last integrated one"
    assert steps.started == [] and steps.statuses == []


async def test_a_retried_run_starts_no_second_change_also_before_ci_reports(
    client: Client, steps: Steps, release: Release
) -> None:
    """The forge does not show the batch's CI yet (a busy worker): a run for the same head
    finds the batch change started for it and starts nothing; commits pushed since become the
    next batch, which starts where that one ends."""
    release.reports_to_forge = False
    first = release.commit("Fix the checkout total")
    change = client.get_workflow_handle(batch_change_id(APP.name, first), result_type=ChangeStatus)
    assert (await scheduled_run(client, 1)).startswith(f"started {change.id}: ")
    run = (await change.describe()).run_id

    assert await scheduled_run(client, 2) == "web: no commits since the last integrated one"
    later = release.commit("Cache prices")
    assert await scheduled_run(client, 3) == (
        f"started {batch_change_id(APP.name, later)}: 1 commit on main since {first[:12]}"
    )

    assert (await change.describe()).run_id == run
    assert (await change.result()).state == "completed"
    next_batch = client.get_workflow_handle(
        batch_change_id(APP.name, later), result_type=ChangeStatus
    )
    assert (await next_batch.result()).state == "completed"
    assert {commit for _, commit in steps.started} == {first, later}


async def test_a_pull_request_merged_into_a_scheduled_branch_ends_batched(
    client: Client, steps: Steps
) -> None:
    pr = ChangeInput(
        plan=ChangePlan(app=APP, environments=[environment("dev")]),
        repo=APP.repo,
        pr_number=5,
        title="Cache prices",
        author="bob",
        head_branch="topic",
        head_sha="5" * 40,
    )
    handle = await start(client, pr, change_id(APP.name, 5))
    await at_gate(handle, "merge", ChangeStatus)

    await pull_request(handle, "merged", merge_commit_sha="6" * 40)

    status: ChangeStatus = await handle.result()
    assert (status.state, status.reason) == (
        "batched",
        (
            f"merged as {'6' * 12}; main is integrated in batches on the CI schedule '{CRON}' "
            "(UTC): the next batch's change carries it"
        ),
    )
    assert {commit for _, commit in steps.started} == {"5" * 40}  # validated, never integrated
    assert status.rollouts == []


def test_with_nothing_integrated_yet_the_batch_is_the_history_read(
    release: Release, tmp_path: Path
) -> None:
    """An app whose CI never reported (a new repository): every commit, up to `HISTORY` back;
    the release branch defaults to the repository's default branch."""
    seed = git(release.clone, "rev-parse", "HEAD")
    fix = release.commit("Fix the checkout total")
    workspace = Workspace(tmp_path / "work")

    batch = release_batch(release.forge, workspace, APP.repo, None)

    assert batch is not None
    assert (batch.branch, batch.head, batch.since) == ("main", fix, None)
    assert [c.sha for c in batch.commits] == [fix, seed]
    with pytest.raises(BranchNotFound):
        release_batch(release.forge, workspace, APP.repo, "release")
