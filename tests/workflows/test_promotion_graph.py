"""A change along a promotion graph with parallel stages, and holds on an environment, on a real
Temporal server with test_change.py's stand-ins (and a render that fails for the environments a
test names)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from activities.errors import typed_errors
from baton.holds import Hold, HoldRequest, HoldState, UnholdRequest
from baton.models import (
    ChangeStatus,
    Decision,
    Rendered,
    RolloutInput,
    RolloutStatus,
)
from baton.render import RenderFailed
from baton.temporal import TaskQueues, Updates, WorkflowTypes, holds_id
from tests.conftest import at_gate, serving, until
from tests.fakes.records import fake_rendered
from tests.workflows import test_pipelines as pipelines
from tests.workflows import test_rollout as rollout
from tests.workflows.test_change import (
    change_activities,
    environment,
    merged,
    rollout_of,
)
from tests.workflows.test_pipelines import Steps
from tests.workflows.test_rollout import M, ui_details
from workflows import WORKFLOWS

steps, fresh_world = pipelines.steps, rollout.fresh_world

FAILING: set[str] = set()  # environments whose render fails


@activity.defn(name="render_environment")
@typed_errors
async def render_environment(input: RolloutInput) -> Rendered:
    if input.environment.name in FAILING:
        raise RenderFailed("helm template of chart", "Error: values.yaml: replicas is required\n")
    return fake_rendered(input, [])


@pytest.fixture
async def client(isolated_client: Client, steps: Steps) -> AsyncIterator[Client]:
    FAILING.clear()
    rollout.world.polled_synced = {M}
    activities = change_activities(steps)
    activities[TaskQueues.DEPLOY] = [
        render_environment,
        *(a for a in activities[TaskQueues.DEPLOY] if a is not rollout.render_environment),
    ]
    async with serving(isolated_client, WORKFLOWS, activities):
        yield isolated_client


GRAPH = [["dev"], ["staging-a", "staging-b"], ["prod"]]


def positions(status: ChangeStatus) -> dict[str, str]:
    return {step.environment: step.position for step in status.promotion}


async def exists(handle: WorkflowHandle) -> bool:
    try:
        await handle.describe()
    except RPCError:
        return False
    return True


async def test_a_parallel_stage_rolls_out_at_once_and_the_next_waits_for_all_of_it(
    client: Client,
) -> None:
    change = await merged(
        client,
        1,
        environment("dev"),
        environment("staging-a", required=1),
        environment("staging-b", required=1),
        environment("prod"),
        stages=GRAPH,
    )

    # Both staging rollouts wait for their approval at the same time: they run at once.
    staging_a, staging_b = rollout_of(client, 1, "staging-a"), rollout_of(client, 1, "staging-b")
    await at_gate(staging_a, "approval", RolloutStatus)
    await at_gate(staging_b, "approval", RolloutStatus)
    status = await until(
        lambda: change.query("status", result_type=ChangeStatus),
        lambda s: positions(s).get("staging-b") == "running",
        "both staging environments running",
    )
    assert positions(status) == {
        "dev": "deployed",
        "staging-a": "running",
        "staging-b": "running",
        "prod": "waiting",
    }
    assert [s.after for s in status.promotion] == [[], ["dev"], ["dev"], ["staging-a", "staging-b"]]

    await staging_a.execute_update(Updates.APPROVE, Decision(user="carol"))
    await until(
        lambda: change.query("status", result_type=ChangeStatus),
        lambda s: positions(s)["staging-a"] == "deployed",
        "staging-a deployed",
    )
    assert not await exists(rollout_of(client, 1, "prod"))  # prod waits for staging-b too

    await staging_b.execute_update(Updates.APPROVE, Decision(user="carol"))
    final = await change.result()

    assert (final.state, final.reason) == (
        "completed",
        "deployed to dev, staging-a, staging-b, prod",
    )
    assert set(positions(final).values()) == {"deployed"}
    assert [r.environment for r in final.rollouts][-1] == "prod"
    assert "promotion: dev ✓ → [staging-a ✓ | staging-b ✓] → prod ✓" in await ui_details(change)


async def test_a_failed_parallel_stage_stops_what_follows_but_not_its_sibling(
    client: Client,
) -> None:
    FAILING.add("staging-b")
    change = await merged(
        client,
        1,
        environment("dev"),
        environment("staging-a", required=1),
        environment("staging-b"),
        environment("prod"),
        stages=GRAPH,
    )
    staging_a = rollout_of(client, 1, "staging-a")
    await at_gate(staging_a, "approval", RolloutStatus)
    await until(
        lambda: change.query("status", result_type=ChangeStatus),
        lambda s: positions(s)["staging-b"] == "failed",
        "staging-b failed",
    )

    # staging-b's failure does not stop staging-a, which still waits for and takes its approval.
    await staging_a.execute_update(Updates.APPROVE, Decision(user="carol"))
    final = await change.result()

    assert positions(final) == {
        "dev": "deployed",
        "staging-a": "deployed",
        "staging-b": "failed",
        "prod": "blocked",
    }
    assert final.state == "failed"
    assert final.reason == (
        "staging-b: failed: helm template of chart failed: values.yaml: replicas is required "
        "(prod not started)"
    )
    assert not await exists(rollout_of(client, 1, "prod"))


async def hold(client: Client, request: HoldRequest) -> Hold:
    """Place a hold as the API does (update-with-start on the environment's holds workflow)."""
    start_holds = WithStartWorkflowOperation(
        WorkflowTypes.HOLDS,
        HoldState(environment=request.environment),
        id=holds_id(request.environment),
        task_queue=TaskQueues.WORKFLOWS,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return await client.execute_update_with_start_workflow(
        Updates.HOLD, request, start_workflow_operation=start_holds, result_type=Hold
    )


async def test_a_held_environment_stops_the_change_there_with_the_reason_until_unheld(
    client: Client,
) -> None:
    await hold(client, HoldRequest(environment="prod", reason="incident 42", by="olivia"))
    change = await merged(client, 1, environment("dev"), environment("prod"))

    status = await at_gate(change, "hold", ChangeStatus)
    assert status.gate is not None
    assert status.gate.environment == "prod"
    assert status.gate.waiting_on == ["olivia"]
    assert "prod is on hold by olivia: incident 42" in status.gate.description
    assert positions(status) == {"dev": "deployed", "prod": "held"}
    assert not await exists(rollout_of(client, 1, "prod"))

    # A hold on another app does not stop it; lifting the one on every app does.
    await hold(client, HoldRequest(environment="prod", app="other", reason="x", by="olivia"))
    holds = client.get_workflow_handle(holds_id("prod"))
    await holds.execute_update(Updates.UNHOLD, UnholdRequest(environment="prod", by="olivia"))
    final = await change.result()

    assert (final.state, final.reason) == ("completed", "deployed to dev, prod")
    assert [(s.name, s.outcome, s.detail) for s in final.timeline if "hold" in s.name] == [
        ("hold on prod", "succeeded", "hold lifted")
    ]
