"""FreezeGate on a real Temporal server: held while frozen, through on the freeze's end or an
override, stopped by a supersede. A small host workflow holds the gate as EnvironmentRollout does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.config import FreezeWindow
from baton.errors import NotFrozen
from baton.models import Decision, Gate, RolloutInput, Stage
from tests.fixtures.hosts import RecordQueries
from tests.fixtures.polling import eventually
from tests.fixtures.rollouts import prod, rollout_of
from workflows.record import Record
from workflows.rollout.freeze_gate import FreezeGate, FreezeOverride


@workflow.defn(name="FreezeHost", sandboxed=False)
class FreezeHost(RecordQueries, FreezeOverride):
    """Waits at the freeze gate, then says what the `freeze` stage recorded."""

    @workflow.init
    def __init__(self, input: RolloutInput) -> None:
        self.record = Record("freeze host")
        self.freeze_gate = FreezeGate(input, self.record)
        self.superseded_by: str | None = None

    @workflow.signal
    def supersede(self, by: str) -> None:
        self.superseded_by = by

    @workflow.run
    async def run(self, input: RolloutInput) -> list[Stage]:
        await self.freeze_gate.wait(lambda: self.superseded_by)
        return self.record.timeline


@pytest.fixture
async def client(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Client]:
    async with Worker(temporal_env.client, task_queue=task_queue, workflows=[FreezeHost]):
        yield temporal_env.client


def frozen_for(seconds: float, name: str = "release freeze") -> FreezeWindow:
    now = datetime.now(UTC)
    return FreezeWindow(
        name=name, start=now - timedelta(minutes=1), end=now + timedelta(seconds=seconds)
    )


async def start(client: Client, task_queue: str, *freezes: FreezeWindow) -> WorkflowHandle:
    return await client.start_workflow(
        FreezeHost.run,
        rollout_of(prod(required=1, freeze=list(freezes))),
        id=f"freeze/{uuid.uuid4()}",
        task_queue=task_queue,
    )


async def frozen(handle: WorkflowHandle) -> Gate:
    return await eventually(lambda: handle.query(FreezeHost.gate), what="the freeze gate")


async def override(handle: WorkflowHandle, user: str, reason: str) -> str:
    """The update's answer, or why it was refused."""
    try:
        return await handle.execute_update(
            FreezeHost.override_freeze, Decision(user=user, comment=reason)
        )
    except WorkflowUpdateFailedError as refused:
        return refused.cause.message


async def test_an_environment_that_is_not_frozen_lets_the_rollout_through_at_once(
    client: Client, task_queue: str
) -> None:
    handle = await start(client, task_queue, frozen_for(-30))  # ended half a minute ago
    assert await handle.result() == []


async def test_the_gate_holds_the_rollout_until_the_freeze_ends(
    client: Client, task_queue: str
) -> None:
    handle = await start(client, task_queue, frozen_for(2))
    gate = await frozen(handle)
    assert gate.description.startswith("prod is frozen (release freeze) until ")
    assert gate.waiting_on == ["the end of the freeze", "or a break-glass override"]

    timeline = await handle.result()

    assert [(s.name, s.outcome, s.detail) for s in timeline] == [
        ("freeze", "succeeded", "the freeze ended")
    ]


async def test_an_override_by_an_approver_with_a_reason_opens_the_gate(
    client: Client, task_queue: str
) -> None:
    handle = await start(client, task_queue, frozen_for(3600))
    await frozen(handle)

    assert await override(handle, "carol", " ") == "a freeze override needs a reason (--reason)"
    assert "alice is the change's author" in await override(handle, "alice", "hotfix")
    assert (await override(handle, "mallory", "hotfix")).startswith(
        "mallory may not override the freeze of prod"
    )
    assert await override(handle, "carol", "CVE fix") == "carol overrode the freeze of prod"

    timeline = await handle.result()
    assert [(s.outcome, s.detail) for s in timeline] == [
        ("succeeded", "overridden by carol: CVE fix")
    ]


async def test_a_superseded_rollout_stops_waiting_for_the_freeze(
    client: Client, task_queue: str
) -> None:
    handle = await start(client, task_queue, frozen_for(3600))
    await frozen(handle)

    await handle.signal(FreezeHost.supersede, "change/web/2")

    timeline = await handle.result()
    assert [(s.outcome, s.detail) for s in timeline] == [
        ("superseded", "superseded by change/web/2")
    ]


def test_an_override_is_refused_when_nothing_is_frozen() -> None:
    gate = FreezeGate(rollout_of(prod()), Record("rollout"))
    with pytest.raises(NotFrozen) as refused:
        gate.check_override(Decision(user="carol", comment="hotfix"))
    assert str(refused.value) == "prod is not frozen for this rollout: nothing to override"
