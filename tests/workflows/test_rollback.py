"""RollbackSaga on a real Temporal server: revert PR, approvals in production, sync of the revert.

A small host workflow runs the saga for a rollout whose GitOps PR #7 merged as M and failed its
verification. The host's own `merge` and `converge` stand in for the rollout's steps; the
`world`'s stand-ins for the revert and close activities do what the test says.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Unpack

import pytest
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError

from activities.deploy import CloseInput, Revert, RevertInput, VerifyInput
from baton.config import EnvironmentConfig, NotificationEvent
from baton.models import (
    Decision,
    Gate,
    GitOpsPullRequest,
    Rollback,
    RolloutInput,
    SyncOutcome,
)
from tests.fixtures.hosts import RecordQueries, hosted_client
from tests.fixtures.polling import eventually
from tests.fixtures.rollouts import COMMIT, prod, rollout_of
from workflows.record import Record
from workflows.rollout.approvals import Approvals, ApprovalUpdates
from workflows.rollout.rollback import RollbackSaga
from workflows.rollout.steps import StepOptions

M, REVERT, REVERT_HEAD, PREVIOUS, HEAD = "b" * 40, "e" * 40, "9" * 40, "8" * 40, "d" * 40
PR = GitOpsPullRequest(number=7, url="http://forge/7", head_branch="deploy", head_sha=HEAD)
REVERT_PR = GitOpsPullRequest(
    number=8, url="http://forge/8", head_branch="deploy-revert", head_sha=REVERT_HEAD
)


@dataclass
class World:
    """The forge as the stand-in activities see it, and what they were asked to close."""

    nothing_to_revert: bool = False  # the GitOps repository holds the previous manifests already
    forge_refuses: bool = False
    closed: list[str] = field(default_factory=list)

    @activity.defn(name="revert_gitops_change")
    async def revert(self, input: RevertInput) -> Revert:
        if self.forge_refuses:
            raise ApplicationError("the GitOps repository is gone", type="RepositoryNotFound")
        if self.nothing_to_revert:
            return Revert(head=REVERT, previous_commit=PREVIOUS)
        return Revert(pr=REVERT_PR, previous_commit=PREVIOUS)

    @activity.defn(name="close_gitops_pr")
    async def close(self, input: CloseInput) -> None:
        self.closed.append(input.reason)


class Scenario(BaseModel):
    rollout: RolloutInput
    revert_syncs: bool = True


class Outcome(BaseModel):
    detail: str
    rollback: Rollback
    converged: list[tuple[str, VerifyInput]]  # the revisions the host was asked to converge
    notified: list[tuple[str, str]] = []  # the events the saga asked the host to post


@workflow.defn(name="SagaHost", sandboxed=False)
class SagaHost(RecordQueries, ApprovalUpdates):
    """Rolls back M; merges and converges by stand-in, approves through the rollout's Updates."""

    @workflow.init
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.record = Record("saga host")
        self.saga: RollbackSaga | None = None
        self.converged: list[tuple[str, VerifyInput]] = []
        self.notified: list[tuple[str, str]] = []

    def _deciding(self) -> Approvals:
        if self.saga is None or self.saga.approvals is None:
            raise ApplicationError("no approvals awaited")
        return self.saga.approvals

    async def merge(
        self, pr: GitOpsPullRequest, name: str, *, manual: bool, **options: Unpack[StepOptions]
    ) -> str:
        return REVERT

    async def converge(self, revision: str, check: VerifyInput, prefix: str = "") -> SyncOutcome:
        self.converged.append((revision, check))
        if self.scenario.revert_syncs:
            return SyncOutcome(synced=True, message="200 ok")
        return SyncOutcome(synced=False, message="sync failed: BuildFailed: bad YAML")

    async def notify(self, event: NotificationEvent, detail: str) -> None:
        self.notified.append((event, detail))

    @workflow.run
    async def run(self, scenario: Scenario) -> Outcome:
        cause = "verification failed: /version does not report ffffffffffff"
        self.saga = RollbackSaga(self, scenario.rollout, self.record, PR, M, cause)
        detail = await self.saga.run()
        return Outcome(
            detail=detail,
            rollback=self.saga.rollback,
            converged=self.converged,
            notified=self.notified,
        )


@pytest.fixture
def world() -> World:
    return World()


client = hosted_client(SagaHost, "revert", "close")


