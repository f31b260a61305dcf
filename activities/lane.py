"""Lane and hold activities: Temporal client calls a workflow cannot make itself."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import typed_errors
from baton.holds import HoldState, HoldWatch
from baton.models import JoinLane, LaneState
from baton.temporal import Signals, TaskQueues, WorkflowTypes, holds_id, lane_id


@activity.defn
@typed_errors
async def join_lane(input: JoinLane) -> None:
    """Queue a change in its environment's lane, starting the lane if it is not running yet."""
    await activity.client().start_workflow(
        WorkflowTypes.LANE,
        LaneState(app=input.app, environment=input.environment, policy=input.policy),
        id=lane_id(input.app, input.environment),
        task_queue=TaskQueues.WORKFLOWS,
        start_signal=Signals.JOIN,
        start_signal_args=[input.request],
        static_summary=f"one rollout at a time: {input.app} in {input.environment}",
    )


@activity.defn
@typed_errors
async def is_running(workflow_id: str) -> bool:
    """Whether the workflow `workflow_id` (its latest run) is still running."""
    try:
        described = await activity.client().get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return described.status == WorkflowExecutionStatus.RUNNING


@activity.defn
@typed_errors
async def watch_holds(watch: HoldWatch) -> None:
    """Ask the environment's holds workflow whether a hold stops the change (it answers by
    signal), starting that workflow if it is not running yet."""
    await activity.client().start_workflow(
        WorkflowTypes.HOLDS,
        HoldState(environment=watch.environment),
        id=holds_id(watch.environment),
        task_queue=TaskQueues.WORKFLOWS,
        start_signal=Signals.WATCH,
        start_signal_args=[watch],
        static_summary=f"holds on automatic promotion into {watch.environment}",
    )
