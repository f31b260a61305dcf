"""A change along a promotion graph with parallel stages, and holds on an environment, on a real
Temporal server with test_change.py's stand-ins (and a render that fails for the environments a
test names)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio import activity
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from activities.errors import typed_errors
from baton import changes, operations
from baton.changes import Refused
from baton.config import EnvironmentConfig
from baton.errors import NotFound
from baton.holds import Hold, HoldRequest, HoldState, UnholdRequest
from baton.models import (
    ChangePlan,
    ChangeStatus,
    Decision,
    Rendered,
    RolloutInput,
    RolloutStatus,
)
from baton.pr_comment import render
from baton.registry import RegistryUnreachable
from baton.render import RenderFailed
from baton.temporal import TaskQueues, Updates, WorkflowTypes, holds_id, rollout_id
from cli.main import render_change
from cli.watch import Watcher, now_line
from tests.conftest import at_gate, serving, until
from tests.fakes.records import fake_rendered
from tests.workflows import test_pipelines as pipelines
from tests.workflows import test_rollout as rollout
from tests.workflows.test_change import (
    abort,
    change_activities,
    environment,
    head,
    merge_commit,
    merged,
    rollout_of,
)
from tests.workflows.test_pipelines import APP, Steps, artifact
from tests.workflows.test_rollout import M, ui_details
from workflows import WORKFLOWS

steps, fresh_world = pipelines.steps, rollout.fresh_world

FAILING: set[str] = set()  # environments whose render fails
UNREACHABLE: set[str] = set()  # environments whose render finds the chart's registry down
DOWN = RegistryUnreachable(
    "cannot reach registry 127.0.0.1:5000 ([Errno 111] Connection refused): check that it runs "
    "and that the registry url in the config is right"
)


@activity.defn(name="render_environment")
@typed_errors
async def render_environment(input: RolloutInput) -> Rendered:
    if input.environment.name in FAILING:
        raise RenderFailed("helm template of chart", "Error: values.yaml: replicas is required\n")
    if input.environment.name in UNREACHABLE:
        raise DOWN
    return fake_rendered(input, [])


@pytest.fixture
async def client(isolated_client: Client, steps: Steps) -> AsyncIterator[Client]:
    FAILING.clear()
    UNREACHABLE.clear()
    rollout.world.polled_synced = {M}
    activities = change_activities(steps)
    activities[TaskQueues.DEPLOY] = [
        render_environment,
        *(a for a in activities[TaskQueues.DEPLOY] if a is not rollout.render_environment),
    ]
    async with serving(isolated_client, WORKFLOWS, activities):
        yield isolated_client


GRAPH = [["dev"], ["staging-a", "staging-b"], ["prod"]]


def graph_environments(approved: tuple[str, ...] | list[str] = ()) -> list[EnvironmentConfig]:
    """GRAPH's environments; those `approved` need one approval."""
    names = [name for stage in GRAPH for name in stage]
    return [environment(name, required=1 if name in approved else 0) for name in names]


async def along_graph(client: Client, approved: list[str]) -> WorkflowHandle:
    """Change 1 promoted along GRAPH, validated and merged."""
    return await merged(client, 1, *graph_environments(approved), stages=GRAPH)


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
    change = await along_graph(client, approved=["staging-a", "staging-b"])

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


