"""Baton's REST API for people, under /api/v1: changes, what waits on the caller, and decisions.

Every route needs a credential (`Authorization: Bearer`, see `api.auth`): 401 without a valid one,
403 with the policy's reason when the caller may not make the decision, 409 when the change is not
in a state that takes it, 404 for unknown changes and environments. Lists and gates are read from
what workflows publish (search attributes and memo) and answer without a worker; a change's full
status and every decision need one (503 says so). The policy is checked here with the current
configuration, then again by the rollout's update validator with the policy it started under.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from temporalio.client import Client

from api.auth import Authenticator, Caller
from baton import changes, policy
from baton.config import NAME, BatonConfig
from baton.errors import BadRequest
from baton.models import ChangeState, Decision
from baton.temporal import CHANGE_KEY, SearchAttributes, WorkflowTypes, change_id

MAX_COMMENT = 2000
READ_PATIENCE = timedelta(seconds=5)  # how long a read waits for a worker to answer its query


class ErrorBody(BaseModel):
    """Every refusal: one line naming the problem and what to do."""

    error: str


REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a body that is not JSON, or lacks what it needs"},
    401: {"model": ErrorBody, "description": "no valid credential"},
    403: {"model": ErrorBody, "description": "the policy does not allow the caller"},
    404: {"model": ErrorBody, "description": "no such change, environment or app"},
    409: {"model": ErrorBody, "description": "not in a state that takes the request"},
    413: {"model": ErrorBody, "description": "a body larger than 64 KiB"},
    429: {"model": ErrorBody, "description": "too many failed authentications"},
    503: {"model": ErrorBody, "description": "Temporal or a worker is not answering"},
}
"""The error answers of every /api/v1 route (`ErrorBody`)."""

router = APIRouter(prefix="/api/v1", responses=REFUSALS)
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A Baton API token (baton_<id>_<secret>) or an OIDC access/ID token (JWT)",
)

AppName = Annotated[str, Field(pattern=NAME, max_length=63)]
ChangeKey = Annotated[str, Field(pattern=CHANGE_KEY)]
"""A change's key within its app: the PR number, `push-<sha12>` for a pushed commit, or
`batch-<sha12>` for a scheduled batch."""


def authenticated(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """The caller, from `Authorization: Bearer <Baton API token | OIDC JWT>` (the header is read
    as sent: `bearer` only declares the scheme in the schema)."""
    auth: Authenticator = request.app.state.auth
    client = request.client.host if request.client else "unknown"
    return auth.authenticate(request.headers.get("authorization"), client)


CallerDep = Annotated[Caller, Depends(authenticated)]


def client_of(request: Request) -> Client:
    return request.app.state.ingress.client


def config_of(request: Request) -> BatonConfig:
    return request.app.state.ingress.config


class DecisionRequest(BaseModel):
    """A decision, bound to the content the caller saw (when given)."""

    comment: str = Field(
        default="", max_length=MAX_COMMENT, description="why; a freeze override needs one"
    )
    content_hash: str | None = Field(
        default=None,
        max_length=200,
        description="the rendered content hash the caller decides on (the rollout's "
        "`content_hash`); refused when the GitOps PR holds other content by now",
    )
    head: str | None = Field(
        default=None, max_length=64, description="the GitOps PR head commit the caller saw"
    )


class AbortRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=MAX_COMMENT, description="why the change stops")


class DecisionResult(BaseModel):
    """What the workflow said about the decision, and the record it keeps of it."""

    message: str
    change: str
    decision: Decision


class ChangeView(BaseModel):
    """One change: as published (no worker needed), and its full status when a worker answers."""

    summary: changes.ChangeSummary
    gates: list[changes.PublishedGate] = Field(
        description="what the change and its running rollouts wait for, and on whom"
    )
    detail: changes.ChangeDetail | None = Field(
        default=None, description="timeline, artifact, rollouts and decisions (needs a worker)"
    )
    detail_unavailable: str | None = Field(
        default=None, description="why `detail` is missing (no worker is running)"
    )


@router.get("/me", response_model=Caller, summary="Who the credential belongs to")
def me(caller: CallerDep) -> Caller:
    return caller


@router.get("/changes", response_model=list[changes.ChangeSummary], summary="List changes")
async def list_changes(
    request: Request,
    caller: CallerDep,
    app: Annotated[AppName | None, Query(description="only this app's changes")] = None,
    state: Annotated[ChangeState | None, Query(description="only changes in this state")] = None,
    environment: Annotated[
        AppName | None, Query(description="only changes promoting into (or last in) it")
    ] = None,
    running: Annotated[bool | None, Query(description="only running (true) or ended")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[changes.ChangeSummary]:
    """Changes, newest first, from their search attributes."""
    filters = changes.Filters(app=app, state=state, environment=environment, running=running)
    return await changes.list_changes(client_of(request), limit, filters)


@router.get("/changes/{app}/{pr}", response_model=ChangeView, summary="One change")
async def show_change(
    request: Request, caller: CallerDep, app: AppName, pr: ChangeKey
) -> ChangeView:
    """Everything `baton changes show` has: summary and gates always, the full status when a
    worker answers."""
    client, change = client_of(request), change_id(app, pr)
    summary = await changes.summary(client, change)
    gates = await changes.change_gates(client, summary)
    view = ChangeView(summary=summary, gates=gates)
    try:
        view.detail = await changes.show(client, change, READ_PATIENCE)
    except changes.WorkerUnavailable as unavailable:
        view.detail_unavailable = str(unavailable)
    return view


@router.get(
    "/waiting", response_model=list[changes.PublishedGate], summary="What waits on the caller"
)
async def waiting(request: Request, caller: CallerDep) -> list[changes.PublishedGate]:
    """Rollouts waiting for an approval the caller may give, or at a freeze the caller may break."""
    config = config_of(request)
    gates = await changes.gates(
        client_of(request),
        f"WorkflowType = '{WorkflowTypes.ROLLOUT}' "
        f"AND {SearchAttributes.GATE.name} IN ('approval', 'freeze')",
    )
    return [g for g in gates if _awaits(config, g, caller)]


def _awaits(config: BatonConfig, published: changes.PublishedGate, caller: Caller) -> bool:
    gate = published.gate
    if caller.user in gate.approved_by:
        return False
    if gate.kind == "approval":
        return not gate.waiting_on or policy.listed(gate.waiting_on, caller.user, caller.groups)
    env = next((e for e in config.environments if e.name == gate.environment), None)
    approvers = env.approvals.approvers if env else []
    return gate.kind == "freeze" and (
        not approvers or policy.listed(approvers, caller.user, caller.groups)
    )


@dataclass
class RolloutTarget:
    """The rollout a decision is for: a change's, into one environment (from the path)."""

    app: str
    pr: str
    environment: str

    @property
    def change(self) -> str:
        return change_id(self.app, self.pr)


