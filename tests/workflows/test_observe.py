"""Baton seen from outside while a change runs: traces, metrics and logs.

A fake GitHub sends its signed webhooks to Baton's API served on a port; a worker (on a runtime
serving Prometheus metrics and with the workflow runner, as `workers.main` makes it: outside
Temporal's sandbox) runs the real ChangeWorkflow, pipelines, lane and
rollout with test_change.py's stand-in activities. The change goes from the opened PR to
deployed in dev; then the test reads what an operator would: the spans (an in-memory exporter
behind the OpenTelemetry SDK), the API's and the worker's /metrics, and the JSON log lines.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.errors import typed_errors
from activities.lane import is_running, join_lane, watch_holds
from api.app import create_app
from baton.config import (
    BatonConfig,
    Credentials,
    EnvironmentConfig,
    ForgeConfig,
    GitOpsConfig,
)
from baton.errors import ClusterError
from baton.models import ChangeStatus, Rendered, RolloutInput
from baton.settings import Settings
from baton.telemetry import configure_logging, worker_runtime
from baton.temporal import TaskQueues, change_id, connect, rollout_id
from tests.conftest import at_gate, serving
from tests.fakes.forges import FakeGitHub, Served
from tests.fakes.records import fake_rendered
from tests.workflows import test_pipelines as pipelines
from tests.workflows import test_rollout as rollout
from tests.workflows.test_pipelines import APP, Steps
from tests.workflows.test_rollout import M
from workers.main import WORKFLOW_RUNNER
from workflows import WORKFLOWS

steps, fresh_world = pipelines.steps, rollout.fresh_world

SECRET = "observe-test-webhook-secret"
TOKEN = "observe-test-forge-token"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span the process ends from now on, kept in memory.

    The OpenTelemetry SDK is installed as the global tracer provider once per process (it cannot
    be replaced), as `baton.telemetry.configure_tracing` does with an OTLP exporter instead."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What the process logs as `BATON_LOG_FORMAT=json` configures it; as before afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    monkeypatch.setenv("BATON_LOG_FORMAT", "json")
    monkeypatch.setenv("BATON_LOG_LEVEL", "info")
    logged = io.StringIO()
    configure_logging(logged)
    yield logged
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@dataclass
class Observed:
    """The change, once deployed, and where to look at it."""

    change: ChangeStatus
    change_id: str
    rollout_id: str
    api: str
    worker_metrics: str
    render_attempts: int


@pytest.fixture
async def observed(
    spans: InMemorySpanExporter,
    json_logs: io.StringIO,
    isolated_client: Client,
    temporal_env: WorkflowEnvironment,
    steps: Steps,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Observed]:
    target = temporal_env.client.service_client.config.target_host
    monkeypatch.setenv("TEMPORAL_ADDRESS", target)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", isolated_client.namespace)
    monkeypatch.setenv("BATON_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("FORGE_TOKEN", TOKEN)
    rollout.world.polled_synced = {M}
    attempts = 0

    # Rendering fails once as a cluster hiccup would: an expected, retried error.
    @activity.defn(name="render_environment")
    @typed_errors
    async def render_environment(input: RolloutInput) -> Rendered:
        nonlocal attempts
        attempts += 1
        if activity.info().attempt == 1:
            raise ClusterError("cluster API unreachable: connection refused")
        return fake_rendered(input)

    # The API runs the reconciler when it starts; what it would find is not this test's matter.
    @activity.defn(name="reconcile_forge")
    async def reconcile_forge() -> list[str]:
        return []

    activities = steps.activities()
    activities[TaskQueues.WORKFLOWS] += [join_lane, is_running, watch_holds, reconcile_forge]
    activities[TaskQueues.DEPLOY] = [
        render_environment,
        rollout.propose,
        rollout.merge,
        rollout.request_reconcile,
        rollout.check_sync,
        rollout.close,
    ]
    metrics_address = free_address()
    # As workers.main connects: the metrics runtime, and tracing since a tracer provider is set.
    worker_client = await connect(runtime=worker_runtime(metrics_address))
    fake = FakeGitHub(tmp_path / "forge", {TOKEN: "baton"}, webhook_secret=SECRET)
    config = BatonConfig(
        forge=ForgeConfig(
            kind="github", url=fake.url, credentials=Credentials(token_env="FORGE_TOKEN")
        ),
        gitops=GitOpsConfig(repo="acme/gitops"),
        apps=[APP],
        environments=[
            EnvironmentConfig(name="dev", namespace="dev")  # no approvals
        ],
    )
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "README.md").write_text("seed\n")
    async with serving(worker_client, WORKFLOWS, activities, workflow_runner=WORKFLOW_RUNNER):
        with fake:
            fake.create_repo(APP.repo, from_dir=seed)
            fake.create_repo(config.gitops.repo, from_dir=seed)
            served = await asyncio.to_thread(
                lambda: Served(create_app(Settings(home=tmp_path / "home"), config)).start()
            )
            try:
                fake.deliver_to(served.url)
                await asyncio.to_thread(fake.push, APP.repo, "feature", {"a.txt": "a"})
                pr = await asyncio.to_thread(
                    fake.open_pull_request, APP.repo, "feature", "main", "Add a", "", "alice"
                )
                handle = isolated_client.get_workflow_handle(
                    change_id(APP.name, pr.number), result_type=ChangeStatus
                )
                await at_gate(handle, "merge", ChangeStatus)
                merge_commit = await asyncio.to_thread(fake.merge, APP.repo, pr.number)
                change = await handle.result()
                await asyncio.to_thread(fake.flush)
                yield Observed(
                    change=change,
                    change_id=handle.id,
                    rollout_id=rollout_id(APP.name, "dev", merge_commit),
                    api=served.url,
                    worker_metrics=f"http://{metrics_address}/metrics",
                    render_attempts=attempts,
                )
            finally:
                served.stop()


def samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples named `name` in Prometheus text, by their labels."""
    return {
        frozenset(sample.labels.items()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def value(series: dict[frozenset[tuple[str, str]], float], **labels: str) -> float:
    """The sum of the samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for key, v in series.items() if wanted <= key)


async def metrics_text(url: str) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_one_trace_runs_from_the_webhook_to_the_rollouts_activities(
    observed: Observed, spans: InMemorySpanExporter
) -> None:
    assert observed.change.state == "completed"
    ended = spans.get_finished_spans()
    opened = [
        span
        for span in ended
        if span.name == "webhook github"
        and span.attributes
        and span.attributes.get("baton.workflow_id") == observed.change_id
        and span.attributes.get("baton.result") == "accepted"
    ]
    assert opened, [span.name for span in ended]
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in ended:
        assert span.context is not None
        by_trace.setdefault(span.context.trace_id, []).append(span)
    # The delivery that opened the change is the trace the workflows and activities run in.
    started = next(
        by_trace[span.context.trace_id]
        for span in opened
        if span.context is not None
        and any(s.name == "StartWorkflow:ChangeWorkflow" for s in by_trace[span.context.trace_id])
    )
    names = {span.name for span in started}
    assert {
        "webhook github",
        "StartWorkflow:ChangeWorkflow",
        "RunWorkflow:ChangeWorkflow",
        "RunWorkflow:EnvironmentRollout",
        "RunActivity:render_environment",
        "RunActivity:merge_gitops_pr",
    } <= names, sorted(names)
    start = next(span for span in started if span.name == "StartWorkflow:ChangeWorkflow")
    assert "webhook github" in [span.name for span in ancestors(start, started)]


def ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[ReadableSpan]:
    """The spans above `span`, its parent first."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    found = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        found.append(span)
    return found


async def test_api_and_worker_metrics_count_webhooks_changes_rollouts_and_gates(
    observed: Observed,
) -> None:
    api = await metrics_text(f"{observed.api}/metrics")
    webhooks = samples(api, "baton_webhooks_total")
    # opened, the merge, and the fake's other pull_request events the change ignores or takes
    assert value(webhooks, forge="github", result="accepted") >= 2
    assert value(webhooks, forge="github", result="rejected") == 0
    assert samples(api, "process_cpu_seconds_total")
    # The SDK's series for the API's own client: the change was started through it.
    requests = samples(api, "temporal_request_total")
    assert value(requests, operation="StartWorkflowExecution") >= 1
    # The merge: signal-with-start, which also starts a change whose "opened" was lost.
    assert value(
        samples(api, "temporal_request_latency_count"),
        operation="SignalWithStartWorkflowExecution",
    )

    worker = await metrics_text(observed.worker_metrics)
    changes = samples(worker, "baton_changes_total")
    assert value(changes, app=APP.name, state="completed") == 1
    assert value(changes, app=APP.name, state="promoting") == 1
    rollouts = samples(worker, "baton_rollouts_total")
    assert value(rollouts, app=APP.name, environment="dev", outcome="deployed") == 1
    gates = samples(worker, "baton_gate_seconds_count")
    assert value(gates, kind="merge", environment="") == 1  # the change waited for its PR's merge
    assert value(gates, kind="sync", environment="dev") == 1
    # The SDK's own series, from the same endpoint.
    assert value(samples(worker, "temporal_workflow_completed_total")) >= 1


async def test_json_logs_carry_ids_say_retries_in_one_line_and_never_the_secret(
    observed: Observed, json_logs: io.StringIO
) -> None:
    assert observed.render_attempts == 2
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    deliveries = [line for line in lines if line["logger"] == "baton.api.webhooks"]
    accepted = [line for line in deliveries if line.get("change_id") == observed.change_id]
    assert accepted and all(line["result"] == "accepted" for line in accepted)
    assert all(line["delivery"] and line["forge"] == "github" for line in deliveries)
    retried = [line for line in lines if "attempt 1 failed, retrying" in line["message"]]
    assert len(retried) == 1
    assert retried[0]["rollout_id"] == observed.rollout_id
    assert retried[0]["message"].startswith(
        "activity render_environment attempt 1 failed, retrying: ClusterError: cluster API"
    )
    assert "exc_info" not in retried[0] and "Traceback" not in json.dumps(lines)
    everything = json.dumps(lines)
    assert SECRET not in everything and TOKEN not in everything
    assert "sha256=" not in everything  # no signature header either
