"""The board's pages, under /board, served by the API process.

Pages are rendered on the server (Jinja2) from what workflows publish, the same reads the REST API
makes; a little JavaScript (static/board.js) refreshes the parts marked `data-live` every 2 s and
sends decisions without leaving the page. Signing in stores the caller's credential (a Baton API
token, or an OIDC token) in an HttpOnly, SameSite=Strict cookie scoped to /board; every page
authenticates it exactly as `Authorization: Bearer` is authenticated, and decisions go through the
decision API's own handler (`api.v1.decide`), so the policy, its refusals and their reasons are the
API's. Posts are also refused unless they come from the board's own origin.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api import v1
from api.auth import Caller
from api.board import data, oidc, present
from baton import changes
from baton.config import BatonConfig
from baton.errors import BadRequest, DecisionRefused, NotFound, Unauthenticated
from baton.forges import pull_request_page
from baton.logs import LogNotFound
from baton.models import ChangeStatus, Rendered
from baton.settings import Settings
from baton.store import StoreReaders
from baton.temporal import change_id, rollout_id

HERE = Path(__file__).parent
COOKIE = "baton_board"
MAX_FORM_BYTES = 8 * 1024
LOG_REF = re.compile(r"^sha256:[0-9a-f]{64}$")
RENDERED_CACHE = 256  # rollouts whose render result is kept (it never changes once rendered)
METRICS_FRESH_S = 15  # the DORA figures read every change's result: not at every page refresh

router = APIRouter(prefix="/board", include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(line_kind=present.line_kind, words=present.words)


class SignInRequired(Exception):
    """A page asked for without a valid credential: redirect to the sign-in form."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _client(request: Request) -> Client:
    return request.app.state.ingress.client


def _config(request: Request) -> BatonConfig:
    return request.app.state.ingress.config


def _settings(request: Request) -> Settings:
    return request.app.state.ingress.settings


def _caller(request: Request) -> Caller:
    """The signed-in caller, authenticated as the API authenticates a bearer credential."""
    credential = request.cookies.get(COOKIE)
    if not credential:
        raise SignInRequired("sign in to see the board")
    client = request.client.host if request.client else "unknown"
    try:
        return request.app.state.auth.authenticate(f"Bearer {credential}", client)
    except Unauthenticated as exc:
        raise SignInRequired(str(exc)) from None


def _same_origin(request: Request) -> None:
    """Refuse a post a page of another origin sent (the cookie is SameSite=Strict too)."""
    origin = request.headers.get("origin") or request.headers.get("referer") or ""
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin != own and not origin.startswith(f"{own}/"):
        raise DecisionRefused(f"refused: the request did not come from the board at {own}")


async def _form(request: Request) -> dict[str, str]:
    """The posted urlencoded form (the board's forms are small: larger bodies are refused)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest(f"form larger than {MAX_FORM_BYTES} bytes")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _page(request: Request, template: str, caller: Caller | None, **context: Any) -> HTMLResponse:
    now = datetime.now(UTC)
    return templates.TemplateResponse(
        request,
        template,
        {"caller": caller, "now": now, "ui": _ui_link(request), **context},
        headers={"Cache-Control": "no-store"},
    )


def _ui_link(request: Request) -> Callable[[str], str]:
    """The Temporal UI page of a workflow, as the workflows' own links name it."""
    base = f"{_settings(request).temporal_ui_url}/namespaces/{_client(request).namespace}"

    def link(workflow_id: str) -> str:
        return f"{base}/workflows/{quote(workflow_id, safe='')}"

    return link


async def _rendered(request: Request, rollout: str) -> Rendered | None:
    """The rollout's render result, from its history (kept once found: it never changes)."""
    cache: OrderedDict[str, Rendered] = request.app.state.board_rendered
    if rollout in cache:
        cache.move_to_end(rollout)
        return cache[rollout]
    try:
        found = await data.rendered(_client(request), rollout)
    except RPCError as exc:  # a rollout not started yet, or gone: nothing to show
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if found is not None:
        cache[rollout] = found
        while len(cache) > RENDERED_CACHE:
            cache.popitem(last=False)
    return found


def _diff(rendered: Rendered | None) -> dict[str, Any] | None:
    if rendered is None:
        return None
    return {
        "rendered": rendered,
        "sections": present.diff_sections(rendered.diff_markdown, rendered.sensitive),
        "template": present.diff_sections(rendered.template_diff_markdown),
    }


@router.get("", response_class=HTMLResponse)
async def board(request: Request) -> HTMLResponse:
    """Apps × environments: what each serves, what is on its way and what it waits for."""
    caller = _caller(request)
    grid = await data.grid(_client(request), _config(request), datetime.now(UTC))
    return _page(request, "grid.html", caller, grid=grid)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request, next: str = "/board", reason: str = "") -> HTMLResponse:
    return _page(
        request, "sign_in.html", None, next=_local(next), reason=reason, oidc=_oidc(request)
    )


