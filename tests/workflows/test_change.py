"""ChangeWorkflow on a real Temporal server: its real pipelines, lanes and rollouts, stand-in activities.

The pipeline steps are test_pipelines.py's `Steps`, the deploy activities test_rollout.py's
stand-ins (its `world`: a rollout syncs by polling for the commits in `polled_synced`, else on a
sync event); a lane's `join_lane` and `is_running` and the holds' `watch_holds` are the real ones. Children and activities run
on Baton's fixed task queues, so each test has a namespace of its own (`isolated_client`).

Tests drive a change as the API and the CLI do, by the names in `baton.temporal`: forge events by
the `pull_request_event` signal, `abort` and rollout approvals by update, Flux events by signal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError

from activities.deploy import CloseInput
from activities.lane import is_running, join_lane, watch_holds
from baton import changes
from baton.config import ApprovalPolicy, EnvironmentConfig, LanePolicy
from baton.models import (
    AbortInput,
    ChangeInput,
    ChangePlan,
    ChangeStatus,
    Decision,
    PullRequestEvent,
    RolloutStatus,
    SyncEvent,
)
from baton.render import RenderFailed
from baton.temporal import (
    SearchAttributes,
    Signals,
    TaskQueues,
    Updates,
    WorkflowTypes,
    change_id,
    initial_search_attributes,
    pipeline_id,
    rollout_id,
)
from tests.conftest import at_gate, serving, until
from tests.workflows import test_pipelines as pipelines
from tests.workflows import test_rollout as rollout
from tests.workflows.test_pipelines import APP, Steps, artifact
from tests.workflows.test_rollout import M
from workflows import WORKFLOWS

# The stand-ins' fixtures: fresh `Steps`, and a fresh `world` for test_rollout's stand-ins.
steps, fresh_world = pipelines.steps, rollout.fresh_world


def head(number: int) -> str:
    """The head commit change `number`'s pull request is opened with."""
    return str(number).ljust(40, "a")


def merge_commit(number: int) -> str:
    return str(number).ljust(40, "b")


def environment(name: str, required: int = 0, lane: LanePolicy = "latest") -> EnvironmentConfig:
    approvals = ApprovalPolicy(required=required, approvers=["carol", "dave"])
    return EnvironmentConfig(name=name, namespace=name, approvals=approvals, lane=lane)


@pytest.fixture
def closing() -> asyncio.Event:
    """Set while GitOps PRs close at once; a test clears it to keep a PR closing."""
    event = asyncio.Event()
    event.set()
    return event


def change_activities(steps: Steps, close_gitops_pr: Callable = rollout.close) -> dict[str, list]:
    """The stand-ins a change runs on, by task queue: `steps`, the lane's, the rollout's."""
    activities = steps.activities()
    activities[TaskQueues.WORKFLOWS] += [join_lane, is_running, watch_holds]
    activities[TaskQueues.DEPLOY] = [
        rollout.render_environment,
        rollout.propose,
        rollout.merge,
        rollout.request_reconcile,
        rollout.check_sync,
        close_gitops_pr,
    ]
    return activities


@pytest.fixture
async def client(
    isolated_client: Client, steps: Steps, closing: asyncio.Event
) -> AsyncIterator[Client]:
    @activity.defn(name="close_gitops_pr")
    async def close_gitops_pr(input: CloseInput) -> None:
        await closing.wait()
        await rollout.close(input)

    async with serving(isolated_client, WORKFLOWS, change_activities(steps, close_gitops_pr)):
        yield isolated_client


async def open_change(
    client: Client,
    number: int,
    *environments: EnvironmentConfig,
    stages: list[list[str]] | None = None,
    plan: ChangePlan | None = None,
) -> WorkflowHandle:
    """Start change `number` as the API does when its pull request is opened (by alice, from
    `feature-<number>`), under `plan` or one promoting to `environments` along `stages` (by
    default one environment after the other)."""
    change = ChangeInput(
        plan=plan or ChangePlan(app=APP, environments=list(environments), stages=stages or []),
        repo=APP.repo,
        pr_number=number,
        title=f"change {number}",
        author="alice",
        head_branch=f"feature-{number}",
        head_sha=head(number),
    )
    return await start(client, change, change_id(APP.name, number))


async def start(client: Client, change: ChangeInput, workflow_id: str) -> WorkflowHandle:
    """Start `change` as `workflow_id`, as the API does."""
    return await client.start_workflow(
        WorkflowTypes.CHANGE,
        change,
        id=workflow_id,
        task_queue=TaskQueues.WORKFLOWS,
        search_attributes=initial_search_attributes(change),
        result_type=ChangeStatus,
    )


async def pull_request(change: WorkflowHandle, action: str, **fields: str) -> None:
    """A forge event about the change's pull request, as the API signals it."""
    await change.signal(Signals.PULL_REQUEST_EVENT, PullRequestEvent(action=action, **fields))


