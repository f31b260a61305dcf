"""Client-side operations on changes: list, inspect, approve, reject, abort (CLI and API share them)."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from baton.errors import DecisionRefused, InfrastructureError, RequestError
from baton.models import AbortInput, ChangeStatus, Decision, RolloutStatus
from baton.temporal import Queries, SearchAttributes, Updates, WorkflowTypes, rollout_id

T = TypeVar("T")


class ChangeNotFound(RequestError):
    def __init__(self, change_id: str) -> None:
        super().__init__(f"no change {change_id!r}: list changes with `baton changes ls`")


class WorkerUnavailable(InfrastructureError):
    def __init__(self, change_id: str) -> None:
        super().__init__(
            f"cannot read {change_id}: no Baton worker is running; start one with `baton dev up`"
        )


class Refused(DecisionRefused):
    """The workflow refused the request (policy, state); the message says why."""


class ChangeSummary(BaseModel):
    id: str
    status: str
    state: str | None
    commit: str | None
    environment: str | None
    started_at: datetime | None


class ChangeDetail(BaseModel):
    change: ChangeStatus
    rollout: RolloutStatus | None = None


def normalize_id(change: str) -> str:
    """Accept `change/app/7` or the short `app/7`."""
    return change if change.startswith("change/") else f"change/{change}"


async def list_changes(client: Client, limit: int = 50) -> list[ChangeSummary]:
    """Changes, newest first, from visibility (search attributes): no worker needed."""
    changes = []
    async for execution in client.list_workflows(
        f"WorkflowType = '{WorkflowTypes.CHANGE}'", limit=limit
    ):
        attributes = execution.typed_search_attributes
        changes.append(
            ChangeSummary(
                id=execution.id,
                status=execution.status.name.lower() if execution.status else "unknown",
                # Changes started before BatonState was split out of BatonStage carry only that.
                state=attributes.get(SearchAttributes.STATE)
                or attributes.get(SearchAttributes.LEGACY_STAGE),
                commit=attributes.get(SearchAttributes.COMMIT),
                environment=attributes.get(SearchAttributes.ENVIRONMENT),
                started_at=execution.start_time,
            )
        )
    return changes


async def show(client: Client, change: str) -> ChangeDetail:
    """The change's timeline and gate, plus the status of the rollout it is in, if any."""
    change_id = normalize_id(change)
    status = await _query(client, change_id, ChangeStatus)
    rollout = None
    if status.current_rollout:
        rollout = await _query(client, status.current_rollout, RolloutStatus)
    return ChangeDetail(change=status, rollout=rollout)


async def _query(client: Client, workflow_id: str, result_type: type[T]) -> T:
    try:
        return await client.get_workflow_handle(workflow_id).query(
            Queries.STATUS, result_type=result_type
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ChangeNotFound(workflow_id) from None
        if "no poller" in exc.message or exc.status == RPCStatusCode.DEADLINE_EXCEEDED:
            raise WorkerUnavailable(workflow_id) from None
        raise


async def decide(
    client: Client, change: str, environment: str, decision: Decision, *, approve: bool
) -> str:
    """Approve or reject the change's rollout into `environment`; refused with the policy's reason."""
    update = Updates.APPROVE if approve else Updates.REJECT
    return await _update_rollout(client, change, environment, update, decision)


async def override_freeze(client: Client, change: str, environment: str, override: Decision) -> str:
    """Break glass: let the change's rollout into a frozen `environment` go ahead, with a reason."""
    return await _update_rollout(client, change, environment, Updates.OVERRIDE_FREEZE, override)


async def _update_rollout(
    client: Client, change: str, environment: str, update: str, arg: Decision
) -> str:
    """Send an Update to the change's rollout into `environment`; Refused says why not."""
    detail = await show(client, change)
    status = detail.change
    if status.artifact is None:
        raise Refused(
            f"{status.id} has not been integrated yet (now: {status.state}): "
            f"approvals apply to environment rollouts"
        )
    target = rollout_id(status.app, environment, status.artifact.commit)
    if status.current_rollout != target:
        done = [r.environment for r in status.rollouts]
        where = (
            f"it already went through {environment}"
            if environment in done
            else (
                f"it is not in {environment} yet (now: {status.state} {status.reason or ''})".strip()
            )
        )
        raise Refused(f"{status.id} is not waiting for {environment}: {where}")
    try:
        return await client.get_workflow_handle(target).execute_update(update, arg, result_type=str)
    except WorkflowUpdateFailedError as exc:
        raise Refused(getattr(exc.cause, "message", None) or str(exc.cause)) from None


async def abort(client: Client, change: str, user: str, reason: str) -> str:
    change_id = normalize_id(change)
    try:
        return await client.get_workflow_handle(change_id).execute_update(
            Updates.ABORT, AbortInput(user=user, reason=reason), result_type=str
        )
    except WorkflowUpdateFailedError as exc:
        raise Refused(getattr(exc.cause, "message", None) or str(exc.cause)) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            # Temporal refuses updates to a closed workflow as "not found": say which it is.
            raise await _not_running(client, change_id) from None
        raise


async def _not_running(client: Client, change_id: str) -> ChangeNotFound | Refused:
    """Why `change_id` takes no update: it has ended (and how), or there is no such change."""
    try:
        described = await client.get_workflow_handle(change_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return ChangeNotFound(change_id)
        raise
    ended = described.status.name.lower() if described.status else "closed"
    return Refused(f"{change_id} has already ended ({ended}): nothing to abort")