def _oidc(request: Request) -> str | None:
    """The OIDC issuer people may sign in at, if one is configured."""
    config = _config(request).auth.oidc
    return config.issuer if config else None


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Any:
    """Check the token as the API would, then keep it in the board's cookie."""
    _same_origin(request)
    form = await _form(request)
    token, target = form.get("token", "").strip(), _local(form.get("next", "/board"))
    client = request.client.host if request.client else "unknown"
    try:
        request.app.state.auth.authenticate(f"Bearer {token}", client)
    except Unauthenticated as exc:
        page = _page(
            request, "sign_in.html", None, next=target, reason=str(exc), oidc=_oidc(request)
        )
        page.status_code = 401
        return page
    answer = RedirectResponse(target, status_code=303)
    _keep(request, answer, token)
    return answer


@router.get("/sign-in/oidc")
async def sign_in_oidc(request: Request, next: str = "/board") -> RedirectResponse:
    """Off to the OIDC issuer to sign in (authorization code with PKCE)."""
    config = _config(request).auth.oidc
    if config is None:
        raise SignInRequired("no OIDC issuer is configured (auth.oidc): sign in with an API token")
    url, pending = await oidc.start(
        request.app.state.http, config, _callback(request), _local(next)
    )
    answer = RedirectResponse(url, status_code=303)
    # Lax, not Strict: the issuer's redirect back is a navigation from its site.
    answer.set_cookie(
        oidc.PENDING_COOKIE,
        pending.cookie(),
        max_age=oidc.PENDING_S,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/board/sign-in",
    )
    return answer


@router.get("/sign-in/callback", response_class=HTMLResponse)
async def sign_in_callback(
    request: Request, code: str = "", state: str = "", error: str = ""
) -> HTMLResponse:
    """The issuer's redirect back: redeem the code, keep the token the API accepts."""
    config = _config(request).auth.oidc
    pending = None
    try:
        pending = oidc.Pending.from_cookie(request.cookies.get(oidc.PENDING_COOKIE))
        if config is None:
            raise Unauthenticated("no OIDC issuer is configured (auth.oidc)")
        if error or not code:
            raise Unauthenticated(f"the issuer did not sign you in: {error or 'no code'}")
        tokens = await oidc.finish(
            request.app.state.http, config, _callback(request), pending, code, state
        )
        token = _accepted(request, tokens)
    except Unauthenticated as exc:
        target = pending.next if pending else "/board"
        page = _page(
            request, "sign_in.html", None, next=target, reason=str(exc), oidc=_oidc(request)
        )
        page.status_code = 401
        return page
    # A page, not a redirect: the board's SameSite=Strict cookie is sent on a navigation that
    # starts here, not on the end of a redirect chain that started at the issuer.
    answer = _page(request, "signed_in.html", None, next=pending.next)
    _keep(request, answer, token)
    answer.delete_cookie(oidc.PENDING_COOKIE, path="/board/sign-in")
    return answer


def _callback(request: Request) -> str:
    return str(request.url_for("sign_in_callback"))


def _accepted(request: Request, tokens: list[str]) -> str:
    """The first of the issuer's tokens that the API accepts as a bearer credential."""
    client = request.client.host if request.client else "unknown"
    refusals = []
    for token in tokens:
        try:
            request.app.state.auth.authenticate(f"Bearer {token}", client)
            return token
        except Unauthenticated as exc:
            refusals.append(str(exc))
    raise Unauthenticated(f"the issuer's tokens are not accepted: {'; '.join(refusals)}")


def _keep(request: Request, answer: Response, token: str) -> None:
    """The board's credential cookie: only for /board, never readable by scripts."""
    answer.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/board",
    )


@router.post("/sign-out")
async def sign_out(request: Request) -> RedirectResponse:
    _same_origin(request)
    answer = RedirectResponse("/board/sign-in", status_code=303)
    answer.delete_cookie(COOKIE, path="/board")
    return answer


def _local(target: str) -> str:
    """Only the board's own pages are places to go after signing in."""
    return target if target.startswith("/board") and "//" not in target else "/board"


@router.get("/decisions", response_class=HTMLResponse)
async def decisions(request: Request) -> HTMLResponse:
    """The rollouts waiting on the signed-in caller, each with its diff and the decision forms."""
    caller = _caller(request)
    client = _client(request)
    waiting = []
    for published in await v1.waiting(request, caller):
        waiting.append(
            {
                "published": published,
                "change": await data.change_of(client, published.workflow_id),
                "diff": _diff(await _rendered(request, published.workflow_id)),
            }
        )
    return _page(request, "decisions.html", caller, waiting=waiting)


@router.get("/changes/{app}/{pr}", response_class=HTMLResponse)
async def change(request: Request, app: v1.AppName, pr: v1.ChangeKey) -> HTMLResponse:
    """A change: its timeline with durations, failed steps' logs, links, and each environment's
    rendered diff with its security-sensitive objects marked."""
    caller = _caller(request)
    view = await v1.show_change(request, caller, app, pr)
    environments = []
    status = view.detail.change if view.detail else None
    if status is not None and status.artifact is not None:
        results = {r.environment: r for r in status.rollouts}
        # Every rollout under way is live: a parallel stage runs several, each at its own gate.
        running = {r.environment: r for r in view.detail.running_rollouts} if view.detail else {}
        for env in status.environments:
            rollout = rollout_id(status.app, env, status.artifact.commit)
            environments.append(
                {
                    "name": env,
                    "rollout": rollout,
                    "result": results.get(env),
                    "live": running.get(env),
                    "diff": _diff(await _rendered(request, rollout)),
                }
            )
    return _page(
        request,
        "change.html",
        caller,
        view=view,
        change_id=change_id(app, pr),
        environments=environments,
        pr_page=_pull_request_page(request, status),
    )


