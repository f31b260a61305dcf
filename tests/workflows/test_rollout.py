"""EnvironmentRollout's decisions on a real Temporal server, with its side effects replaced.

The activities here stand in for the deploy activities by name, so the workflow's gates (approval
policy through Updates, exact-revision sync through signals) are tested without a cluster.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.deploy import CloseInput, MergeInput, ProposeInput, SyncCheckInput, VerifyInput
from baton.artifacts import Artifact
from baton.config import AppConfig, ApprovalPolicy, EnvironmentConfig
from baton.models import (
    Approval,
    ForgeReview,
    GitOpsPullRequest,
    Rendered,
    RolloutInput,
    SyncEvent,
    SyncOutcome,
)
from baton.temporal import TaskQueues
from workflows.rollout import EnvironmentRollout

OLD, M, CHILD, HEAD = "a" * 40, "b" * 40, "c" * 40, "d" * 40
closed: list[str] = []


@activity.defn(name="render_environment")
async def render_environment(input: RolloutInput) -> Rendered:
    return Rendered(path="rendered/prod/web/manifests.yaml", content_ref="x", content_hash="y",
                    diff_markdown="changed: Deployment/prod/web", changed_objects=1)  # fmt: skip


@activity.defn(name="propose_gitops_change")
async def propose(input: ProposeInput) -> GitOpsPullRequest:
    return GitOpsPullRequest(number=7, url="http://forge/gitops/pulls/7",
                             head_branch="baton/web/prod/ffffffffffff", head_sha=HEAD)  # fmt: skip


@activity.defn(name="merge_gitops_pr")
async def merge(input: MergeInput) -> str:
    return M


@activity.defn(name="close_gitops_pr")
async def close(input: CloseInput) -> None:
    closed.append(input.reason)


@activity.defn(name="is_descendant")
async def is_descendant(input: SyncCheckInput) -> bool:
    return input.revision in (M, CHILD)


@activity.defn(name="check_sync")
async def check_sync(input: SyncCheckInput) -> SyncOutcome:
    """Never synced by polling: only the Flux events of these tests release the gate."""
    await asyncio.sleep(0.2)
    raise ApplicationError("not synced yet", type="NotSynced")


@activity.defn(name="verify_endpoint")
async def verify(input: VerifyInput) -> SyncOutcome:
    return SyncOutcome(synced=True, revision=input.rollout.artifact.commit, message="200 ok")


@activity.defn(name="gitops_head")
async def gitops_head(input: RolloutInput) -> str:
    return M


@pytest.fixture
async def workers(temporal_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    client = temporal_env.client
    deploy = Worker(client, task_queue=TaskQueues.DEPLOY,
                    activities=[render_environment, propose, merge, close, is_descendant,
                                check_sync, verify, gitops_head])  # fmt: skip
    flows = Worker(client, task_queue=TaskQueues.WORKFLOWS, workflows=[EnvironmentRollout])
    async with deploy, flows:
        yield client


def rollout_input(required: int = 2, allow_self: bool = False) -> RolloutInput:
    app = AppConfig(name="web", repo="web", image="web", chart="chart")
    env = EnvironmentConfig(
        name="prod",
        namespace="prod",
        approvals=ApprovalPolicy(required=required, approvers=["alice", "carol", "dave"],
                                 allow_self_approval=allow_self),
    )  # fmt: skip
    artifact = Artifact(app="web", commit="f" * 40, image="r/web", image_digest="sha256:" + "0" * 64,
                        image_ref="r/web@sha256:" + "0" * 64, chart_ref="oci://r/charts/web",
                        chart_version="0.1.0-gffffffffffff", chart_digest="sha256:" + "1" * 64,
                        created_at=datetime.now(UTC))  # fmt: skip
    return RolloutInput(change_id="change/web/1", app=app, environment=env, artifact=artifact,
                        author="alice")  # fmt: skip


async def start(client: Client, input: RolloutInput) -> WorkflowHandle:
    return await client.start_workflow(
        EnvironmentRollout.run, input, id=f"rollout/test/{uuid.uuid4()}",
        task_queue=TaskQueues.WORKFLOWS,
    )  # fmt: skip


async def wait_for_gate(handle: WorkflowHandle, kind: str) -> None:
    for _ in range(100):
        status = await handle.query(EnvironmentRollout.status)
        if status.gate and status.gate.kind == kind:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"rollout never reached the {kind} gate")


async def refused(handle: WorkflowHandle, user: str) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(EnvironmentRollout.approve, Approval(user=user))
    return info.value.cause.message


async def test_prod_needs_two_distinct_approvers_and_refuses_author(workers: Client) -> None:
    handle = await start(workers, rollout_input())
    await wait_for_gate(handle, "approval")

    assert "alice is the change's author" in await refused(handle, "alice")
    assert "mallory may not approve prod" in await refused(handle, "mallory")
    assert await handle.execute_update(EnvironmentRollout.approve, Approval(user="carol"))
    assert "carol has already approved prod" in await refused(handle, "carol")

    status = await handle.query(EnvironmentRollout.status)
    assert status.gate.approved_by == ["carol"] and status.gate.waiting_on == ["dave"]
    await handle.execute_update(EnvironmentRollout.approve, Approval(user="dave"))

    await wait_for_gate(handle, "sync")
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=M, state="ready"))
    result = await handle.result()
    assert result.outcome == "deployed"
    assert [a.user for a in result.approvals] == ["carol", "dave"]
    assert result.merge_commit == M


async def test_rejection_stops_the_rollout_and_closes_the_gitops_pr(workers: Client) -> None:
    handle = await start(workers, rollout_input())
    await wait_for_gate(handle, "approval")
    await handle.execute_update(EnvironmentRollout.reject, Approval(user="dave", comment="not now"))
    result = await handle.result()
    assert result.outcome == "rejected" and "dave" in result.reason
    assert "rejected" in closed


async def test_sync_gate_ignores_older_revisions_and_accepts_descendants(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=0))
    await wait_for_gate(handle, "sync")
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=OLD, state="ready"))
    await asyncio.sleep(0.5)
    assert (await handle.query(EnvironmentRollout.status)).gate.kind == "sync"
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=CHILD, state="ready"))
    result = await handle.result()
    assert result.outcome == "deployed"


async def test_failed_sync_of_merge_commit_fails_with_reason(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=0))
    await wait_for_gate(handle, "sync")
    event = SyncEvent(revision=M, state="failed", reason="HealthCheckFailed", message="not ready")
    await handle.signal(EnvironmentRollout.sync_event, event)
    result = await handle.result()
    assert result.outcome == "failed"
    assert "HealthCheckFailed" in result.reason


async def test_forge_review_of_a_stale_head_does_not_count(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=1))
    await wait_for_gate(handle, "approval")
    await handle.signal(EnvironmentRollout.forge_review,
                        ForgeReview(user="carol", approved=True, commit=OLD))  # fmt: skip
    await handle.signal(EnvironmentRollout.forge_review,
                        ForgeReview(user="alice", approved=True, commit=HEAD))  # fmt: skip
    await asyncio.sleep(0.5)
    status = await handle.query(EnvironmentRollout.status)
    assert status.gate.kind == "approval" and status.approvals == []
    notes = [s.detail for s in status.timeline if s.name == "note"]
    assert any("not the PR's head" in n for n in notes)
    assert any("alice is the change's author" in n for n in notes)
    await handle.signal(EnvironmentRollout.forge_review,
                        ForgeReview(user="dave", approved=True, commit=HEAD))  # fmt: skip
    await wait_for_gate(handle, "sync")
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=M, state="ready"))
    assert (await handle.result()).approvals[0].source == "forge"
