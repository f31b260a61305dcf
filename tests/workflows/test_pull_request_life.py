"""Pull-request life as it happens: forge events through Baton's real Ingress into ChangeWorkflow,
on a real Temporal server, with test_pipelines.py's stand-in steps.

Closing, reopening and retargeting interleave with the workflow however the deliveries arrive;
the commit status a cancelled validation reports to the forge can be held (`Closing`), which
keeps the change in the middle of closing as long as a test needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from activities.forge import ChangeCommentInput, CommitStatusInput
from baton.config import BatonConfig
from baton.forge_events import PullRequestHook
from baton.ingress import Ingress
from baton.models import ChangeStatus
from baton.settings import Settings
from baton.temporal import TaskQueues, change_id
from tests.conftest import at_gate, serving, until
from tests.workflows import test_pipelines as pipelines
from tests.workflows.test_pipelines import APP, Steps
from workflows import WORKFLOWS

steps = pipelines.steps  # the stand-ins' fixture

NUMBER = 12
HEAD = "1" * 40
MERGE = "2" * 40
CHANGE = change_id(APP.name, NUMBER)


@dataclass
class Closing:
    """Holds the "error" status a cancelled validation reports, until `release` is set."""

    reporting: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
def closing() -> Closing:
    closing = Closing()
    closing.release.set()
    return closing


@pytest.fixture
def commenting() -> Closing:
    """Holds the change's PR comment updates (the last thing a run ending does), once cleared."""
    commenting = Closing()
    commenting.release.set()
    return commenting


@pytest.fixture
async def client(
    isolated_client: Client, steps: Steps, closing: Closing, commenting: Closing
) -> AsyncIterator[Client]:
    activities = steps.activities()
    recorded, comment = activities[TaskQueues.WORKFLOWS][:2]

    @activity.defn(name="set_commit_status")
    async def set_commit_status(input: CommitStatusInput) -> None:
        if input.state == "error":
            closing.reporting.set()
            await closing.release.wait()
        await recorded(input)

    @activity.defn(name="update_change_comment")
    async def update_change_comment(input: ChangeCommentInput) -> None:
        if not commenting.release.is_set():
            commenting.reporting.set()
            await commenting.release.wait()
        await comment(input)

    activities[TaskQueues.WORKFLOWS][:2] = [set_commit_status, update_change_comment]
    async with serving(isolated_client, WORKFLOWS, activities):
        yield isolated_client


@pytest.fixture
def ingress(client: Client) -> Ingress:
    """The API's Ingress, as the webhook routes call it."""
    return Ingress(client, BatonConfig(apps=[APP]), Settings())


def hook(
    action: str, *, base: str = "main", merged: bool = False, **fields: object
) -> PullRequestHook:
    """A pull_request delivery about PR #12 of the app, normalized as the API does."""
    return PullRequestHook(
        action=action,
        repo=APP.repo,
        default_branch="main",
        number=NUMBER,
        title="Fix typo",
        author="alice",
        head_branch="fix-typo",
        head_sha=HEAD,
        base_branch=base,
        merged=merged,
        merge_commit_sha=MERGE if merged else None,
        **fields,
    )


deliveries = iter(range(1_000_000))


async def deliver(ingress: Ingress, delivery: PullRequestHook) -> str:
    """The API's answer to the delivery."""
    return (await ingress.pull_request(delivery, f"delivery-{next(deliveries)}")).message


async def runs(client: Client) -> list[WorkflowExecutionStatus | None]:
    """The status of each run of the change, oldest first, once visibility lists them all."""
    return [e.status async for e in client.list_workflows(f"WorkflowId = '{CHANGE}'")][::-1]


def stages(status: ChangeStatus) -> list[tuple[str, str, str]]:
    return [(stage.name, stage.outcome, stage.detail) for stage in status.timeline]


async def awaiting_merge(client: Client, ingress: Ingress) -> WorkflowHandle:
    """The change of PR #12, opened and validated."""
    await deliver(ingress, hook("opened"))
    change = client.get_workflow_handle(CHANGE, result_type=ChangeStatus)
    await at_gate(change, "merge", ChangeStatus)
    return change


async def validating(client: Client, steps: Steps) -> WorkflowHandle:
    """The change's checks and the build beside them are running (held until cancelled)."""
    await until(lambda: steps.ran(HEAD), lambda ran: len(ran) == 5, "the checks to run")
    return client.get_workflow_handle(CHANGE, result_type=ChangeStatus)