async def merged(
    client: Client,
    number: int,
    *environments: EnvironmentConfig,
    stages: list[list[str]] | None = None,
) -> WorkflowHandle:
    """Change `number`, validated and then merged as `merge_commit(number)`."""
    change = await open_change(client, number, *environments, stages=stages)
    await at_gate(change, "merge", ChangeStatus)
    await pull_request(change, "merged", merge_commit_sha=merge_commit(number))
    return change


def rollout_of(client: Client, number: int, environment: str) -> WorkflowHandle:
    """Change `number`'s rollout into `environment`."""
    return client.get_workflow_handle(rollout_id(APP.name, environment, merge_commit(number)))


async def promoting(client: Client) -> tuple[WorkflowHandle, WorkflowHandle]:
    """Change 1, merged, and its rollout into prod, waiting for an approval."""
    change = await merged(client, 1, environment("prod", required=1))
    deploy = rollout_of(client, 1, "prod")
    await at_gate(deploy, "approval", RolloutStatus)
    return change, deploy


async def abort(change: WorkflowHandle, user: str, reason: str) -> str:
    return await change.execute_update(
        Updates.ABORT, AbortInput(user=user, reason=reason), result_type=str
    )


async def refusal(change: WorkflowHandle, user: str, reason: str) -> str:
    """Why the change refuses an abort."""
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await abort(change, user, reason)
    return refused.value.cause.message


async def synced(deploy: WorkflowHandle) -> None:
    """Flux reports the rollout's merge commit ready, once the rollout waits for it."""
    await at_gate(deploy, "sync", RolloutStatus)
    await deploy.signal(Signals.SYNC_EVENT, SyncEvent(revision=M, state="ready"))


def timeline(status: ChangeStatus) -> list[tuple[str, str, str]]:
    return [(stage.name, stage.outcome, stage.detail) for stage in status.timeline]


async def test_a_new_head_supersedes_the_running_validation(client: Client, steps: Steps) -> None:
    first, second = head(1), "f" * 40
    steps.held = {first}
    change = await open_change(client, 1)
    # The four checks and the build beside them.
    await until(lambda: steps.ran(first), lambda ran: len(ran) == 5, "checking the first head")

    await pull_request(change, "synchronize", head_sha=second)

    status = await at_gate(change, "merge", ChangeStatus)
    assert (status.state, status.head_sha) == ("awaiting-merge", second)
    assert timeline(status) == [
        (f"validate {first[:12]}", "superseded", "new head before validation finished"),
        (f"validate {second[:12]}", "succeeded", "5 step(s) passed"),
    ]
    assert steps.reported(first) == [
        ("baton/pr", "pending", "PR pipeline running"),
        ("baton/pr", "error", "superseded by a newer commit"),
    ]
    assert steps.reported(second)[-1] == ("baton/pr", "success", "5 step(s) passed")
    cancelled = client.get_workflow_handle(pipeline_id(change.id, "pr-1"))
    assert (await cancelled.describe()).status == WorkflowExecutionStatus.CANCELED


async def test_a_pull_request_closed_without_merging_ends_the_change_closed(
    client: Client, steps: Steps
) -> None:
    change = await open_change(client, 1, environment("prod"))
    await at_gate(change, "merge", ChangeStatus)

    await pull_request(change, "closed")

    status = await change.result()
    assert (status.state, status.reason) == ("closed", "pull request closed without merging")
    assert [stage.name for stage in status.timeline] == [f"validate {head(1)[:12]}"]
    assert {commit for _, commit in steps.started} == {head(1)}  # nothing integrated


async def test_ci_failure_ends_the_change_failed_with_the_failing_checks_summary(
    client: Client, steps: Steps
) -> None:
    steps.failing = {"long_test": "2 failed, 118 passed: test_checkout_total"}
    change = await merged(client, 1, environment("prod"))

    status = await change.result()

    assert status.state == "failed"
    assert status.reason == "CI failed: long_test: 2 failed, 118 passed: test_checkout_total"
    assert timeline(status)[-1] == (
        f"integrate {merge_commit(1)[:12]}",
        "failed",
        "long_test: 2 failed, 118 passed: test_checkout_total",
    )
    assert status.artifact is None and status.rollouts == []


async def test_the_happy_path_deploys_to_every_environment_in_order(
    client: Client, steps: Steps
) -> None:
    rollout.world.polled_synced = {M}
    change = await merged(client, 1, environment("dev"), environment("prod"))

    status = await change.result()

    assert (status.state, status.reason) == ("completed", "deployed to dev, prod")
    assert [(r.environment, r.outcome) for r in status.rollouts] == [
        ("dev", "deployed"),
        ("prod", "deployed"),
    ]
    assert status.artifact == artifact(merge_commit(1))
    assert [(stage.name, stage.outcome) for stage in status.timeline] == [
        (f"validate {head(1)[:12]}", "succeeded"),
        (f"integrate {merge_commit(1)[:12]}", "succeeded"),
        ("deploy to dev", "succeeded"),
        ("deploy to prod", "succeeded"),
    ]
    assert steps.reported(merge_commit(1))[-1] == ("baton/ci", "success", "9 step(s) passed")
    attributes = (await change.describe()).typed_search_attributes
    assert attributes.get(SearchAttributes.STATE) == "completed"
    assert attributes.get(SearchAttributes.LEGACY_STAGE) is None
    assert attributes.get(SearchAttributes.ENVIRONMENT) == "prod"


