"""Baton's HTTP API: webhook ingress and health. Every event becomes one Temporal call; the
starts of new changes are journaled in the API's home and made in the background.

Every webhook route reads the body within a size bound (413), authenticates it before parsing
(401), dedupes by the forge's delivery id, and answers 400/202 with a short reason for payloads it
cannot or need not act on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.client import Client
from temporalio.service import RPCError

from api import azure_devops, gitea, github, operations, v1
from api.auth import Authenticator, TooManyAttempts
from api.board import routes as board
from api.github import WebhookRejected
from api.observe import ApiMetrics, WebhookObserver
from baton import flux, reconcile, shared_http
from baton.changes import Refused
from baton.config import BatonConfig, load_config
from baton.errors import (
    BadRequest,
    DecisionRefused,
    InfrastructureError,
    NotAwaitingApproval,
    NotFound,
    NotFrozen,
    Unauthenticated,
)
from baton.forges import create_forge
from baton.forges.base import Forge
from baton.ingress import Deliveries, FluxEvent, Ingress, Reply
from baton.models import SyncEvent, SyncState
from baton.settings import Settings, read_secret
from baton.start_journal import StartJournal
from baton.temporal import connect
from baton.tokens import TokenFile, TokenStore

log = logging.getLogger("baton.api")

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_API_BODY_BYTES = 64 * 1024  # a decision is a few hundred bytes


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 beyond MAX_BODY_BYTES before it is all read."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise WebhookRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


async def start_reconciler(client: Client, config: BatonConfig) -> None:
    """Put the reconciler's Schedule in place and run it now; a Temporal refusing it leaves the
    webhooks working (logged, not fatal)."""
    try:
        await reconcile.schedule(client, config)
    except RPCError as exc:
        log.warning("the reconciler is not scheduled: Temporal answered %s", exc.status.name)


class BoundedApiBodies:
    """Decisions are small: a larger declared body under /api/ is refused before it is read.
    (Plain ASGI: starlette's `BaseHTTPMiddleware` costs every request, webhooks included, a task
    group and a stream.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_API_BODY_BYTES:
                refusal = JSONResponse(
                    {"error": f"body larger than {MAX_API_BODY_BYTES} bytes"}, status_code=413
                )
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    config: BatonConfig | None = None,
    client: Client | None = None,
    forge: Forge | None = None,
    *,
    journal: bool = True,
) -> FastAPI:
    """The ASGI app. Config, client and forge may be injected (tests); otherwise made at startup.

    `journal`: a delivery that starts a change is answered once its start is journaled in the
    API's home, the start made in the background (`baton.start_journal`); without, once
    Temporal started it (what `bench.ingress` compares)."""
    settings = settings or Settings()
    # Read from a file, the configuration is read again where an operator expects it (a retry).
    source = None if config else settings.config_file()
    config = config or load_config(settings.config_file())
    deliveries = Deliveries()

    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        temporal = client or await connect(runtime=metrics.sdk.runtime)
        starts = StartJournal(settings.start_journal_file) if journal else None
        app.state.ingress = Ingress(temporal, config, settings, source=source, journal=starts)
        app.state.journal = starts
        if starts is not None:  # what a previous run accepted is started first
            metrics.count_pending_starts(lambda: len(starts.pending()), starts.refused)
            await starts.open(app.state.ingress.start_journaled, app.state.ingress.read_journaled)
        if (
            client is None
        ):  # the API's own Temporal: deliveries may have been lost while it was down
            await start_reconciler(temporal, config)
        # Only Azure DevOps events are re-read through the forge's API before acting.
        app.state.forge = forge
        if forge is None and config.forge.kind == "azure-devops":
            app.state.forge = create_forge(config.forge, settings)
        # The API's own outbound calls (the board's OIDC sign-in): one client for its lifespan.
        try:
            async with shared_http.async_client() as http:
                app.state.http = http
                yield
        finally:
            if starts is not None:  # uvicorn stops accepting first: nothing is added meanwhile
                await starts.close(drain_s=settings.api_drain_s)

    app = FastAPIOffline(
        title="Baton",
        summary="Changes and the decisions people make on them (under /api/v1), and webhooks",
        version="1",
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        static_url="/api/v1/docs-assets",
    )
    app.add_middleware(WebhookObserver, metrics=metrics)
    tokens = TokenStore(settings.tokens_file)
    # Read now: a malformed token file stops the API with its file and line (TokenFileError).
    token_file = TokenFile(settings.token_file, known=tokens.ids) if settings.token_file else None
    app.state.auth = Authenticator(config.auth, tokens, token_file)
    app.include_router(v1.router)
    board.install(app)
    app.include_router(operations.router)

    app.add_middleware(BoundedApiBodies)

    @app.exception_handler(WebhookRejected)
    async def rejected(request: Request, exc: WebhookRejected) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(request: Request, exc: Unauthenticated) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(TooManyAttempts)
    async def too_many(request: Request, exc: TooManyAttempts) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=429)

    @app.exception_handler(DecisionRefused)
    async def refused(request: Request, exc: DecisionRefused) -> JSONResponse:
        """403 when the policy refuses the caller; 409 when the change's state does."""
        state = isinstance(exc, Refused | NotAwaitingApproval | NotFrozen)
        return JSONResponse({"error": str(exc)}, status_code=409 if state else 403)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own refusals (unknown route, method, unparsable body) in our shape."""
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(InfrastructureError)
    async def unavailable(request: Request, exc: InfrastructureError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)

    @app.exception_handler(RPCError)
    async def temporal_unavailable(request: Request, exc: RPCError) -> JSONResponse:
        if request.url.path.startswith("/api/"):
            message = f"Temporal is not answering ({exc.status.name}): try again later"
        else:
            message = f"Temporal did not take the event ({exc.status.name}): redeliver it later"
        return JSONResponse({"error": message}, status_code=503)

    def webhook_secret() -> str | None:
        return config.forge.webhook_secret() or settings.webhook_secret

    async def act(
        request: Request,
        source: str,
        delivery: str,
        dispatch: Callable[[Ingress], Awaitable[Reply]],
    ) -> JSONResponse:
        """Act once per delivery id; a failure forgets the id so the forge's retry is not a duplicate."""
        key = f"{source}:{delivery}"
        if deliveries.seen(key):
            return JSONResponse({"result": f"duplicate delivery {delivery}"}, status_code=200)
        try:
            outcome = await dispatch(request.app.state.ingress)
        except BaseException:
            deliveries.forget(key)
            raise
        return JSONResponse(
            {"result": outcome.message, "workflow_id": outcome.workflow_id},
            status_code=outcome.status,
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """Prometheus text: webhook deliveries by forge and result, the Temporal SDK's series
        for the API's client, and the process's."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.post("/webhooks/github", status_code=202, include_in_schema=False)
    async def github_webhook(request: Request) -> JSONResponse:
        """GitHub (and local forge) deliveries, authenticated by X-Hub-Signature-256 over the raw
        body, in either content type (JSON, or form-encoded with the JSON in `payload`)."""
        body = await read_body(request)
        github.verify_signature(webhook_secret(), body, request.headers.get("x-hub-signature-256"))
        event = request.headers.get("x-github-event")
        delivery = request.headers.get("x-github-delivery")
        if not event or not delivery:
            raise WebhookRejected(400, "missing X-GitHub-Event or X-GitHub-Delivery header")
        payload = github.parse_body(body, request.headers.get("content-type"))
        if event == "ping":  # sent when the webhook is created, and by its "Test" (redeliver)
            return JSONResponse({"result": "pong"}, status_code=200)
        return await act(
            request,
            "github",
            delivery,
            lambda ingress: github_event(ingress, event, delivery, payload),
        )

    @app.post("/webhooks/gitea", status_code=202, include_in_schema=False)
    async def gitea_webhook(request: Request) -> JSONResponse:
        """Gitea and Forgejo deliveries, authenticated by X-Gitea-Signature / X-Forgejo-Signature
        (bare hex HMAC-SHA256 keyed with the same secret as GitHub's). Gitea signs the JSON
        payload itself, which a form-encoded delivery carries in its `payload` field."""
        body = await read_body(request)
        try:
            document = github.payload_bytes(body, request.headers.get("content-type"))
        except WebhookRejected:
            # Authenticate before saying what is wrong with the body.
            gitea.verify_signature(webhook_secret(), body, request.headers)
            raise
        gitea.verify_signature(webhook_secret(), document, request.headers)
        event, delivery = gitea.event_and_delivery(request.headers)
        payload = github.parse_json(document)
        return await act(
            request,
            "gitea",
            delivery,
            lambda ingress: gitea_event(ingress, event, delivery, payload),
        )

    @app.post("/webhooks/azure-devops", status_code=202, include_in_schema=False)
    async def azure_devops_webhook(request: Request) -> JSONResponse:
        """Azure DevOps service hooks (Web Hooks consumer), which are not signed.

        Authentication is HTTP Basic, set on the subscription ("Basic authentication username /
        password"; HTTPS only): the user name is $BATON_AZURE_WEBHOOK_USER (default `baton`) and the
        password is the webhook secret (forge.webhook_secret_env, default BATON_WEBHOOK_SECRET), so
        one secret serves every forge. The pull request is then re-read through the REST API, so
        pull-request events may be sent with "Resource details to send: Minimal"; `git.push` needs
        "All": the refs it moved are in its resource (`refUpdates`)."""
        body = await read_body(request)
        user = os.environ.get("BATON_AZURE_WEBHOOK_USER") or "baton"
        azure_devops.verify_basic_auth(user, webhook_secret(), request.headers.get("authorization"))
        payload = github.parse_json(body)
        event, delivery = azure_devops.event_and_delivery(payload)
        forge: Forge | None = request.app.state.forge
        if forge is None:
            return JSONResponse(
                {"result": f"ignored: forge.kind is {config.forge.kind}, not azure-devops"},
                status_code=202,
            )
        return await act(
            request,
            "azure-devops",
            delivery,
            lambda ingress: azure_devops.handle(ingress, forge, event, delivery, payload),
        )

    @app.post("/webhooks/flux", status_code=202, include_in_schema=False)
    async def flux_webhook(request: Request) -> JSONResponse:
        """Flux notification-controller events (generic-hmac provider), also sent by the local cluster."""
        body = await read_body(request)
        secret = read_secret("BATON_FLUX_WEBHOOK_SECRET") or settings.webhook_secret
        if not flux.verify_generic_hmac(secret, body, request.headers.get("x-signature")):
            raise WebhookRejected(401, "X-Signature is missing or does not match the body")
        event = flux_event(github.parse_json(body))
        if event is None:
            return JSONResponse({"result": "ignored: not a Kustomization event with a revision"})
        outcome = await request.app.state.ingress.sync(event)
        return JSONResponse({"result": outcome.message}, status_code=outcome.status)

    return app


async def github_event(ingress: Ingress, event: str, delivery: str, payload: dict) -> Reply:
    """A GitHub-format event as an Ingress call."""
    if event == "pull_request":
        return await ingress.pull_request(github.pull_request(payload), delivery)
    if event == "pull_request_review" and payload.get("action") in ("submitted", "dismissed"):
        return await ingress.review(github.review(payload))
    if event == "push":
        return await ingress.push(github.push(payload))
    if event == "repository" and payload.get("action") in ("renamed", "transferred"):
        old, new, repo_id = github.renamed(payload)
        return await ingress.renamed(old, new, repo_id)
    return Reply(202, f"ignored: event {event!r}")


async def gitea_event(ingress: Ingress, event: str, delivery: str, payload: dict) -> Reply:
    """A Gitea/Forgejo event as an Ingress call."""
    if event == "pull_request":
        return await ingress.pull_request(gitea.pull_request(payload), delivery)
    if event in gitea.REVIEW_EVENTS:
        return await ingress.review(gitea.review(event, payload))
    if event == "push":
        return await ingress.push(github.push(payload))
    return Reply(202, f"ignored: event {event!r}")


def flux_event(payload: dict) -> FluxEvent | None:
    """The routing facts of a Flux event, or None when it is not about a Kustomization revision."""
    involved = payload.get("involvedObject")
    if not isinstance(involved, dict) or involved.get("kind") != "Kustomization":
        return None
    name, namespace = involved.get("name"), involved.get("namespace")
    revision = flux.event_revision(payload)
    if not isinstance(name, str) or not isinstance(namespace, str) or revision is None:
        return None
    reason, message = payload.get("reason"), payload.get("message")
    reason = reason if isinstance(reason, str) else ""
    message = message if isinstance(message, str) else ""
    state: SyncState
    if reason == "ReconciliationSucceeded":
        state = "ready"
    elif payload.get("severity") == "error":
        state = "failed"
    else:
        state = "progressing"
    sync = SyncEvent(
        revision=revision,
        state=state,
        reason=reason,
        message=message[:500],
        cluster=flux.event_cluster(payload),
    )
    return FluxEvent(name=name, namespace=namespace, sync=sync)