async def test_show_watch_and_the_pr_comment_detail_each_rollout_of_a_parallel_stage(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    change = await along_graph(client, approved=["staging-a", "staging-b"])
    staging_a, staging_b = rollout_of(client, 1, "staging-a"), rollout_of(client, 1, "staging-b")

    # What `baton changes show` reads (the published memos, no query): both rollouts at their gate.
    detail = await until(
        lambda: changes.show(client, change.id),
        lambda d: (
            [r.gate.kind if r.gate else None for r in d.running_rollouts]
            == ["approval", "approval"]
        ),
        "both staging rollouts shown at their approval gate",
    )
    # In the order they started (their lanes answer in either order).
    running = detail.change.running_rollouts
    assert sorted(running) == [staging_a.id, staging_b.id]
    assert detail.change.current_rollout == running[0]  # what older readers take
    assert [
        rollout_id(APP.name, r.environment, merge_commit(1)) for r in detail.running_rollouts
    ] == running
    assert detail.rollout == detail.running_rollouts[0]
    gates = sorted((r.gate for r in detail.running_rollouts if r.gate), key=lambda g: g.environment)
    assert [(g.environment, g.required, g.approved_by) for g in gates] == [
        ("staging-a", 1, []),
        ("staging-b", 1, []),
    ]

    render_change(detail)
    shown = capsys.readouterr().out
    for env in ("staging-a", "staging-b"):
        assert f"rollout to {env}:\n" in shown
        assert f"approve with: baton approve {change.id} --env {env}\n" in shown
    assert shown.count("waiting: ") == 2 and shown.count("approvals: 0/1") == 2

    events = Watcher(change.id).update(detail)
    assert {e.environment for e in events if e.event == "gate"} == {"staging-a", "staging-b"}
    assert {e.scope for e in events if e.event == "started"} >= {"staging-a", "staging-b"}
    line = now_line(detail)
    assert "staging-a: approval" in line and "staging-b: approval" in line

    comment = render(detail, "http://ui", "default").splitlines()
    for env in ("staging-a", "staging-b"):
        assert any(line.startswith(f"| {env} | ⏳ approval | [#") for line in comment)
        assert sum(f"for {env}" in line for line in comment if line.startswith("⏳")) == 1
        assert f"[rollout to {env}](http://ui/namespaces/default/workflows/" in comment[-3]

    # Once staging-a is through, only staging-b is under way.
    await staging_a.execute_update(Updates.APPROVE, Decision(user="carol"))
    later = await until(
        lambda: changes.show(client, change.id),
        lambda d: [r.environment for r in d.running_rollouts] == ["staging-b"],
        "staging-b alone under way",
    )
    assert later.change.current_rollout == staging_b.id
    assert later.rollout is not None and later.rollout.environment == "staging-b"
    await staging_b.execute_update(Updates.APPROVE, Decision(user="carol"))
    final = await change.result()
    assert (final.state, final.running_rollouts, final.current_rollout) == ("completed", [], None)


async def test_show_says_what_each_rollout_of_a_parallel_stage_waits_out(client: Client) -> None:
    UNREACHABLE.update(["staging-a", "staging-b"])
    change = await along_graph(client, approved=[])

    detail = await until(
        lambda: changes.show(client, change.id),
        lambda d: len(d.waiting) == 2,
        "both staging rollouts waiting out the registry",
    )
    for env, line in zip(["staging-a", "staging-b"], sorted(detail.waiting), strict=True):
        assert line.startswith(f"{env}: waiting since "), line
        assert f" UTC for render: {DOWN} (attempt " in line, line

    UNREACHABLE.clear()  # the registry is back: both go on, and so does prod
    final = await change.result()
    assert (final.state, final.reason) == (
        "completed",
        "deployed to dev, staging-a, staging-b, prod",
    )


async def test_a_failed_parallel_stage_stops_what_follows_but_not_its_sibling(
    client: Client,
) -> None:
    FAILING.add("staging-b")
    change = await along_graph(client, approved=["staging-a"])
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


async def test_a_promotion_redeploys_an_earlier_artifact_through_the_environment_s_gates(
    client: Client,
) -> None:
    first = await merged(client, 1, environment("dev"))
    assert (await first.result()).state == "completed"
    prod = environment("prod", required=1)
    plan = ChangePlan(app=APP, environments=[prod], stages=[["prod"]])

    promotion = await operations.promote(client, plan, merge_commit(1)[:12], "olivia")

    assert promotion == f"change/{APP.name}/promote-{merge_commit(1)[:12]}-prod"
    change = client.get_workflow_handle(promotion, result_type=ChangeStatus)
    deploy = rollout_of(client, 1, "prod")
    gate = await at_gate(deploy, "approval", RolloutStatus)
    assert gate.gate is not None and gate.gate.required == 1
    await deploy.execute_update(Updates.APPROVE, Decision(user="carol"))
    status = await change.result()
    assert (status.state, status.reason) == ("completed", "deployed to prod")
    assert status.artifact == artifact(merge_commit(1))
    assert status.timeline[0].detail == (
        f"olivia promotes {merge_commit(1)[:12]} (built for {first.id}) into prod"
    )
    with pytest.raises(NotFound, match="no artifact of web at 0123456"):
        await operations.promote(client, plan, "0123456", "olivia")


async def test_a_retry_rolls_the_failed_environment_out_again_and_goes_on_from_there(
    client: Client, steps: Steps
) -> None:
    FAILING.add("staging-b")
    envs = graph_environments()
    change = await along_graph(client, approved=[])
    failed = await change.result()
    assert positions(failed)["prod"] == "blocked"
    plan = ChangePlan(app=APP, environments=envs, stages=GRAPH)
    with pytest.raises(Refused, match="did not fail in staging-a: it was deployed there"):
        await operations.retry(
            client, ChangePlan(app=APP, environments=envs), change.id, "staging-a", "olivia"
        )

    FAILING.clear()  # the cause is fixed
    assert await operations.retry(client, plan, change.id, "staging-b", "olivia") == change.id

    status = await client.get_workflow_handle(change.id, result_type=ChangeStatus).result()
    assert (status.state, status.reason) == (
        "completed",
        "deployed to dev, staging-a, staging-b, prod",
    )
    deployed = [(r.environment, r.outcome) for r in status.rollouts]
    assert sorted(deployed[:3]) == [
        ("dev", "deployed"),
        ("staging-a", "deployed"),
        ("staging-b", "failed"),
    ]  # from the first run: dev and staging-a are not rolled out again
    assert deployed[3:] == [("staging-b", "deployed"), ("prod", "deployed")]
    names = [stage.name for stage in status.timeline]
    assert names[0] == f"validate {head(1)[:12]}" and names.count("deploy to staging-b") == 2
    assert len(steps.started) == len({c for c in steps.started})  # nothing validated or built again


async def test_an_abort_stops_every_rollout_of_a_parallel_stage(client: Client) -> None:
    change = await along_graph(client, approved=["staging-a", "staging-b"])
    staging = [rollout_of(client, 1, "staging-a"), rollout_of(client, 1, "staging-b")]
    for rollout_handle in staging:
        await at_gate(rollout_handle, "approval", RolloutStatus)

    await abort(change, "alice", "wrong branch")

    final = await change.result()
    assert (final.state, final.reason) == ("aborted", "aborted by alice: wrong branch")
    assert positions(final) == {
        "dev": "deployed",
        "staging-a": "aborted",
        "staging-b": "aborted",
        "prod": "waiting",
    }
    for rollout_handle in staging:
        assert (await rollout_handle.describe()).status != WorkflowExecutionStatus.RUNNING
    assert not await exists(rollout_of(client, 1, "prod"))
