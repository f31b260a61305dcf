"""Baton's HTTP API: webhook ingress and health. Stateless; every event becomes one Temporal call."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from temporalio.client import Client

from baton import flux
from baton.api import github
from baton.api.github import WebhookRejected
from baton.api.ingress import Deliveries, FluxEvent, Ingress
from baton.config import BatonConfig, load_config
from baton.models import SyncEvent
from baton.settings import Settings, read_secret
from baton.temporal import connect

MAX_BODY_BYTES = 5 * 1024 * 1024


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


def create_app(
    settings: Settings | None = None,
    config: BatonConfig | None = None,
    client: Client | None = None,
) -> FastAPI:
    """The ASGI app. Config and client may be injected (tests); otherwise loaded at startup."""
    settings = settings or Settings()
    config = config or load_config(settings.config_file())
    deliveries = Deliveries()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.ingress = Ingress(client or await connect(), config, settings)
        yield

    app = FastAPI(title="Baton", lifespan=lifespan)

    @app.exception_handler(WebhookRejected)
    async def rejected(request: Request, exc: WebhookRejected) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhooks/github", status_code=202)
    async def github_webhook(request: Request) -> JSONResponse:
        """GitHub (and local forge) deliveries, authenticated by X-Hub-Signature-256."""
        body = await read_body(request)
        secret = config.forge.webhook_secret() or settings.webhook_secret
        github.verify_signature(secret, body, request.headers.get("x-hub-signature-256"))
        event = request.headers.get("x-github-event")
        delivery = request.headers.get("x-github-delivery")
        if not event or not delivery:
            raise WebhookRejected(400, "missing X-GitHub-Event or X-GitHub-Delivery header")
        payload = github.parse_json(body)
        if event == "ping":
            return JSONResponse({"result": "pong"}, status_code=200)
        if deliveries.seen(delivery):
            return JSONResponse({"result": f"duplicate delivery {delivery}"}, status_code=200)
        ingress: Ingress = request.app.state.ingress
        try:
            if event == "pull_request":
                outcome = await ingress.pull_request(github.pull_request(payload), delivery)
            elif event == "pull_request_review" and payload.get("action") == "submitted":
                outcome = await ingress.review(github.review(payload))
            else:
                return JSONResponse({"result": f"ignored: event {event!r}"}, status_code=202)
        except BaseException:
            deliveries.forget(delivery)
            raise
        return JSONResponse(
            {"result": outcome.message, "workflow_id": outcome.workflow_id},
            status_code=outcome.status,
        )

    @app.post("/webhooks/flux", status_code=202)
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


def flux_event(payload: dict) -> FluxEvent | None:
    """The routing facts of a Flux event, or None when it is not about a Kustomization revision."""
    involved = payload.get("involvedObject")
    if not isinstance(involved, dict) or involved.get("kind") != "Kustomization":
        return None
    name, namespace = involved.get("name"), involved.get("namespace")
    revision = flux.event_revision(payload)
    if not isinstance(name, str) or not isinstance(namespace, str) or revision is None:
        return None
    reason = payload.get("reason") if isinstance(payload.get("reason"), str) else ""
    message = payload.get("message") if isinstance(payload.get("message"), str) else ""
    if reason == "ReconciliationSucceeded":
        state = "ready"
    elif payload.get("severity") == "error":
        state = "failed"
    else:
        state = "progressing"
    sync = SyncEvent(revision=revision, state=state, reason=reason, message=message[:500])
    return FluxEvent(name=name, namespace=namespace, sync=sync)
