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
import threading
from collections.abc import Callable, Iterator

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    BufferedMetricKind,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

from baton.telemetry import workflow_ids

FORGES = ("github", "gitea", "azure-devops", "flux")
"""The webhook routes (`/webhooks/<forge>`), and so every value of the `forge` label."""
RESULTS = ("accepted", "ignored", "duplicate", "rejected", "failed")
"""Every value of the `result` label (`result_of`)."""
EVENT_HEADERS = ("x-github-event", "x-gitea-event", "x-forgejo-event")
DELIVERY_HEADERS = ("x-github-delivery", "x-gitea-delivery", "x-forgejo-delivery")
REPLY_BYTES = 4096  # Baton's answers are one short line; more is not kept for the log

log = logging.getLogger("baton.api.webhooks")
tracer = trace.get_tracer("baton.api")


class ApiMetrics:
    """The API's series in a registry of its own (one per app): the process's, the Temporal
    SDK's for its client (`sdk`), and `baton_webhooks_total{forge, result}`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.sdk = SdkMetrics()
        self.registry.register(self.sdk)
        self.webhooks = Counter(
            "baton_webhooks",
            "Webhook deliveries by forge and result (accepted, ignored, duplicate, rejected, failed)",
            ["forge", "result"],
            registry=self.registry,
        )
        for forge in FORGES:  # every series from the start, at 0, so rates and alerts see them
            for result in RESULTS:
                self.webhooks.labels(forge, result)
        self.pending_starts = Gauge(
            "baton_pending_starts",
            "Accepted deliveries whose change is journaled and not started yet (Temporal down or "
            "refusing the start: the API's log says why)",
            registry=self.registry,
        )
        self.refused_starts = Gauge(
            "baton_refused_starts",
            "Accepted deliveries whose journaled start no retry can make, put aside in the start "
            "journal's refused_starts table (the API's log says why)",
            registry=self.registry,
        )

    def count_pending_starts(self, count: Callable[[], int], refused: Callable[[], int]) -> None:
        """`baton_pending_starts` and `baton_refused_starts` read `count()` and `refused()` at
        each scrape (0 without a journal)."""
        self.pending_starts.set_function(count)
        self.refused_starts.set_function(refused)

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class SdkMetrics(Collector):
    """The Temporal SDK's metrics of the API's client (`temporal_request_total`,
    `temporal_request_failure_total`, `temporal_request_latency` ...), in Prometheus form.

    The SDK's runtime records them into a buffer (a MetricBuffer: counters as deltas, gauges as
    values, histograms as observations in seconds); they are added up here on every scrape and
    after every webhook delivery, so the buffer never fills while nobody scrapes.
    """

    BUFFER_SIZE = 100_000

    def __init__(self) -> None:
        self._buffer: MetricBuffer | None = None
        self._runtime: Runtime | None = None
        self._help: dict[str, tuple[str, BufferedMetricKind]] = {}  # name -> (description, kind)
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._histograms: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
        self._lock = threading.Lock()

    @property
    def runtime(self) -> Runtime:
        """The runtime to connect the API's client on (made at first use: it starts threads)."""
        if self._runtime is None:
            self._buffer = MetricBuffer(self.BUFFER_SIZE, MetricBufferDurationFormat.SECONDS)
            self._runtime = Runtime(telemetry=TelemetryConfig(metrics=self._buffer))
        return self._runtime

    def drain(self) -> None:
        """Add up what the runtime recorded since the last call."""
        if self._buffer is None:
            return
        with self._lock:
            for update in self._buffer.retrieve_updates():
                metric = update.metric
                self._help[metric.name] = (metric.description or metric.name, metric.kind)
                labels = tuple(sorted((k, str(v)) for k, v in update.attributes.items()))
                key = (metric.name, labels)
                if metric.kind == BUFFERED_METRIC_KIND_COUNTER:
                    self._values[key] = self._values.get(key, 0) + update.value
                elif metric.kind == BUFFERED_METRIC_KIND_GAUGE:
                    self._values[key] = update.value
                else:
                    counts = self._histograms.setdefault(key, [0.0] * (len(BUCKETS) + 2))
                    for i, bound in enumerate(BUCKETS):
                        if update.value <= bound:
                            counts[i] += 1
                    counts[-2] += update.value  # sum
                    counts[-1] += 1  # count

    def collect(self) -> Iterator[Metric]:
        self.drain()
        with self._lock:
            series = [*self._values.items(), *self._histograms.items()]
            # A metric's updates may carry different attributes (namespace only on some calls):
            # its labels are all of them, empty where an update had none.
            label_sets: dict[str, set[str]] = {}
            for (name, labels), _ in series:
                label_sets.setdefault(name, set()).update(k for k, _ in labels)
            names = {name: sorted(label_set) for name, label_set in label_sets.items()}
            families: dict[str, Metric] = {}
            for name, label_names in names.items():
                description, kind = self._help[name]
                if kind == BUFFERED_METRIC_KIND_COUNTER:
                    families[name] = CounterMetricFamily(name, description, labels=label_names)
                elif kind == BUFFERED_METRIC_KIND_GAUGE:
                    families[name] = GaugeMetricFamily(name, description, labels=label_names)
                else:
                    families[name] = HistogramMetricFamily(name, description, labels=label_names)

            def values(name: str, labels: tuple[tuple[str, str], ...]) -> list[str]:
                given = dict(labels)
                return [given.get(label, "") for label in names[name]]

            for (name, labels), value in self._values.items():
                families[name].add_metric(values(name, labels), value)  # type: ignore[attr-defined]
            for (name, labels), counts in self._histograms.items():
                cumulative = [(str(bound), counts[i]) for i, bound in enumerate(BUCKETS)]
                cumulative.append(("+Inf", counts[-1]))
                families[name].add_metric(  # type: ignore[attr-defined]
                    values(name, labels), cumulative, sum_value=counts[-2]
                )
        yield from families.values()


BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""Histogram buckets (seconds) of the SDK's latencies."""


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
                self.metrics.sdk.drain()
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
