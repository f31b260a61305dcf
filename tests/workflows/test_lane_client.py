"""LaneClient on a real Temporal server, against the real EnvironmentLane.

Each stand-in change takes a turn in the `prod` lane of its test's app through a LaneClient, as
ChangeWorkflow does, and rolls out either by waiting to be told to finish or through a stand-in
rollout child that stops when a supersede reaches it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.lane import is_running, join_lane
from baton.config import EnvironmentConfig, LanePolicy
from baton.models import Gate, LaneStatus, LaneUpdate, RolloutResult
from baton.temporal import Signals, TaskQueues, lane_id
from tests.fixtures.hosts import RecordQueries
from tests.fixtures.polling import eventually
from workflows.lane import EnvironmentLane
from workflows.lane_client import LaneClient
from workflows.record import Record

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class Turn(BaseModel):
    """What a stand-in change asks of its lane."""

    app: str
    policy: LanePolicy
    merged_minutes: int
    with_rollout: bool = False


@workflow.defn(name="StandInRollout", sandboxed=False)
class StandInRollout:
    """Runs until a supersede reaches it."""

    def __init__(self) -> None:
        self.by: str | None = None

    @workflow.signal(name=Signals.SUPERSEDE)
    def supersede(self, by: str) -> None:
        self.by = by

    @workflow.run
    async def run(self) -> RolloutResult:
        await workflow.wait_condition(lambda: self.by is not None)
        return RolloutResult(
            environment="prod", outcome="superseded", reason=f"stopped for {self.by}"
        )


@workflow.defn(name="LaneUser", sandboxed=False)
class LaneUser(RecordQueries):
    """Takes its turn in the lane, then finishes when told (or when its rollout ends)."""

    @workflow.init
    def __init__(self, turn: Turn) -> None:
        self.record = Record("lane user")
        self.lanes = LaneClient(turn.app, self.record)
        self.done = False

    @workflow.signal(name=Signals.LANE_UPDATE)
    def lane_update(self, update: LaneUpdate) -> None:
        self.lanes.deliver(update)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self, turn: Turn) -> str:
        env = EnvironmentConfig(name="prod", namespace="prod", lane=turn.policy)
        merged_at = T0 + timedelta(minutes=turn.merged_minutes)
        async with self.lanes.turn(env, f"{turn.merged_minutes:040d}", merged_at) as granted:
            if granted.superseded_by is not None:
                return f"superseded by {granted.superseded_by} before its turn"
            if turn.with_rollout:
                rollout = await workflow.start_child_workflow(
                    StandInRollout.run, id=f"{workflow.info().workflow_id}/rollout"
                )
                return (await granted.follow(rollout)).reason
            await workflow.wait_condition(lambda: self.done)
            return "rolled out"


@pytest.fixture
async def client(temporal_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    worker = Worker(
        temporal_env.client,
        task_queue=TaskQueues.WORKFLOWS,
        workflows=[EnvironmentLane, LaneUser, StandInRollout],
        activities=[join_lane, is_running],
    )
    async with worker:
        yield temporal_env.client


class Lane:
    """The `prod` lane of an app of its own, and the stand-in changes taking turns in it."""

    def __init__(self, client: Client, policy: LanePolicy) -> None:
        self.client = client
        self.app = f"app-{uuid.uuid4().hex[:8]}"
        self.policy = policy

    async def change(self, number: int, with_rollout: bool = False) -> WorkflowHandle:
        """Change `number`, merged `number` minutes after T0, asks for its turn."""
        return await self.client.start_workflow(
            LaneUser.run,
            Turn(
                app=self.app, policy=self.policy, merged_minutes=number, with_rollout=with_rollout
            ),
            id=f"change/{self.app}/{number}",
            task_queue=TaskQueues.WORKFLOWS,
        )

    async def status(self) -> LaneStatus | None:
        """The lane's status; None before it started."""
        with contextlib.suppress(RPCError):
            return await self.client.get_workflow_handle(lane_id(self.app, "prod")).query(
                EnvironmentLane.status
            )
        return None

    async def turn_goes_to(self, change: WorkflowHandle) -> None:
        await eventually(
            self.status,
            lambda status: status and status.holder and status.holder.change_id == change.id,
            what=f"{change.id} holding the turn",
        )


async def gate(change: WorkflowHandle) -> Gate:
    return await eventually(lambda: change.query(LaneUser.gate), what=f"{change.id} at a gate")


async def stages(change: WorkflowHandle) -> list[tuple[str, str, str]]:
    return [(s.name, s.outcome, s.detail) for s in await change.query(LaneUser.timeline)]


async def test_a_granted_turn_is_released_when_the_change_is_done(client: Client) -> None:
    lane = Lane(client, "sequential")
    a = await lane.change(1)
    await lane.turn_goes_to(a)

    await a.signal(LaneUser.finish)

    assert await a.result() == "rolled out"
    assert await stages(a) == []  # granted at once: no waiting in the timeline
    status = await lane.status()
    assert status is not None and status.holder is None and status.released == 1


async def test_a_queued_change_waits_at_a_lane_gate_until_its_turn(client: Client) -> None:
    lane = Lane(client, "sequential")
    a = await lane.change(1)
    await lane.turn_goes_to(a)
    b = await lane.change(2)

    waiting = await gate(b)
    assert (waiting.kind, waiting.description) == ("lane", f"waiting for {a.id} to finish in prod")
    await a.signal(LaneUser.finish)
    await lane.turn_goes_to(b)
    await b.signal(LaneUser.finish)

    assert await b.result() == "rolled out"
    assert await stages(b) == [("turn in prod", "succeeded", "our turn")]


async def test_a_change_superseded_while_queued_never_rolls_out(client: Client) -> None:
    lane = Lane(client, "latest")
    a = await lane.change(1)
    await lane.turn_goes_to(a)
    b = await lane.change(2)
    await gate(b)

    c = await lane.change(3)

    assert await b.result() == f"superseded by {c.id} before its turn"
    assert await stages(b) == [("turn in prod", "superseded", f"superseded by {c.id}")]
    await a.signal(LaneUser.finish)
    await lane.turn_goes_to(c)
    await c.signal(LaneUser.finish)
    await c.result()


async def test_a_supersede_reaches_the_running_rollout_and_the_turn_passes_on(
    client: Client,
) -> None:
    lane = Lane(client, "latest")
    a = await lane.change(1, with_rollout=True)
    await lane.turn_goes_to(a)

    b = await lane.change(2)

    assert await a.result() == f"stopped for {b.id}"
    await lane.turn_goes_to(b)
    await b.signal(LaneUser.finish)
    assert await b.result() == "rolled out"
