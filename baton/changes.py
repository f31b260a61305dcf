"""Client-side operations on changes: list, inspect, follow, approve, reject, abort, re-run (the
CLI and the API share them).

What a change shows is read from what its workflows publish: search attributes for the list, the
`status` memo of the change, its rollouts and pipelines for one change (`show`), and the heartbeat
of a running build. Temporal answers those from its own store, so they need no worker, and a
finished change never does. Only changes started before the workflows published a memo are asked
by query, which a worker answers. Gates are read from the `gate` memo of running workflows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, Field, model_validator
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from baton.errors import DecisionRefused, InfrastructureError, NotFound
from baton.models import (
    AbortInput,
    ChangeState,
    ChangeStatus,
    Decision,
    Gate,
    PipelineStatus,
    RolloutStatus,
    Stage,
)
from baton.policy import PolicyViolation
from baton.temporal import (
    MEMO_GATE,
    Queries,
    SearchAttributes,
    Updates,
    WorkflowTypes,
    pipeline_id,
    rollout_id,
)

T = TypeVar("T")


class ChangeNotFound(NotFound):
    def __init__(self, change_id: str) -> None:
        super().__init__(f"no change {change_id!r}: list changes with `baton changes ls`")


class EnvironmentNotFound(NotFound):
    def __init__(self, change_id: str, environment: str, environments: list[str]) -> None:
        super().__init__(
            f"{change_id} has no environment {environment!r}: it is promoted to "
            f"{', '.join(environments)}"
        )


class WorkerUnavailable(InfrastructureError):
    def __init__(self, change_id: str) -> None:
        super().__init__(
            f"cannot read {change_id}: no Baton worker answered; start one with `baton dev up` "
            "if none is running"
        )


class Refused(DecisionRefused):
    """The workflow refused the request (policy, state); the message says why."""


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

    @property
    def label(self) -> str:
        """What `changes ls` calls the change: its state (aborted, completed...), or how its
        workflow ended when the workflow did not end itself (terminated, timed_out, failed)."""
        if self.status in ("running", "completed") and self.state:
            return self.state
        return self.status


class PublishedGate(BaseModel):
    """What a running change or rollout waits for, as it published it (no worker needed)."""

    workflow_id: str
    app: str | None = None
    environment: str | None = None
    commit: str | None = None
    gate: Gate


class ChangeDetail(BaseModel):
    """One change as `baton changes show` prints it."""

    change: ChangeStatus
    rollout: RolloutStatus | None = None
    """The first rollout under way (`running_rollouts[0]`)."""
    running_rollouts: list[RolloutStatus] = []
    """Every rollout under way, each with its environment, gate and steps (the environments of a
    parallel stage roll out at once)."""
    workflow: str = "running"
    """Temporal's status of the change's workflow: running, completed, terminated, failed..."""
    steps: list[Stage] = []
    """The steps of the pipeline the change is in (validating, integrating); a running build's
    detail is its last progress line."""
    waiting: list[str] = []
    """Steps retrying while a dependency is away: `waiting since <time> for <step>: <last error>
    (attempt N)`, from Temporal's record of the pending activity (no worker needed); a rollout's
    lines begin with its environment (`staging-a: waiting since ...`)."""

    @model_validator(mode="after")
    def _first_is_rollout(self) -> ChangeDetail:
        """`rollout` and `running_rollouts` say the same of the first rollout, whichever was given."""
        if not self.running_rollouts and self.rollout is not None:
            self.running_rollouts = [self.rollout]
        elif self.rollout is None and self.running_rollouts:
            self.rollout = self.running_rollouts[0]
        return self


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
    """The change's timeline and gate, the rollouts under way (each with its gate and steps) and
    its pipeline's steps, from what its workflows publish (see the module); raises ChangeNotFound.

    A change started before workflows published their status is asked by query, which waits at
    most `patience` for a worker (Temporal holds a query while no worker polls), then
    WorkerUnavailable."""
    change_id = normalize_id(change)
    description = await _describe(client, change_id)
    if description is None:
        raise ChangeNotFound(change_id)
    status = await _published(client, description, ChangeStatus, patience)
    workflow = description.status.name.lower() if description.status else "unknown"
    steps = await _steps(client, status)
    waiting = []
    pipeline = await _describe(client, run) if (run := _pipeline_id(status)) else None
    if pipeline is not None:
        waiting += waiting_out(pipeline.raw_description.pending_activities, steps)
    rollouts = []
    for child in running_rollouts(status):
        described = await _describe(client, child)
        if described is None:
            continue
        rollout = await _published(client, described, RolloutStatus, patience)
        rollouts.append(rollout)
        lines = waiting_out(described.raw_description.pending_activities, rollout.timeline)
        waiting += [f"{rollout.environment}: {line}" for line in lines]
    return ChangeDetail(
        change=status, running_rollouts=rollouts, workflow=workflow, steps=steps, waiting=waiting
    )


def running_rollouts(status: ChangeStatus) -> list[str]:
    """The ids of the change's rollouts under way; `current_rollout` alone for changes that
    published before parallel stages."""
    if status.running_rollouts:
        return status.running_rollouts
    return [status.current_rollout] if status.current_rollout else []


ACTIVITY_STEPS = {
    "build_image": "image",
    "try_image": "image_test",
    "push_image": "push",
    "stage_candidate": "candidate",
    "publish_artifact": "publish",
    "start_long_tests": "long_test",
    "long_tests_result": "long_test",
    "render_environment": "render",
    "propose_gitops_change": "gitops pull request",
}
"""Activities whose timeline step has another name than the activity (checks: their kind)."""


def waiting_out(pending: Sequence[PendingActivityInfo], timeline: list[Stage]) -> list[str]:
    """One line per pending activity that failed and waits for its next attempt: since when its
    step runs (the first attempt; else the last failure), and the last failure's message, which
    names the dependency (`cannot reach the registry at ...`)."""
    lines = []
    for activity in pending:
        if activity.attempt < 2 or not activity.last_failure.message:
            continue
        name = activity.activity_type.name
        running = [st for st in timeline if st.outcome == "running"]
        step = next((st for st in running if st.name == ACTIVITY_STEPS.get(name, name)), None)
        since = step.started_at if step else activity.last_attempt_complete_time.ToDatetime(UTC)
        lines.append(
            f"waiting since {since:%Y-%m-%d %H:%M:%S} UTC for {step.name if step else name}: "
            f"{activity.last_failure.message} (attempt {activity.attempt})"
        )
    return lines


async def read_status(
    client: Client,
    workflow_id: str,
    status_type: type[T],
    patience: timedelta = timedelta(seconds=15),
) -> T | None:
    """The status a workflow (change, rollout, pipeline) published; None when it has not started."""
    description = await _describe(client, workflow_id)
    if description is None:
        return None
    return await _published(client, description, status_type, patience)


async def _describe(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """What Temporal holds of the workflow (no worker asked); None when there is no such one."""
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def _published(
    client: Client,
    description: WorkflowExecutionDescription,
    status_type: type[T],
    patience: timedelta,
) -> T:
    status = await description.memo_value("status", None, type_hint=status_type)
    if status is None:  # started before workflows published their status
        return await _query(client, description.id, status_type, patience)
    return status


# Pipeline activities whose heartbeats are progress lines, and the step each one runs.
_REPORTING_STEPS = {
    "build_image": "image",
    "try_image": "image_test",
    "push_image": "push",
    "stage_candidate": "candidate",
    "long_tests_result": "long_test",
}


def _pipeline_id(status: ChangeStatus) -> str | None:
    """The pipeline a validating or integrating change is in."""
    if status.state == "validating":
        run = f"pr-{sum(1 for s in status.timeline if s.name.startswith('validate '))}"
    elif status.state == "integrating":
        run = "ci"
    else:
        return None
    return pipeline_id(status.id, run)


async def _steps(client: Client, status: ChangeStatus) -> list[Stage]:
    """The steps of the pipeline a validating or integrating change is in; a running image step's
    (build, image test, push) detail is the last line it reported (its activity's heartbeat)."""
    run = _pipeline_id(status)
    description = await _describe(client, run) if run else None
    if description is None:
        return []
    pipeline = await description.memo_value("status", None, type_hint=PipelineStatus)
    if pipeline is None:
        return []
    for activity in description.raw_description.pending_activities:
        name = _REPORTING_STEPS.get(activity.activity_type.name)
        if name is not None and activity.heartbeat_details.payloads:
            (line, *_) = await client.data_converter.decode(
                list(activity.heartbeat_details.payloads)
            )
            for step in pipeline.timeline:
                if step.name == name and step.outcome == "running":
                    step.detail = str(line)
    return pipeline.timeline


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
    if status.environments and environment not in status.environments:
        raise EnvironmentNotFound(status.id, environment, status.environments)
    if status.artifact is None:
        raise Refused(
            f"{status.id} has not been integrated yet (now: {status.state}): "
            f"approvals apply to environment rollouts"
        )
    target = rollout_id(status.app, environment, status.artifact.commit)
    # Environments of a parallel stage roll out at once: any of them may be waiting.
    running = [s.environment for s in status.promotion if s.position == "running"]
    if target not in running_rollouts(status) and environment not in running:
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
    """Stop the change wherever it is; Refused says why not."""
    return await _update_change(client, change, Updates.ABORT, AbortInput(user=user, reason=reason))


async def rerun(client: Client, change: str, user: str) -> str:
    """Validate the change's head again (its checks could not run, and that is fixed); Refused
    unless it waits for its merge."""
    return await _update_change(client, change, Updates.RERUN, user)


async def _update_change(client: Client, change: str, update: str, arg: object) -> str:
    change_id = normalize_id(change)
    try:
        return await client.get_workflow_handle(change_id).execute_update(
            update, arg, result_type=str
        )
    except WorkflowUpdateFailedError as exc:
        raise refusal(exc) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            # Temporal refuses updates to a closed workflow as "not found": say which it is.
            raise await _not_running(client, change_id, update) from None
        raise


async def _not_running(client: Client, change_id: str, update: str) -> ChangeNotFound | Refused:
    """Why `change_id` takes no update: it has ended (and how), or there is no such change."""
    try:
        described = await client.get_workflow_handle(change_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return ChangeNotFound(change_id)
        raise
    ended = described.status.name.lower() if described.status else "closed"
    return Refused(f"{change_id} has already ended ({ended}): nothing to {update}")
