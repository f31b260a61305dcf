"""Client-side operations on environments: hold and unhold automatic promotion, list holds (the
API calls them after checking who may; see `baton.holds`).

Holds live in each environment's holds workflow (`hold/<env>`): placing one starts it if need be
(update-with-start), and the list is read from its `status` memo, so it answers without a worker.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from baton.changes import Refused, refusal
from baton.holds import Hold, HoldRequest, HoldState, UnholdRequest, not_held
from baton.temporal import TaskQueues, Updates, WorkflowTypes, holds_id


async def hold(client: Client, request: HoldRequest) -> Hold:
    """Stop automatic promotion into `request.environment` (for one app, or every app)."""
    start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
        WorkflowTypes.HOLDS,
        HoldState(environment=request.environment),
        id=holds_id(request.environment),
        task_queue=TaskQueues.WORKFLOWS,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"holds on automatic promotion into {request.environment}",
    )
    try:
        return await client.execute_update_with_start_workflow(
            Updates.HOLD, request, start_workflow_operation=start, result_type=Hold
        )
    except WorkflowUpdateFailedError as exc:
        raise refusal(exc) from None


async def unhold(client: Client, request: UnholdRequest) -> Hold:
    """Lift a hold; Refused when there is none for that app (or for every app)."""
    handle = client.get_workflow_handle(holds_id(request.environment))
    try:
        return await handle.execute_update(Updates.UNHOLD, request, result_type=Hold)
    except WorkflowUpdateFailedError as exc:
        raise refusal(exc) from None
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        raise Refused(not_held(request, [])) from None  # never held there: no workflow yet


async def holds(client: Client, environments: list[str]) -> list[Hold]:
    """Every hold on `environments`, from their holds workflows' status memo."""
    found: list[Hold] = []
    for environment in environments:
        try:
            described = await client.get_workflow_handle(holds_id(environment)).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        state = await described.memo_value("status", None, type_hint=HoldState)
        found += state.holds if state else []
    return found
