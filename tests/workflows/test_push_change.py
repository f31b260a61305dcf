"""ChangeWorkflow for a commit pushed to the release branch (`trigger: push`), on a real Temporal
server with test_change.py's stand-ins; `merged_pull_request` answers from `merges`, the forge's
record of which pull request merged as which commit (GitHub's `merge_commit_sha`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle

from activities.forge import CommitInput
from baton.config import EnvironmentConfig
from baton.models import ChangeInput, ChangePlan, ChangeStatus, RolloutStatus
from baton.temporal import (
    Queries,
    SearchAttributes,
    TaskQueues,
    push_change_id,
    rollout_id,
)
from tests.conftest import at_gate, serving
from tests.workflows import test_change as change_tests
from tests.workflows import test_rollout as rollout
from tests.workflows.test_change import change_activities, environment, start, timeline
from tests.workflows.test_pipelines import APP, Steps, artifact
from tests.workflows.test_rollout import M
from workflows import WORKFLOWS

# test_change's fixtures: fresh stand-in `Steps` and a fresh rollout `world`.
steps, fresh_world = change_tests.steps, change_tests.fresh_world

PUSHED = "c" * 40


@pytest.fixture
def merges() -> dict[str, int]:
    """Commit → the pull request the forge merged as it."""
    return {}


@pytest.fixture
async def client(
    isolated_client: Client, steps: Steps, merges: dict[str, int]
) -> AsyncIterator[Client]:
    @activity.defn(name="merged_pull_request")
    async def merged_pull_request(input: CommitInput) -> int | None:
        return merges.get(input.sha)

    activities = change_activities(steps)
    activities[TaskQueues.WORKFLOWS].append(merged_pull_request)
    async with serving(isolated_client, WORKFLOWS, activities):
        yield isolated_client


async def pushed(
    client: Client,
    sha: str,
    *environments: str | EnvironmentConfig,
    commit_authors: list[str] | None = None,
) -> WorkflowHandle:
    """Start the change of `sha` pushed to main by alice, as the API does on the push delivery
    (`commit_authors`: who wrote its commits, as the delivery named them)."""
    configs = [e if isinstance(e, EnvironmentConfig) else environment(e) for e in environments]
    change = ChangeInput(
        plan=ChangePlan(app=APP, environments=configs),
        repo=APP.repo,
        trigger="push",
        title="Fix the checkout total",
        author="alice",
        commit_authors=commit_authors or [],
        head_branch="main",
        head_sha=sha,
    )
    return await start(client, change, push_change_id(APP.name, sha))


async def test_a_pushed_commit_is_integrated_and_deployed_to_every_environment(
    client: Client, steps: Steps
) -> None:
    rollout.world.polled_synced = {M}
    change = await pushed(client, PUSHED, "dev", "prod")

    status = await change.result()

    assert (status.state, status.reason) == ("completed", "deployed to dev, prod")
    assert (status.pr_number, status.merge_commit) == (None, PUSHED)
    assert [(r.environment, r.outcome) for r in status.rollouts] == [
        ("dev", "deployed"),
        ("prod", "deployed"),
    ]
    assert status.artifact == artifact(PUSHED)
    assert [(name, outcome) for name, outcome, _ in timeline(status)] == [
        ("note", "skipped"),
        (f"integrate {PUSHED[:12]}", "succeeded"),
        ("deploy to dev", "succeeded"),
        ("deploy to prod", "succeeded"),
    ]
    assert (
        timeline(status)[0][2]
        == f"{PUSHED[:12]} was pushed to main by alice without a pull request"
    )
    # No PR pipeline: the commit is on main already; CI reports on it.
    assert {commit for _, commit in steps.started} == {PUSHED}
    assert steps.reported(PUSHED)[-1] == ("baton/ci", "success", "9 step(s) passed")
    attributes = (await change.describe()).typed_search_attributes
    assert attributes.get(SearchAttributes.COMMIT) == PUSHED
    assert attributes.get(SearchAttributes.PR) is None


async def test_a_pushed_commit_a_pull_request_merged_is_left_to_that_change(
    client: Client, steps: Steps, merges: dict[str, int]
) -> None:
    merges[PUSHED] = 7

    status = await (await pushed(client, PUSHED, "prod")).result()

    assert (status.state, status.reason) == (
        "superseded",
        f"{PUSHED[:12]} is the merge of #7: its change carries it",
    )
    assert steps.started == [] and status.rollouts == [] and status.timeline == []


async def test_a_failing_pushed_commit_is_not_deployed(client: Client, steps: Steps) -> None:
    steps.failing = {"long_test": "1 failed: test_checkout_total"}

    status = await (await pushed(client, PUSHED, "prod")).result()

    assert (status.state, status.reason) == (
        "failed",
        "CI failed: long_test: 1 failed: test_checkout_total",
    )
    assert status.rollouts == []


async def test_a_pushed_commit_names_its_pusher_and_its_authors_who_may_not_approve_it(
    client: Client,
) -> None:
    """alice pushed dave's and sam's commits: the timeline names all three, and dave, one of
    prod's approvers, may not approve it (prod forbids self-approval)."""
    change = await pushed(
        client,
        PUSHED,
        environment("prod", required=1),
        commit_authors=["dave", "dave-gh", "sam@laptop.local"],
    )
    deploy = client.get_workflow_handle(rollout_id(APP.name, "prod", PUSHED))
    await at_gate(deploy, "approval", RolloutStatus)

    assert "dave is an author of the change's commits" in await rollout.refused(deploy, "dave")
    gate = (await deploy.query(Queries.STATUS, result_type=RolloutStatus)).gate
    assert gate is not None and gate.waiting_on == ["carol"]
    status = await change.query(Queries.STATUS, result_type=ChangeStatus)
    assert timeline(status)[0][2] == (
        f"{PUSHED[:12]} was pushed to main by alice without a pull request, "
        "its commits by dave, dave-gh, sam@laptop.local"
    )
    assert status.authors == ["alice", "dave", "dave-gh", "sam@laptop.local"]
