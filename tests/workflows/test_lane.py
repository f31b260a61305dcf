"""EnvironmentLane on a real Temporal server: turns, supersedes and releases, with stand-in changes.

Each stand-in change is a small workflow that records the lane's signals and ends on request;
changes join through the real `join_lane` activity (signal-with-start), as ChangeWorkflow does.

A join or a release is only a signal in the lane's history when the call returns: the lane settles
it later, together with whatever else has arrived by then. Where a test's outcome depends on the
order in which the lane saw two events, it waits for the lane's answer to the first (a change told
it is queued, say) before it causes the second.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.lane import is_running, join_lane
from baton.models import JoinLane, LaneRequest, LaneState, LaneUpdate
from baton.temporal import TaskQueues, lane_id
from tests.conftest import eventually_async
from workflows.lane import EnvironmentLane

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@workflow.defn(name="StandInChange", sandboxed=False)
class StandInChange:
    """Records the lane's updates; ends when told to, releasing the lane or not."""

    def __init__(self) -> None:
        self.updates: list[LaneUpdate] = []
        self.done: bool | None = None

    @workflow.signal
    def lane_update(self, update: LaneUpdate) -> None:
        self.updates.append(update)

    @workflow.signal
    def end(self, release: bool) -> None:
        self.done = release

    @workflow.query
    def seen(self) -> list[LaneUpdate]:
        return self.updates

    @workflow.run
    async def run(self, lane: str) -> None:
        await workflow.wait_condition(lambda: self.done is not None)
        if self.done:
            change_id = workflow.info().workflow_id
            await workflow.get_external_workflow_handle(lane).signal(
                EnvironmentLane.release, change_id
            )


