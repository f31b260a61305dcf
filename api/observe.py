"""What the API tells about itself: `/metrics` in Prometheus text, and for every webhook delivery
one log line, one span and one count.

The delivery's outcome is read off Baton's own answer (status and `result`/`error` message), so
every way a delivery ends is seen the same way: acted on, ignored, a duplicate, rejected (4xx:
bad signature, bad payload) or failed (5xx: Temporal unreachable, or a bug). Nothing of the
request but the forge's event and delivery id headers is read: never its signature, credentials or
body.
"""

from __future__ import annotations

import json
import logging

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baton.telemetry import workflow_ids

FORGES = ("github", "gitea", "azure-devops", "flux")
"""The webhook routes (`/webhooks/<forge>`), and so every value of the `forge` label."""
EVENT_HEADERS = ("x-github-event", "x-gitea-event", "x-forgejo-event")
DELIVERY_HEADERS = ("x-github-delivery", "x-gitea-delivery", "x-forgejo-delivery")
REPLY_BYTES = 4096  # Baton's answers are one short line; more is not kept for the log

log = logging.getLogger("baton.api.webhooks")
tracer = trace.get_tracer("baton.api")


class ApiMetrics:
    """The API's series in a registry of its own (one per app): the process's, and
    `baton_webhooks_total{forge, result}`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.webhooks = Counter(
            "baton_webhooks",
            "Webhook deliveries by forge and result (accepted, ignored, duplicate, rejected, failed)",
            ["forge", "result"],
            registry=self.registry,
        )

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def result_of(status: int, message: str) -> str:
    """A delivery's result label, from Baton's answer."""
    if status >= 500:
        return "failed"
    if status >= 400:
        return "rejected"
    if message.startswith("ignored"):
        return "ignored"
    if message.startswith("duplicate"):
        return "duplicate"
    return "accepted"


class WebhookObserver:
    """ASGI middleware around `/webhooks/<forge>`: a span the Temporal calls the delivery makes
    are children of (so the workflows it starts carry the trace on), then the count and the
    log line of its result."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        forge = _forge(scope)
        if forge is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        event = _first(headers, EVENT_HEADERS)
        delivery = _first(headers, DELIVERY_HEADERS)
        status = 500
        reply = bytearray()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(reply) < REPLY_BYTES:
                reply.extend(message.get("body", b"")[: REPLY_BYTES - len(reply)])
            await send(message)

        attributes = {"baton.forge": forge, "baton.event": event, "baton.delivery": delivery}
        with tracer.start_as_current_span(
            f"webhook {forge}", kind=SpanKind.INTERNAL, attributes=attributes
        ) as span:
            try:
                await self.app(scope, receive, sending)
            finally:
                message, workflow_id = _answer(bytes(reply))
                result = result_of(status, message)
                span.set_attribute("http.response.status_code", status)
                span.set_attribute("baton.result", result)
                if workflow_id:
                    span.set_attribute("baton.workflow_id", workflow_id)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR, message))
                self.metrics.webhooks.labels(forge, result).inc()
                log.log(
                    logging.WARNING if status >= 400 else logging.INFO,
                    "webhook %s %s delivery %s: %s %s: %s",
                    forge,
                    event or "-",
                    delivery or "-",
                    status,
                    result,
                    message,
                    extra={
                        "forge": forge,
                        "event": event,
                        "delivery": delivery,
                        "status": status,
                        "result": result,
                        **workflow_ids(workflow_id),
                    },
                )


def _forge(scope: Scope) -> str | None:
    if scope["type"] != "http" or scope.get("method") != "POST":
        return None
    path: str = scope.get("path", "")
    prefix, _, forge = path.rpartition("/")
    return forge if prefix == "/webhooks" and forge in FORGES else None


def _first(headers: Headers, names: tuple[str, ...]) -> str:
    return next((headers[name] for name in names if name in headers), "")


def _answer(body: bytes) -> tuple[str, str | None]:
    """The `result` (or `error`) message and `workflow_id` of Baton's JSON answer."""
    try:
        answer = json.loads(body)
    except ValueError:
        return "no answer", None
    if not isinstance(answer, dict):
        return "no answer", None
    message = answer.get("result") or answer.get("error") or ""
    workflow_id = answer.get("workflow_id")
    return str(message), workflow_id if isinstance(workflow_id, str) else None
