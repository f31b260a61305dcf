"""How Baton's processes report on themselves: logs, traces and the worker's metrics endpoint.

- Logs: `BATON_LOG_FORMAT` (`text`, the default, or `json`: one JSON object per line) and
  `BATON_LOG_LEVEL` (a `logging` level name, default `INFO`). Lines logged inside a workflow or an
  activity carry `change_id` or `rollout_id` (and `workflow_id`); an activity attempt that failed
  with one of Baton's own errors is one line (`activity render_environment attempt 2 failed,
  retrying: ClusterError: ...`), not a traceback, since it is an expected outcome.
- Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported over OTLP/HTTP (the
  exporter reads the other standard `OTEL_EXPORTER_OTLP_*` and `OTEL_SERVICE_NAME` variables), and
  every Temporal client made by `baton.temporal.connect` carries the Temporal SDK's
  `TracingInterceptor`, so a trace runs from a webhook through the workflows it starts into their
  activities.
- Worker metrics: the Temporal SDK's runtime serves Prometheus text at
  `http://$BATON_WORKER_METRICS_ADDRESS/metrics` (default `127.0.0.1:9464`; empty turns it off):
  the SDK's own series (`temporal_*`) and those workflows record through `workflow.metric_meter()`
  (`baton_*`, see `workflows/metrics.py`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from opentelemetry import trace
from temporalio import activity
from temporalio.client import Interceptor
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from baton.errors import BatonError, ConfigurationError

LOG_FORMATS = ("text", "json")
DEFAULT_WORKER_METRICS_ADDRESS = "127.0.0.1:9464"
GATE_SECONDS_BUCKETS = [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600]
"""Buckets of `baton_gate_seconds`: from a verification's seconds to an approval's days."""

LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
"""Text lines, and the first fields of JSON ones (then the record's extras)."""

log = logging.getLogger("baton.telemetry")


class TelemetryConfigError(ConfigurationError):
    """A BATON_LOG_* or BATON_WORKER_METRICS_* variable has a value Baton cannot use."""


def configure_logging(stream: TextIO | None = None) -> None:
    """Log to `stream` (stderr) as BATON_LOG_FORMAT and BATON_LOG_LEVEL say; raises
    TelemetryConfigError."""
    kind = os.environ.get("BATON_LOG_FORMAT", "text").strip().lower() or "text"
    if kind not in LOG_FORMATS:
        raise TelemetryConfigError(
            f"BATON_LOG_FORMAT={kind!r} is not a log format: set it to one of {', '.join(LOG_FORMATS)}"
        )
    level_name = os.environ.get("BATON_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    level = logging.getLevelNamesMapping().get(level_name)
    if level is None:
        raise TelemetryConfigError(
            f"BATON_LOG_LEVEL={level_name!r} is not a log level: set it to DEBUG, INFO, WARNING "
            "or ERROR"
        )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_json_formatter() if kind == "json" else logging.Formatter(LINE_FORMAT))
    handler.addFilter(WorkflowContext())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Every request of the HTTP clients at INFO would drown Baton's own lines.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


# The JSON formatter, the OpenTelemetry SDK and the tracing interceptor are imported where used:
# every `baton` command imports this module (through baton.temporal), and they would add a third
# of a second to each, for processes that neither log JSON nor trace.


def _json_formatter() -> logging.Formatter:
    from pythonjsonlogger.core import RESERVED_ATTRS
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        LINE_FORMAT,
        rename_fields={"levelname": "level", "name": "logger"},
        # uvicorn's copy of its message with terminal colours
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
    )


class WorkflowContext(logging.Filter):
    """Adds `workflow_id` and `change_id` or `rollout_id` to records logged in a workflow or an
    activity, and makes an activity attempt failed by a BatonError one line without traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in workflow_ids(_workflow_id(record)).items():
            setattr(record, key, value)
        if getattr(record, "__temporal_error_identifier", None) == "ActivityFailure":
            _expected_failure_as_one_line(record)
        return True


def _workflow_id(record: logging.LogRecord) -> str | None:
    """The workflow the record was logged for: the SDK's extras, else the running activity's."""
    for extra in ("temporal_activity", "temporal_workflow"):
        details = getattr(record, extra, None)
        if isinstance(details, dict) and details.get("workflow_id"):
            return str(details["workflow_id"])
    if activity.in_activity():
        return activity.info().workflow_id
    return None


def _expected_failure_as_one_line(record: logging.LogRecord) -> None:
    """An attempt that raised one of Baton's errors: what failed and what happens next, in one line."""
    error = record.exc_info[1] if record.exc_info else None
    if not isinstance(error, ApplicationError) or not isinstance(error.__cause__, BatonError):
        return  # anything else is a bug worth its traceback
    details = getattr(record, "temporal_activity", None) or {}
    if activity.in_activity():
        info = activity.info()
        name, attempt = info.activity_type, info.attempt
    else:
        name, attempt = details.get("activity_type", "?"), details.get("attempt", "?")
    then = "giving up" if error.non_retryable else "retrying"
    record.msg = f"activity {name} attempt {attempt} failed, {then}: {error.type}: {error.message}"
    record.args = ()
    record.exc_info = None
    record.exc_text = None


def configure_tracing(service_name: str) -> bool:
    """Export spans over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set; says whether it is."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def tracing_enabled() -> bool:
    """Whether spans go anywhere: a tracer provider (the OpenTelemetry SDK's) is installed."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def client_interceptors() -> Sequence[Interceptor]:
    """The interceptors of Baton's Temporal clients: tracing once a tracer provider is installed."""
    if not tracing_enabled():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def worker_runtime(address: str | None = None) -> Runtime | None:
    """A Temporal runtime serving Prometheus metrics at `address` (default
    $BATON_WORKER_METRICS_ADDRESS or 127.0.0.1:9464), or None when that is set empty or taken
    (logged as a warning)."""
    if address is None:
        address = os.environ.get("BATON_WORKER_METRICS_ADDRESS", DEFAULT_WORKER_METRICS_ADDRESS)
    address = address.strip()
    if not address:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise TelemetryConfigError(
            f"BATON_WORKER_METRICS_ADDRESS={address!r} is not HOST:PORT: set it like "
            f"{DEFAULT_WORKER_METRICS_ADDRESS}, or empty to serve no metrics"
        )
    prometheus = PrometheusConfig(
        bind_address=address,
        counters_total_suffix=True,
        durations_as_seconds=True,
        histogram_bucket_overrides={"baton_gate_seconds": GATE_SECONDS_BUCKETS},
    )
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=prometheus))
    except (
        ValueError
    ) as exc:  # the address is taken: the worker's job matters more than its metrics
        log.warning(
            "worker metrics not served: %s; set BATON_WORKER_METRICS_ADDRESS to a free HOST:PORT",
            exc,
        )
        return None


def workflow_ids(workflow_id: str | None) -> dict[str, str]:
    """What a log line about `workflow_id` carries (as `extra=`): it, and the change or rollout
    it belongs to (`change_id` of a change and of its pipelines, `rollout_id` of a rollout)."""
    if not workflow_id:
        return {}
    ids = {"workflow_id": workflow_id}
    parts = workflow_id.split("/")
    if parts[0] == "change":
        ids["change_id"] = "/".join(parts[:3])  # change/<app>/<pr>, also for change/<app>/<pr>/ci
    elif parts[0] == "rollout":
        ids["rollout_id"] = workflow_id
    return ids