async def rolled_back(
    client: Client, task_queue: str, env: EnvironmentConfig, revert_syncs: bool = True
) -> Outcome:
    """A rollback that needs no decision, run to its end."""
    return await (await roll_back(client, task_queue, env, revert_syncs)).result()


async def roll_back(
    client: Client, task_queue: str, env: EnvironmentConfig, revert_syncs: bool = True
) -> WorkflowHandle:
    return await client.start_workflow(
        SagaHost.run,
        Scenario(rollout=rollout_of(env), revert_syncs=revert_syncs),
        id=f"rollout/test/{uuid.uuid4()}",
        task_queue=task_queue,
    )


async def approval_gate(handle: WorkflowHandle) -> Gate:
    return await eventually(
        lambda: handle.query(SagaHost.gate),
        lambda gate: gate is not None and gate.kind == "approval",
        what="the revert's approval gate",
    )


async def test_outside_production_the_revert_is_merged_synced_and_verified(
    client: Client, task_queue: str
) -> None:
    outcome = await rolled_back(client, task_queue, prod(production=False))

    assert outcome.detail == f"rolled back to {PREVIOUS[:12]} (GitOps PR #8)"
    assert outcome.notified == []  # merged without approvals: nobody to ask
    rollback = outcome.rollback
    assert (rollback.outcome, rollback.revert_pr, rollback.revert_revision) == (
        "rolled back",
        REVERT_PR,
        REVERT,
    )
    [(revision, check)] = outcome.converged
    assert revision == REVERT
    assert (check.commit, check.rolled_back_from, check.removed) == (PREVIOUS, COMMIT, False)


async def test_in_production_the_revert_waits_for_its_own_approvals(
    client: Client, task_queue: str
) -> None:
    handle = await roll_back(client, task_queue, prod(required=1, production=True))
    gate = await approval_gate(handle)
    assert gate.description == "0/1 approvals to roll back prod"

    await handle.execute_update(SagaHost.approve, Decision(user="carol"))

    outcome = await handle.result()
    assert outcome.rollback.outcome == "rolled back"
    assert [a.user for a in outcome.rollback.approvals] == ["carol"]
    # Whoever approves the deploy PR is told the revert waits for them too.
    cause = "verification failed: /version does not report ffffffffffff"
    assert outcome.notified == [
        ("approval_needed", f"revert PR #8 needs 1 approval(s) to roll back: {cause}")
    ]


async def test_a_rejected_revert_is_closed_and_says_who_rejected_it(
    client: Client, task_queue: str, world: World
) -> None:
    handle = await roll_back(client, task_queue, prod(required=1, production=True))
    await approval_gate(handle)

    await handle.execute_update(SagaHost.reject, Decision(user="dave", comment="fix forward"))

    outcome = await handle.result()
    assert outcome.detail == "rollback rejected by dave: revert PR closed"
    assert outcome.rollback.outcome == "rejected" and world.closed == ["rollback rejected"]
    assert outcome.converged == []


async def test_a_revert_that_does_not_sync_says_the_rollback_failed(
    client: Client, task_queue: str
) -> None:
    outcome = await rolled_back(client, task_queue, prod(production=False), revert_syncs=False)

    assert outcome.detail == "rollback failed: sync failed: BuildFailed: bad YAML"
    assert outcome.rollback.outcome == "failed"


async def test_with_nothing_left_to_revert_the_head_is_synced_without_a_pr(
    client: Client, task_queue: str, world: World
) -> None:
    world.nothing_to_revert = True
    outcome = await rolled_back(client, task_queue, prod(production=True))

    assert outcome.detail == f"rolled back to {PREVIOUS[:12]} (already in the GitOps repository)"
    assert [revision for revision, _ in outcome.converged] == [REVERT]
    assert outcome.rollback.revert_pr is None


async def test_a_revert_the_forge_refuses_fails_the_rollback_with_its_words(
    client: Client, task_queue: str, world: World
) -> None:
    world.forge_refuses = True
    outcome = await rolled_back(client, task_queue, prod(production=False))

    assert outcome.detail == "rollback failed: the GitOps repository is gone"
    assert outcome.rollback.outcome == "failed" and outcome.converged == []


def test_a_rollback_recorded_before_revisions_were_named_so_still_decodes() -> None:
    recorded = {"cause": "sync failed", "outcome": "rolled back", "revert_commit": REVERT}
    assert Rollback.model_validate(recorded).revert_revision == REVERT