async def test_a_rollout_whose_render_fails_shows_the_tools_words_in_the_change(
    client: Client,
) -> None:
    helm = "Error: execution error at (web/templates/a.yaml:3:9): databaseUrl is required\n"
    rollout.world.render_error = RenderFailed("helm template of chart", helm)
    change = await merged(client, 1, environment("dev"))

    status = await change.result()

    reason = "helm template of chart failed: execution error at (web/templates/a.yaml:3:9): "
    reason += "databaseUrl is required"
    assert [(r.environment, r.outcome, r.reason) for r in status.rollouts] == [
        ("dev", "failed", reason)
    ]
    assert status.timeline[-1].detail == f"failed: {reason}"
    assert (status.state, status.reason) == ("failed", f"dev: failed: {reason}")


async def test_abort_ends_the_change_aborted_and_cancels_its_running_rollout(
    client: Client, closing: asyncio.Event
) -> None:
    change, deploy = await promoting(client)
    assert await refusal(change, "bob", " ") == "give a reason for the abort (--reason)"
    closing.clear()  # the rollout's cancellation waits for its GitOps PR to close

    assert await abort(change, "bob", "wrong build") == f"aborting {change.id}"

    assert change.id in await refusal(change, "carol", "me too")  # one abort at a time
    closing.set()
    status = await change.result()
    assert (status.state, status.reason) == ("aborted", "aborted by bob: wrong build")
    assert (await deploy.describe()).status == WorkflowExecutionStatus.CANCELED
    assert rollout.world.closed == ["aborted"]  # the rollout closed its GitOps PR
    with pytest.raises(RPCError, match="workflow execution already completed"):
        await abort(change, "bob", "again")
    # The CLI says so, rather than that there is no such change.
    with pytest.raises(changes.Refused, match=r"has already ended \(completed\): nothing to abort"):
        await changes.abort(client, change.id, "bob", "again")
    with pytest.raises(changes.ChangeNotFound):
        await changes.abort(client, "change/web/404", "bob", "no such change")


async def test_an_abort_while_another_is_under_way_says_who_is_aborting(
    client: Client, closing: asyncio.Event
) -> None:
    change, _ = await promoting(client)
    closing.clear()
    await abort(change, "bob", "wrong build")

    refused = await refusal(change, "carol", "me too")

    closing.set()
    await change.result()
    assert refused == f"{change.id} is being aborted already, by bob: wrong build"


async def test_a_change_waits_in_the_lane_until_the_one_ahead_finishes(client: Client) -> None:
    rollout.world.polled_synced = {M}
    prod = environment("prod", required=1, lane="sequential")
    first = await merged(client, 1, prod)
    await at_gate(rollout_of(client, 1, "prod"), "approval", RolloutStatus)

    second = await merged(client, 2, prod)

    waiting = await at_gate(second, "lane", ChangeStatus)
    assert waiting.gate.description == f"waiting for {first.id} to finish in prod"
    assert waiting.gate.waiting_on == [first.id] and waiting.current_rollout is None
    await rollout_of(client, 1, "prod").execute_update(Updates.APPROVE, Decision(user="carol"))
    assert (await first.result()).state == "completed"
    await at_gate(rollout_of(client, 2, "prod"), "approval", RolloutStatus)
    await rollout_of(client, 2, "prod").execute_update(Updates.APPROVE, Decision(user="dave"))
    status = await second.result()
    assert status.state == "completed"
    assert ("turn in prod", "succeeded", "our turn") in timeline(status)


async def test_under_latest_a_newer_change_supersedes_an_older_one_still_waiting(
    client: Client,
) -> None:
    prod = environment("prod", lane="latest")
    first = await merged(client, 1, prod)
    await at_gate(rollout_of(client, 1, "prod"), "sync", RolloutStatus)  # merged: it finishes
    second = await merged(client, 2, prod)
    await at_gate(second, "lane", ChangeStatus)

    third = await merged(client, 3, prod)

    status = await second.result()
    assert (status.state, status.reason) == ("superseded", f"prod: superseded by {third.id}")
    assert [(r.environment, r.outcome) for r in status.rollouts] == [("prod", "superseded")]
    await at_gate(third, "lane", ChangeStatus)
    await synced(rollout_of(client, 1, "prod"))
    assert (await first.result()).state == "completed"
    await synced(rollout_of(client, 3, "prod"))
    assert (await third.result()).state == "completed"