def rollout_target(app: AppName, pr: ChangeKey, environment: AppName) -> RolloutTarget:
    return RolloutTarget(app, pr, environment)


TargetDep = Annotated[RolloutTarget, Depends(rollout_target)]


async def _check(request: Request, caller: Caller, target: RolloutTarget, action: str) -> None:
    """Refuse (PolicyViolation, 403) a caller who may not `action` the target rollout by the
    current policy; the rollout's validator checks again with the policy it started under."""
    environments = config_of(request).environments
    env = next((e for e in environments if e.name == target.environment), None)
    detail = await changes.show(client_of(request), target.change)
    if env is None:
        promoted = detail.change.environments or [e.name for e in environments]
        if target.environment not in promoted:
            raise changes.EnvironmentNotFound(target.change, target.environment, promoted)
        # The change's rollouts were planned under a configuration that named the environment;
        # the API's does not, so it has no policy to check the caller against.
        raise changes.Refused(
            f"the API's configuration has no environment {target.environment!r}, which "
            f"{target.change} is promoted to, so it cannot check {target.environment}'s "
            "approval policy: give the API the configuration the workers run (BATON_CONFIG) "
            "and restart it"
        )
    policy.check_decider(
        env.approvals,
        env.name,
        detail.change.author,
        caller.user,
        action,
        groups=caller.groups,
        forge_users=caller.forge_users,
        authors=detail.change.authors,
    )


Action = Literal["approve", "reject", "override-freeze"]
ACTIONS: dict[str, str] = {
    "approve": "approve",
    "reject": "reject",
    "override-freeze": "override the freeze of",
}


@router.post(
    "/changes/{app}/{pr}/rollouts/{environment}/{action}",
    response_model=DecisionResult,
    summary="Decide on a change's rollout into an environment",
)
async def decide(
    request: Request,
    caller: CallerDep,
    target: TargetDep,
    action: Annotated[
        Action,
        Path(
            description="approve: counts towards the policy; reject: the promotion stops; "
            "override-freeze: break glass, a rollout waiting for a freeze goes ahead now "
            "(`comment` is the reason, required)"
        ),
    ],
    body: DecisionRequest,
) -> DecisionResult:
    await _check(request, caller, target, ACTIONS[action])
    decision = caller.decision(body.comment, content_hash=body.content_hash, head=body.head)
    client, change, env = client_of(request), target.change, target.environment
    if action == "override-freeze":
        message = await changes.override_freeze(client, change, env, decision)
    else:
        message = await changes.decide(client, change, env, decision, approve=action == "approve")
    return DecisionResult(message=message, change=change, decision=decision)


@router.post(
    "/changes/{app}/{pr}/abort",
    response_model=DecisionResult,
    summary="Stop a change wherever it is; an open GitOps PR is closed",
)
async def abort(
    request: Request, caller: CallerDep, app: AppName, pr: ChangeKey, body: AbortRequest
) -> DecisionResult:
    """The change's author, or anyone who may approve one of its environments, may abort it."""
    client, change = client_of(request), change_id(app, pr)
    detail = await changes.show(client, change)
    deciders = [env.approvals.approvers for env in config_of(request).environments]
    author = detail.change.author
    if (
        caller.user != author
        and author not in caller.forge_users
        and not any(
            not approvers or policy.listed(approvers, caller.user, caller.groups)
            for approvers in deciders
        )
    ):
        raise policy.PolicyViolation(
            f"{caller.user} may not abort {change}: only its author and the approvers of its "
            "environments may"
        )
    if not body.reason.strip():
        raise BadRequest("give a reason for the abort")
    message = await changes.abort(client, change, caller.user, body.reason)
    return DecisionResult(message=message, change=change, decision=caller.decision(body.reason))