async def test_case_21_reopened_while_closing_keeps_the_change_running(
    client: Client, ingress: Ingress, steps: Steps, closing: Closing
) -> None:
    """Case 21: the PR is closed while validating and reopened while the cancelled validation
    still reports "error" to the forge; its later merge must be integrated."""
    steps.held = {HEAD}
    assert await deliver(ingress, hook("opened")) == f"started {CHANGE}"
    change = await validating(client, steps)
    closing.release.clear()

    assert await deliver(ingress, hook("closed")) == f"signalled {CHANGE}"
    await closing.reporting.wait()
    assert await deliver(ingress, hook("reopened")) == f"reopened {CHANGE}"
    steps.held.clear()
    closing.release.set()

    status = await at_gate(change, "merge", ChangeStatus)
    assert status.state == "awaiting-merge"
    assert await deliver(ingress, hook("closed", merged=True)) == f"signalled {CHANGE}"
    status = await change.result()
    assert (status.state, status.merge_commit) == ("completed", MERGE)
    assert stages(status) == [
        (f"validate {HEAD[:12]}", "superseded", "closed before validation finished"),
        (f"validate {HEAD[:12]}", "succeeded", "5 step(s) passed"),
        (f"integrate {MERGE[:12]}", "succeeded", "9 step(s) passed"),
    ]
    assert await until(  # visibility records the close a moment after the result
        lambda: runs(client),
        lambda seen: WorkflowExecutionStatus.RUNNING not in seen,
        "visibility to list the change as ended",
    ) == [WorkflowExecutionStatus.COMPLETED]


async def test_reopened_after_the_change_closed_starts_a_new_run(
    client: Client, ingress: Ingress, steps: Steps
) -> None:
    change = await awaiting_merge(client, ingress)
    await deliver(ingress, hook("closed"))
    assert (await change.result()).state == "closed"

    assert await deliver(ingress, hook("reopened")) == f"reopened {CHANGE}"

    status = await at_gate(
        client.get_workflow_handle(CHANGE, result_type=ChangeStatus), "merge", ChangeStatus
    )
    assert stages(status) == [(f"validate {HEAD[:12]}", "succeeded", "5 step(s) passed")]
    assert await until(
        lambda: runs(client),
        lambda seen: len(seen) == 2,
        "visibility to list both runs",
    ) == [WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.RUNNING]


async def test_closed_and_reopened_crossing_leave_one_running_change_that_validates_again(
    client: Client, ingress: Ingress, steps: Steps
) -> None:
    change = await awaiting_merge(client, ingress)

    # The forge sent them a second apart; they may reach Temporal either way round.
    closed = hook("closed", updated_at=datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC))
    reopened = hook("reopened", updated_at=datetime(2026, 11, 30, 12, 0, 1, tzinfo=UTC))
    await asyncio.gather(deliver(ingress, reopened), deliver(ingress, closed))

    # Whether the closing run took the reopen or a new run did, the PR is validated again.
    await until(lambda: steps.ran(HEAD).count("image"), lambda n: n == 2, "a second validation")
    status = await at_gate(change, "merge", ChangeStatus)
    assert status.state == "awaiting-merge"
    running = await until(
        lambda: runs(client),
        lambda seen: seen.count(WorkflowExecutionStatus.RUNNING) == 1,
        "one running change",
    )
    assert running[-1] == WorkflowExecutionStatus.RUNNING


async def test_reopened_while_the_closed_change_updates_its_comment_validates_again(
    client: Client, ingress: Ingress, steps: Steps, commenting: Closing
) -> None:
    change = await awaiting_merge(client, ingress)
    commenting.release.clear()

    assert await deliver(ingress, hook("closed")) == f"signalled {CHANGE}"
    await commenting.reporting.wait()  # the run is ending: closed, its comment being updated
    assert await deliver(ingress, hook("reopened")) == f"reopened {CHANGE}"
    commenting.release.set()

    await until(lambda: steps.ran(HEAD).count("image"), lambda n: n == 2, "a second validation")
    status = await at_gate(change, "merge", ChangeStatus)
    assert status.state == "awaiting-merge"
    assert await runs(client) == [WorkflowExecutionStatus.RUNNING]  # the same run carried on


async def test_retargeted_away_stops_the_change_and_back_starts_it_again(
    client: Client, ingress: Ingress, steps: Steps
) -> None:
    change = await awaiting_merge(client, ingress)

    away = hook("edited", base="release-1.x", base_changed=True)
    assert await deliver(ingress, away) == f"signalled {CHANGE}"
    status = await change.result()
    assert (status.state, status.reason) == (
        "closed",
        "pull request retargeted to release-1.x: only pull requests into main are carried",
    )
    merged_there = hook("closed", base="release-1.x", merged=True)
    assert await deliver(ingress, merged_there) == (
        f"ignored: #{NUMBER} is into 'release-1.x', not the release branch 'main'"
    )

    assert await deliver(ingress, hook("edited", base_changed=True)) == f"reopened {CHANGE}"
    status = await at_gate(
        client.get_workflow_handle(CHANGE, result_type=ChangeStatus), "merge", ChangeStatus
    )
    assert status.state == "awaiting-merge"
