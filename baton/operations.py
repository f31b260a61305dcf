"""Client-side operations on environments: hold and unhold automatic promotion, list holds (see
`baton.holds`), promote an artifact CI built before, retry a failed rollout. The API calls them
after checking who may.

Holds live in each environment's holds workflow (`hold/<env>`): placing one starts it if need be
(update-with-start), and the list is read from its `status` memo, so it answers without a worker.
A promotion is a change of its own (`change/<app>/promote-<sha12>-<env>`) that deploys the
artifact as it is; a retry is a new run of the change (same id) that goes on from where it ended.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from baton import changes
from baton.changes import Refused, refusal
from baton.errors import BadRequest, InfrastructureError, NotFound
from baton.holds import Hold, HoldRequest, HoldState, UnholdRequest, not_held
from baton.models import Artifact, ChangeInput, ChangePlan, ChangeStatus
from baton.temporal import (
    SearchAttributes,
    TaskQueues,
    Updates,
    WorkflowTypes,
    holds_id,
    initial_search_attributes,
    promote_change_id,
)

PATIENCE = timedelta(seconds=10)
"""How long a hold or unhold waits for a worker to take it (503 after)."""


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
            Updates.HOLD,
            request,
            start_workflow_operation=start,
            result_type=Hold,
            rpc_timeout=PATIENCE,
        )
    except WorkflowUpdateFailedError as exc:
        raise refusal(exc) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise _no_worker(request.environment) from None


async def unhold(client: Client, request: UnholdRequest) -> Hold:
    """Lift a hold; Refused when there is none for that app (or for every app)."""
    handle = client.get_workflow_handle(holds_id(request.environment))
    try:
        return await handle.execute_update(
            Updates.UNHOLD, request, result_type=Hold, rpc_timeout=PATIENCE
        )
    except WorkflowUpdateFailedError as exc:
        raise refusal(exc) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise _no_worker(request.environment) from None
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


def _no_worker(environment: str) -> InfrastructureError:
    return InfrastructureError(
        f"no Baton worker answered for {holds_id(environment)} within {PATIENCE.seconds}s: "
        "start one with `baton dev up` if none is running"
    )


COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


async def built(client: Client, app: str, commit: str) -> tuple[Artifact, str]:
    """The artifact CI built for `app` at `commit` (a full SHA, or a prefix of 7 or more hex
    digits) and the change that built it, from the changes' status memo; NotFound when no change
    of Baton's integrated that commit."""
    if not COMMIT.match(commit):
        raise BadRequest(f"{commit!r} is not a commit: give its SHA (7 to 40 hex digits)")
    query = f"WorkflowType = '{WorkflowTypes.CHANGE}' AND {SearchAttributes.APP.name} = '{app}'"
    async for execution in client.list_workflows(query, limit=1000):
        if not (execution.typed_search_attributes.get(SearchAttributes.COMMIT) or "").startswith(
            commit
        ):
            continue
        status = await execution.memo_value("status", None, type_hint=ChangeStatus)
        if status is not None and status.artifact and status.artifact.commit.startswith(commit):
            return status.artifact, execution.id
    raise NotFound(
        f"no artifact of {app} at {commit}: CI builds one when a change integrates the commit "
        "(`baton changes ls` lists them)"
    )


async def promote(client: Client, plan: ChangePlan, commit: str, user: str) -> str:
    """Deploy the artifact CI built for `commit` into the plan's (one) environment, through its
    gates, as a change of its own; returns its id. Refused while the same promotion runs."""
    artifact, source = await built(client, plan.app.name, commit)
    (environment,) = [env.name for env in plan.environments]
    change = ChangeInput(
        plan=plan,
        repo=plan.app.repo,
        trigger="promote",
        title=f"{user} promotes {artifact.commit[:12]} (built for {source}) into {environment}",
        author=user,
        head_branch=plan.app.branch or "",
        head_sha=artifact.commit,
        artifact=artifact,
    )
    return await _start(client, change, promote_change_id(plan.app.name, commit, environment))


async def retry(client: Client, plan: ChangePlan, change: str, environment: str, user: str) -> str:
    """Roll the ended change out to `environment` again (its rollout there did not deploy), then
    on along the promotion graph, under the current configuration (`plan`)."""
    detail = await changes.show(client, change)
    status = detail.change
    if detail.workflow == "running":
        raise Refused(
            f"{status.id} is still {status.state}: a rollout is retried once its change has ended"
        )
    names = [env.name for env in plan.environments]
    if environment not in names:
        raise changes.EnvironmentNotFound(status.id, environment, names)
    last = next((r for r in reversed(status.rollouts) if r.environment == environment), None)
    if status.artifact is None or last is None:
        raise Refused(f"{status.id} never rolled out to {environment}: {why_not(status)}")
    if last.outcome in ("deployed", "superseded"):
        raise Refused(f"{status.id} did not fail in {environment}: it was {last.outcome} there")
    again = ChangeInput(
        plan=plan,
        repo=status.repo,
        pr_number=status.pr_number,
        trigger="retry",
        title=f"{user} retries {environment} ({last.outcome} before: {last.reason})",
        author=status.author,
        head_branch=plan.app.branch or "",
        head_sha=status.head_sha,
        artifact=status.artifact,
        earlier=status,
        retry=environment,
    )
    return await _start(client, again, status.id)


def why_not(status: ChangeStatus) -> str:
    """What stopped a change before an environment: the environments that did not deploy."""
    stopped = [f"{r.environment} ({r.outcome})" for r in status.rollouts if r.outcome != "deployed"]
    if stopped:
        return f"retry the environment that did not deploy: {', '.join(stopped)}"
    return f"it ended {status.state} ({status.reason or 'no reason given'}) before any rollout"


async def _start(client: Client, change: ChangeInput, workflow_id: str) -> str:
    try:
        await client.start_workflow(
            WorkflowTypes.CHANGE,
            change,
            id=workflow_id,
            task_queue=TaskQueues.WORKFLOWS,
            search_attributes=initial_search_attributes(change),
            static_summary=change.title[:200],
        )
    except WorkflowAlreadyStartedError:
        raise Refused(
            f"{workflow_id} is running already: follow it with `baton changes watch {workflow_id}`"
        ) from None
    return workflow_id
