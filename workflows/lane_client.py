"""LaneClient: a change's side of the lane protocol (see `workflows.lane`).

A change joins an environment's lane (the `join_lane` activity, a signal-with-start), learns by
signal whether it is queued, granted or superseded, passes a supersede on to the rollout it runs
meanwhile, and releases its turn when it is done, whatever happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.lane import join_lane
    from baton.config import EnvironmentConfig
    from baton.models import (
        Gate,
        JoinLane,
        LaneRequest,
        LaneUpdate,
        RolloutResult,
        Stage,
        StageOutcome,
    )
    from baton.temporal import Signals, TaskQueues, lane_id

from workflows.record import Record


class LaneClient:
    """Takes turns in the lanes of one app's environments for the change workflow it lives in.

    The workflow's `lane_update` signal handler hands every update to `deliver`; `turn` joins a
    lane and holds the turn for the duration of an `async with`.
    """

    def __init__(self, app: str, record: Record) -> None:
        self.app = app
        self.record = record
        self.updates: dict[str, LaneUpdate] = {}  # per environment, the lane's latest unread one

    def deliver(self, update: LaneUpdate) -> None:
        """An update from an environment's lane, as signalled."""
        self.updates[update.environment] = update

    @asynccontextmanager
    async def turn(
        self, env: EnvironmentConfig, commit: str, merged_at: datetime
    ) -> AsyncIterator[LaneTurn]:
        """Join `env`'s lane and wait for the turn (granted, or superseded while waiting); the
        turn is released on leaving the block, also when the change is cancelled meanwhile."""
        lane = workflow.get_external_workflow_handle(lane_id(self.app, env.name))
        try:
            superseded_by = await self._wait_turn(env, commit, merged_at)
            yield LaneTurn(self, env.name, superseded_by)
        finally:
            try:
                await lane.signal(Signals.RELEASE, workflow.info().workflow_id)
            except Exception:  # noqa: BLE001 - no lane (cancelled while joining): nothing held
                workflow.logger.warning("could not release %s", lane.id)

    async def _wait_turn(
        self, env: EnvironmentConfig, commit: str, merged_at: datetime
    ) -> str | None:
        """Join the lane and wait until it grants the turn (None) or says who superseded us."""
        self.updates.pop(env.name, None)
        request = LaneRequest(
            change_id=workflow.info().workflow_id,
            run_id=workflow.info().run_id,
            commit=commit,
            merged_at=merged_at,
            policy=env.lane,
        )
        await workflow.execute_activity(
            join_lane,
            JoinLane(app=self.app, environment=env.name, policy=env.lane, request=request),
            task_queue=TaskQueues.WORKFLOWS,
            start_to_close_timeout=timedelta(seconds=30),
            summary=f"join lane {lane_id(self.app, env.name)}",
        )
        stage: Stage | None = None
        outcome: StageOutcome = "cancelled"
        detail = "stopped while waiting"
        try:
            while True:
                await workflow.wait_condition(lambda: env.name in self.updates)
                update = self.updates.pop(env.name)
                if update.kind != "queued":
                    break
                stage = stage or self.record.begin(f"turn in {env.name}")
                holder = update.holder or "the change ahead"
                self.record.set_gate(
                    Gate(
                        kind="lane",
                        environment=env.name,
                        description=f"waiting for {holder} to finish in {env.name}",
                        waiting_on=[holder],
                    )
                )
            superseded_by = update.by if update.kind == "superseded" else None
            outcome = "superseded" if superseded_by else "succeeded"
            detail = f"superseded by {superseded_by}" if superseded_by else "our turn"
            return superseded_by
        finally:
            self.record.clear_gate()
            if stage is not None:
                self.record.end(stage, outcome, detail)


@dataclass
class LaneTurn:
    """A change's turn in one environment's lane: granted, or superseded before it began."""

    lanes: LaneClient
    environment: str
    superseded_by: str | None

    async def follow(
        self, rollout: workflow.ChildWorkflowHandle[Any, RolloutResult]
    ) -> RolloutResult:
        """Await the rollout, passing the lane's supersedes on to it meanwhile: it stops if it can.

        The rollout is awaited itself, so cancelling the change (abort) cancels the rollout too.
        """
        forward = asyncio.ensure_future(self._forward_supersedes(rollout))
        try:
            return await rollout
        finally:
            forward.cancel()

    async def _forward_supersedes(self, rollout: workflow.ChildWorkflowHandle[Any, Any]) -> None:
        while True:
            await workflow.wait_condition(self._superseded)
            update = self.lanes.updates.pop(self.environment)
            await rollout.signal(Signals.SUPERSEDE, update.by or "a newer change")

    def _superseded(self) -> bool:
        update = self.lanes.updates.get(self.environment)
        return update is not None and update.kind == "superseded"
