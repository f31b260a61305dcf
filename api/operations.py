"""Operations on environments under /api/v1, on the same authenticated path as decisions: hold and
unhold automatic promotion into an environment, list the holds, promote an artifact CI built
before into an environment, retry a change's failed rollout.

Who may do each in an environment is its `operators` (users, `group:NAME`), else its approvers,
else anyone authenticated (`policy.check_operator`): 403 with the reason otherwise; 404 for an
unknown environment, app, change or commit; 409 for what the state does not allow (an unhold of
what is not on hold, a retry of a running change or of a rollout that did not fail).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from api.v1 import (
    MAX_COMMENT,
    REFUSALS,
    AppName,
    CallerDep,
    ChangeKey,
    client_of,
    config_of,
)
from baton import operations, policy
from baton.changes import Refused
from baton.config import BatonConfig, ConfigError, EnvironmentConfig
from baton.errors import NotFound
from baton.holds import Hold, HoldRequest, UnholdRequest
from baton.models import ChangePlan
from baton.temporal import change_id

router = APIRouter(prefix="/api/v1", responses=REFUSALS)


class HoldBody(BaseModel):
    app: AppName | None = Field(default=None, description="one app only; default: every app")
    reason: str = Field(
        min_length=1, max_length=MAX_COMMENT, description="why: what every waiting change shows"
    )


class UnholdBody(BaseModel):
    app: AppName | None = Field(
        default=None, description="the hold on this app; default: the hold on every app"
    )


def _operated(
    config: BatonConfig,
    environment: str,
    app: str | None,
    user: str,
    groups: list[str],
    action: str,
) -> EnvironmentConfig:
    """The environment, once the caller may `action` it (PolicyViolation) and the names exist."""
    env = next((e for e in config.environments if e.name == environment), None)
    if env is None:
        known = ", ".join(e.name for e in config.environments) or "none"
        raise NotFound(f"no environment {environment!r}: the configuration has {known}")
    if app is not None and app not in [a.name for a in config.apps]:
        known = ", ".join(a.name for a in config.apps)
        raise NotFound(f"no app {app!r}: the configuration has {known}")
    policy.check_operator(env, user, action, groups)
    return env


@router.post(
    "/environments/{environment}/hold",
    response_model=Hold,
    summary="Stop automatic promotion into an environment",
)
async def hold(request: Request, caller: CallerDep, environment: AppName, body: HoldBody) -> Hold:
    """Changes that reach the environment wait there, with this hold as their gate, until it is
    lifted; a hold on the same app (or on every app) is replaced."""
    config = config_of(request)
    _operated(config, environment, body.app, caller.user, caller.groups, "hold")
    held = HoldRequest(environment=environment, app=body.app, reason=body.reason, by=caller.user)
    return await operations.hold(client_of(request), held)


@router.post(
    "/environments/{environment}/unhold",
    response_model=Hold,
    summary="Restart automatic promotion into an environment",
)
async def unhold(
    request: Request, caller: CallerDep, environment: AppName, body: UnholdBody
) -> Hold:
    """Lift the hold (on one app, or the one on every app); the changes it stopped go on."""
    config = config_of(request)
    _operated(config, environment, body.app, caller.user, caller.groups, "unhold")
    lift = UnholdRequest(environment=environment, app=body.app, by=caller.user)
    return await operations.unhold(client_of(request), lift)


@router.get("/holds", response_model=list[Hold], summary="The holds on every environment")
async def holds(
    request: Request,
    caller: CallerDep,
    environment: Annotated[AppName | None, Query(description="only this environment's")] = None,
) -> list[Hold]:
    names = [e.name for e in config_of(request).environments]
    return await operations.holds(client_of(request), [environment] if environment else names)


class PromoteBody(BaseModel):
    commit: str = Field(
        pattern=r"^[0-9a-f]{7,40}$", description="the app commit whose artifact CI built"
    )
    environment: AppName = Field(description="where to deploy it, through its gates")


class RetryBody(BaseModel):
    environment: AppName = Field(description="the environment whose rollout failed")


class Started(BaseModel):
    """The change an operation started: follow it with `baton changes watch`."""

    change: str
    message: str


def _plan(request: Request, app: str) -> ChangePlan:
    """The configuration a change of `app` runs under now (as the ingress plans new changes)."""
    return request.app.state.ingress.plan(app)


@router.post(
    "/apps/{app}/promote",
    response_model=Started,
    summary="Deploy an artifact CI built before into an environment, through its gates",
)
async def promote(request: Request, caller: CallerDep, app: AppName, body: PromoteBody) -> Started:
    """A deliberate rollback or a hotfix path: the artifact CI built for `commit` is rendered for
    the environment and goes through its GitOps PR, approvals, sync and verification, as a
    change of its own (holds do not stop it: it is no automatic promotion)."""
    env = body.environment
    config = config_of(request)
    target = _operated(config, env, app, caller.user, caller.groups, "promote into")
    plan = _plan(request, app)
    # As the app sees it (its own `verify`), even when `promotion` leaves it out.
    plan.environments = [e for e in plan.environments if e.name == env] or [target]
    plan.stages = [[env]]
    started = await operations.promote(client_of(request), plan, body.commit, caller.user)
    return Started(change=started, message=f"promoting {app} {body.commit} into {env}: {started}")


@router.post(
    "/changes/{app}/{pr}/retry",
    summary="Roll a change out again where its rollout failed, then on along the graph",
    response_model=Started,
)
async def retry(
    request: Request, body: RetryBody, app: AppName, pr: ChangeKey, caller: CallerDep
) -> Started:
    """Once the cause of the failure is fixed: the change (ended) runs again under the current
    configuration (the file read again: a fix made there applies) from that environment on;
    environments it deployed to stay deployed. 409 when the file is invalid now."""
    try:
        request.app.state.ingress.reload()
    except ConfigError as exc:
        raise Refused(
            f"cannot retry under an invalid configuration: {exc}: fix it, then retry"
        ) from None
    env = body.environment
    _operated(config_of(request), env, app, caller.user, caller.groups, "retry rollouts in")
    change = change_id(app, pr)
    await operations.retry(client_of(request), _plan(request, app), change, env, caller.user)
    return Started(change=change, message=f"retrying {env} for {change}")