def _pull_request_page(request: Request, status: ChangeStatus | None) -> str | None:
    """The change's own pull request on the forge's web, when it has one there."""
    if status is None or status.pr_number is None:
        return None
    return pull_request_page(v1.config_of(request).forge, status.repo, status.pr_number)


@router.post("/changes/{app}/{pr}/rollouts/{environment}/{action}")
async def decide(
    request: Request, app: v1.AppName, pr: v1.ChangeKey, environment: v1.AppName, action: v1.Action
) -> Any:
    """A decision from the board's form, through the decision API's handler. Answers JSON to the
    board's script (`{message}` or `{error, review_again}`), else redirects back with the outcome."""
    caller = _caller(request)
    _same_origin(request)
    form = await _form(request)
    body = v1.DecisionRequest(
        comment=form.get("comment", ""),
        content_hash=form.get("content_hash") or None,
        head=form.get("head") or None,
    )
    target = v1.RolloutTarget(app, pr, environment)
    try:
        result = await v1.decide(request, caller, target, action, body)
        answer: dict[str, Any] = {"message": result.message}
        status = 200
    except (DecisionRefused, NotFound) as refused:
        stale = await _stale(request, target, body)
        answer = {"error": str(refused), "review_again": stale}
        status = 404 if isinstance(refused, NotFound) else 403
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(answer, status_code=status)
    back = _local(form.get("back", "/board/decisions"))
    return RedirectResponse(f"{back}?{urlencode(answer)}", status_code=303)


async def _stale(request: Request, target: v1.RolloutTarget, body: v1.DecisionRequest) -> bool:
    """Whether the rollout now proposes other content than the decision was made on."""
    if body.content_hash is None and body.head is None:
        return False
    client = _client(request)
    published = await changes.change_gates(client, await changes.summary(client, target.change))
    return any(
        bool(body.content_hash and g.content_hash and g.content_hash != body.content_hash)
        or bool(body.head and g.head and g.head != body.head)
        for g in (p.gate for p in published)
        if g.environment == target.environment and g.kind == "approval"
    )


@router.get("/metrics", response_class=HTMLResponse)
async def metrics(request: Request, days: Annotated[int, Query(ge=1, le=90)] = 14) -> HTMLResponse:
    """DORA figures per app and environment, with a bar per day."""
    caller = _caller(request)
    config = _config(request)
    apps: list[str | None] = [None, *[a.name for a in config.apps]]
    cache: dict[int, tuple[float, list[data.Series]]] = request.app.state.board_metrics
    kept = cache.get(days)
    if kept is None or time.monotonic() - kept[0] > METRICS_FRESH_S:
        now = datetime.now(UTC)
        kept = cache[days] = (
            time.monotonic(),
            await data.delivery(_client(request), config, now, days, apps),
        )
    series = kept[1]
    return _page(request, "metrics.html", caller, series=series, days=days, bars=present.bars)


@router.get("/logs/{ref}", response_class=PlainTextResponse)
async def log(request: Request, ref: str) -> PlainTextResponse:
    """A step's full log from the store the workers write it to (`baton.store.Stores.logs`),
    read with the registry's pull credentials (`baton.store.StoreReaders`)."""
    _caller(request)
    if not LOG_REF.match(ref):
        raise BadRequest(f"{ref!r} is not a log reference (sha256:<64 hex>)")
    state = request.app.state
    if getattr(state, "store_readers", None) is None:
        config = _config(request)
        state.store_readers = StoreReaders.configured(
            _settings(request), config.registry, config.store
        )
    try:
        text = await asyncio.to_thread(state.store_readers.logs.get, ref)
    except LogNotFound as exc:
        raise NotFound(str(exc)) from None
    return PlainTextResponse(text)


def install(app: FastAPI) -> None:
    """Serve the board from `app`: its pages, its assets (local files: no CDN), and the redirect
    of a page asked for without a valid sign-in to the sign-in form."""
    app.state.board_rendered = OrderedDict()
    app.state.board_metrics = {}
    app.include_router(router)
    app.mount("/board/static", StaticFiles(directory=HERE / "static"), name="board-static")

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/board", status_code=307)

    @app.exception_handler(SignInRequired)
    async def sign_in_redirect(request: Request, exc: SignInRequired) -> Response:
        if request.method != "GET":
            return JSONResponse({"error": exc.reason}, status_code=401)
        query = urlencode({"next": request.url.path, "reason": exc.reason})
        return RedirectResponse(f"/board/sign-in?{query}", status_code=303)