@pytest.fixture
async def client(temporal_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    worker = Worker(
        temporal_env.client,
        task_queue=TaskQueues.WORKFLOWS,
        workflows=[EnvironmentLane, StandInChange],
        activities=[join_lane, is_running],
    )
    async with worker:
        yield temporal_env.client


class Lane:
    """One lane (its own app name) and the stand-in changes that use it."""

    def __init__(
        self,
        client: Client,
        policy: str = "latest",
        holder_check_s: int = 60,
        rounds_per_run: int = 1000,
    ) -> None:
        self.client = client
        self.app = f"app-{uuid.uuid4().hex[:8]}"
        self.policy = policy
        self.holder_check_s = holder_check_s
        self.rounds_per_run = rounds_per_run
        self.id = lane_id(self.app, "prod")

    async def join(self, number: int, minutes: int) -> WorkflowHandle:
        """Start change `number`, merged `minutes` after T0, and have it join the lane."""
        change_id = f"change/{self.app}/{number}"
        handle = await self.client.start_workflow(
            StandInChange.run, self.id, id=change_id, task_queue=TaskQueues.WORKFLOWS
        )
        request = LaneRequest(
            change_id=change_id, commit=f"{number:040d}", merged_at=T0 + timedelta(minutes=minutes)
        )
        if (self.holder_check_s, self.rounds_per_run) != (60, 1000):  # a lane set up its own way
            await self.client.start_workflow(
                EnvironmentLane.run,
                LaneState(
                    app=self.app,
                    environment="prod",
                    policy=self.policy,
                    holder_check_s=self.holder_check_s,
                    rounds_per_run=self.rounds_per_run,
                ),
                id=self.id,
                task_queue=TaskQueues.WORKFLOWS,
                start_signal="join",
                start_signal_args=[request],
            )
        else:
            join = JoinLane(app=self.app, environment="prod", policy=self.policy, request=request)
            await ActivityEnvironment(client=self.client).run(join_lane, join)
        return handle

    async def status(self):
        return await self.client.get_workflow_handle(self.id).query(EnvironmentLane.status)


async def updates(change: WorkflowHandle, count: int) -> list[LaneUpdate]:
    """The lane updates the change received, once there are at least `count` of them."""
    return await eventually_async(
        lambda: change.query(StandInChange.seen),
        lambda seen: len(seen) >= count,
        what=f"{change.id} to get {count} lane update(s)",
    )


def kinds(seen: list[LaneUpdate]) -> list[tuple[str, str | None]]:
    return [(u.kind, u.by or u.holder) for u in seen]


async def test_latest_supersedes_the_waiting_holder_and_grants_the_newer_change(
    client: Client,
) -> None:
    lane = Lane(client)
    a = await lane.join(1, minutes=1)
    assert kinds(await updates(a, 1)) == [("granted", None)]

    b = await lane.join(2, minutes=2)

    assert kinds(await updates(b, 1)) == [("queued", a.id)]
    assert kinds(await updates(a, 2)) == [("granted", None), ("superseded", b.id)]
    await a.signal(StandInChange.end, True)  # the holder stops and releases its turn
    assert kinds(await updates(b, 2)) == [("queued", a.id), ("granted", None)]
    status = await lane.status()
    assert status.holder.change_id == b.id and status.queue == [] and status.released == 1


async def test_latest_keeps_only_the_newest_of_the_queued_changes(client: Client) -> None:
    lane = Lane(client)
    a = await lane.join(1, minutes=1)
    await updates(a, 1)
    c = await lane.join(3, minutes=3)
    b = await lane.join(2, minutes=2)  # merged before c, arrives after it

    assert kinds(await updates(b, 1)) == [("superseded", c.id)]
    # The lane tells b, then the holder: a must have heard it before it ends.
    assert kinds(await updates(a, 2)) == [("granted", None), ("superseded", c.id)]
    await a.signal(StandInChange.end, True)
    assert kinds(await updates(c, 2)) == [("queued", a.id), ("granted", None)]


async def test_a_change_older_than_one_already_granted_never_rolls_out(client: Client) -> None:
    lane = Lane(client)
    new = await lane.join(2, minutes=2)
    await updates(new, 1)
    await new.signal(StandInChange.end, True)

    old = await lane.join(1, minutes=1)

    assert kinds(await updates(old, 1)) == [("superseded", new.id)]


async def test_sequential_grants_every_change_in_merge_order(client: Client) -> None:
    lane = Lane(client, policy="sequential")
    a = await lane.join(1, minutes=1)
    await updates(a, 1)
    c = await lane.join(3, minutes=3)
    b = await lane.join(2, minutes=2)
    # Both wait behind a before it releases: settled together with a's release, b's join would
    # rightly be granted at once, never queued.
    await updates(b, 1)
    await updates(c, 1)

    await a.signal(StandInChange.end, True)
    assert kinds(await updates(b, 2)) == [("queued", a.id), ("granted", None)]
    assert kinds(await updates(c, 2)) == [("queued", a.id), ("queued", b.id)]  # who holds now
    await b.signal(StandInChange.end, True)
    assert kinds(await updates(c, 3)) == [("queued", a.id), ("queued", b.id), ("granted", None)]
    assert kinds(await updates(a, 1)) == [("granted", None)]  # never superseded


async def test_a_retried_join_is_queued_once(client: Client) -> None:
    lane = Lane(client, policy="sequential")
    a = await lane.join(1, minutes=1)
    b = await lane.join(2, minutes=2)
    await updates(b, 1)
    request = LaneRequest(change_id=b.id, commit="2" * 40, merged_at=T0 + timedelta(minutes=2))
    await client.get_workflow_handle(lane.id).signal(EnvironmentLane.join, request)
    # The lane settles signals in order: once it has answered c, it has settled the retry too.
    c = await lane.join(3, minutes=3)
    await updates(c, 1)

    status = await lane.status()
    assert [r.change_id for r in status.queue] == [b.id, c.id]
    assert status.holder.change_id == a.id


async def test_a_holder_that_ends_without_releasing_loses_its_turn(client: Client) -> None:
    lane = Lane(client, holder_check_s=1)
    a = await lane.join(1, minutes=1)
    await updates(a, 1)
    b = await lane.join(2, minutes=2)
    await updates(b, 1)

    await a.signal(StandInChange.end, False)  # ends holding the lane (as if terminated)

    assert kinds(await updates(b, 2)) == [("queued", a.id), ("granted", None)]


async def test_the_lane_continues_as_new_with_its_queue_and_holder(client: Client) -> None:
    lane = Lane(client, policy="sequential", holder_check_s=1, rounds_per_run=3)
    a = await lane.join(1, minutes=1)
    await updates(a, 1)
    first_run = (await client.get_workflow_handle(lane.id).describe()).run_id
    b = await lane.join(2, minutes=2)
    c = await lane.join(3, minutes=3)
    await updates(c, 1)

    await eventually_async(  # a few rounds (joins, holder checks) later it runs anew
        lambda: client.get_workflow_handle(lane.id).describe(),
        lambda description: description.run_id != first_run,
        what="the lane to continue as new",
    )
    status = await lane.status()
    assert status.holder.change_id == a.id
    assert [r.change_id for r in status.queue] == [b.id, c.id]
    await a.signal(StandInChange.end, True)
    assert kinds(await updates(b, 2)) == [("queued", a.id), ("granted", None)]
