"""Client-side operations on changes: list, inspect, approve, reject, abort (CLI and API share them).

Lists and gates are read from what workflows publish (search attributes, and the memo's gate), so
they answer without a worker; a change's full status is its `status` query, which needs one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowExecution, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from baton.errors import DecisionRefused, InfrastructureError, RequestError
from baton.models import AbortInput, ChangeState, ChangeStatus, Decision, Gate, RolloutStatus
from baton.policy import PolicyViolation
from baton.temporal import (
    MEMO_GATE,
    Queries,
    SearchAttributes,
    Updates,
    WorkflowTypes,
    rollout_id,
)

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
    """The workflow refused the request (its state); the message says why."""


class ChangeSummary(BaseModel):
    """A change as its search attributes show it (no worker needed)."""

    id: str = Field(description="change/<app>/<pr>")
    status: str = Field(description="the workflow's status: running, completed, failed, ...")
    state: str | None = Field(description="the change's state (ChangeState)")
    app: str | None = None
    pr: int | None = None
    commit: str | None
    environment: str | None = Field(description="the environment it is promoting into, or was")
    started_at: datetime | None


class PublishedGate(BaseModel):
    """What a running change or rollout waits for, as it published it (no worker needed)."""

    workflow_id: str
    app: str | None = None
    environment: str | None = None
    commit: str | None = None
    gate: Gate


class ChangeDetail(BaseModel):
    """A change as `baton changes show` shows it: its status and its current rollout's."""

    change: ChangeStatus
    rollout: RolloutStatus | None = None


class Filters(BaseModel):
    """Which changes to list; every value is checked before it goes into a visibility query."""

    app: str | None = Field(default=None, pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    state: ChangeState | None = None
    environment: str | None = Field(default=None, pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    running: bool | None = None

    def query(self) -> str:
        clauses = [f"WorkflowType = '{WorkflowTypes.CHANGE}'"]
        if self.app:
            clauses.append(f"{SearchAttributes.APP.name} = '{self.app}'")
        if self.state:
            clauses.append(f"{SearchAttributes.STATE.name} = '{self.state}'")
        if self.environment:
            clauses.append(f"{SearchAttributes.ENVIRONMENT.name} = '{self.environment}'")
        if self.running is not None:
            clauses.append(f"ExecutionStatus {'=' if self.running else '!='} 'Running'")
        return " AND ".join(clauses)


def normalize_id(change: str) -> str:
    """Accept `change/app/7` or the short `app/7`."""
    return change if change.startswith("change/") else f"change/{change}"


async def list_changes(
    client: Client, limit: int = 50, filters: Filters | None = None
) -> list[ChangeSummary]:
    """Changes, newest first, from visibility (search attributes): no worker needed."""
    query = (filters or Filters()).query()
    return [_summary(execution) async for execution in client.list_workflows(query, limit=limit)]


async def summary(client: Client, change: str) -> ChangeSummary:
    """One change's summary from visibility; ChangeNotFound when there is none."""
    change_id = normalize_id(change)
    query = f"WorkflowType = '{WorkflowTypes.CHANGE}' AND WorkflowId = '{change_id}'"
    async for execution in client.list_workflows(query, limit=1):
        return _summary(execution)
    raise ChangeNotFound(change_id)


def _summary(execution: WorkflowExecution) -> ChangeSummary:
    attributes = execution.typed_search_attributes
    pr = attributes.get(SearchAttributes.PR)
    return ChangeSummary(
        id=execution.id,
        status=execution.status.name.lower() if execution.status else "unknown",
        # Changes started before BatonState was split out of BatonStage carry only that.
        state=attributes.get(SearchAttributes.STATE)
        or attributes.get(SearchAttributes.LEGACY_STAGE),
        app=attributes.get(SearchAttributes.APP),
        pr=int(pr) if pr and pr.isdigit() else None,
        commit=attributes.get(SearchAttributes.COMMIT),
        environment=attributes.get(SearchAttributes.ENVIRONMENT),
        started_at=execution.start_time,
    )


async def gates(client: Client, query: str, limit: int = 200) -> list[PublishedGate]:
    """The gates of the running workflows `query` selects, from their memo: no worker needed."""
    found = []
    async for execution in client.list_workflows(
        f"({query}) AND ExecutionStatus = 'Running'", limit=limit
    ):
        gate = await _memo_gate(execution)
        if gate is not None:
            attributes = execution.typed_search_attributes
            found.append(
                PublishedGate(
                    workflow_id=execution.id,
                    app=attributes.get(SearchAttributes.APP),
                    environment=attributes.get(SearchAttributes.ENVIRONMENT),
                    commit=attributes.get(SearchAttributes.COMMIT),
                    gate=gate,
                )
            )
    return found


async def _memo_gate(execution: WorkflowExecution) -> Gate | None:
    if MEMO_GATE not in execution.raw_info.memo.fields:
        return None
    return await execution.memo_value(MEMO_GATE, type_hint=Gate)


async def change_gates(client: Client, change: ChangeSummary) -> list[PublishedGate]:
    """What a change and its running rollouts wait for, as published: no worker needed."""
    found = await gates(client, f"WorkflowId = '{change.id}'", limit=1)
    app, commit = change.app, change.commit
    if app and commit:
        found += await gates(
            client,
            f"WorkflowType = '{WorkflowTypes.ROLLOUT}' AND {SearchAttributes.APP.name} = '{app}' "
            f"AND {SearchAttributes.COMMIT.name} = '{commit}'",
        )
    return found


async def show(
    client: Client, change: str, patience: timedelta = timedelta(seconds=15)
) -> ChangeDetail:
    """The change's timeline and gate, plus the status of the rollout it is in, if any.

    Each status query waits at most `patience` for a worker to answer (Temporal holds a query
    while no worker polls), then WorkerUnavailable."""
    change_id = normalize_id(change)
    status = await _query(client, change_id, ChangeStatus, patience)
    rollout = None
    if status.current_rollout:
        rollout = await _query(client, status.current_rollout, RolloutStatus, patience)
    return ChangeDetail(change=status, rollout=rollout)


async def _query(client: Client, workflow_id: str, result_type: type[T], patience: timedelta) -> T:
    try:
        return await client.get_workflow_handle(workflow_id).query(
            Queries.STATUS, result_type=result_type, rpc_timeout=patience
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ChangeNotFound(workflow_id) from None
        # The client's own deadline (`patience`) ends the wait as CANCELLED "Timeout expired".
        timed_out = exc.status == RPCStatusCode.CANCELLED and "Timeout" in exc.message
        if "no poller" in exc.message or exc.status == RPCStatusCode.DEADLINE_EXCEEDED or timed_out:
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
        raise refusal(exc) from None


def refusal(exc: WorkflowUpdateFailedError) -> DecisionRefused:
    """The workflow's refusal as a Baton error: a PolicyViolation when the policy refused."""
    message = getattr(exc.cause, "message", None) or str(exc.cause)
    if getattr(exc.cause, "type", None) == PolicyViolation.__name__:
        return PolicyViolation(message)
    return Refused(message)


async def abort(client: Client, change: str, user: str, reason: str) -> str:
    change_id = normalize_id(change)
    try:
        return await client.get_workflow_handle(change_id).execute_update(
            Updates.ABORT, AbortInput(user=user, reason=reason), result_type=str
        )
    except WorkflowUpdateFailedError as exc:
        raise refusal(exc) from None
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
