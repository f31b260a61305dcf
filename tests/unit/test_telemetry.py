"""Baton's own logs and metrics settings, and the API's view of deliveries it refuses.

The whole path (webhook → workflows → activities, traced, counted and logged) runs in
tests/workflows/test_observe.py; these are the parts that need no Temporal server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.app import create_app
from baton.config import AppConfig, BatonConfig, GitOpsConfig
from baton.settings import Settings
from baton.telemetry import worker_runtime, workflow_ids
from tests.fakes.forges import Served

ROOT = Path(__file__).resolve().parents[2]
SECRET = "telemetry-test-webhook-secret"


@pytest.mark.parametrize(
    ("module", "variable", "value", "expected"),
    [
        ("api", "BATON_LOG_FORMAT", "xml", "error: BATON_LOG_FORMAT='xml' is not a log format"),
        ("workers.main", "BATON_LOG_LEVEL", "loud", "error: BATON_LOG_LEVEL='LOUD' is not a log"),
        (
            "workers.main",
            "BATON_WORKER_METRICS_ADDRESS",
            "9464",
            "error: BATON_WORKER_METRICS_ADDRESS='9464' is not HOST:PORT",
        ),
    ],
)
def test_a_bad_telemetry_variable_stops_the_process_with_one_line(
    module: str, variable: str, value: str, expected: str, tmp_path: Path
) -> None:
    # A killed worker's private directory is there: a worker that stops on its settings has not
    # touched it yet (nor said anything about it).
    leftover = tmp_path / "tmp" / "baton-private-999999999-0"
    leftover.mkdir(parents=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "TMPDIR": str(leftover.parent),
        "HOME": str(tmp_path),
        "BATON_HOME": str(tmp_path / "home"),
        # Nothing listens there: the process must stop before it tries.
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        variable: value,
    }
    done = subprocess.run(
        [sys.executable, "-m", module],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(expected), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert leftover.is_dir()


def test_a_taken_worker_metrics_address_is_a_warning_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with caplog.at_level(logging.WARNING, logger="baton.telemetry"):
            assert worker_runtime(address) is None
    assert "set BATON_WORKER_METRICS_ADDRESS to a free HOST:PORT" in caplog.text


def test_log_ids_name_the_change_of_a_pipeline_and_the_rollout() -> None:
    assert workflow_ids("change/web/12/ci") == {
        "workflow_id": "change/web/12/ci",
        "change_id": "change/web/12",
    }
    rollout = "rollout/web/prod/" + "b" * 40
    assert workflow_ids(rollout) == {"workflow_id": rollout, "rollout_id": rollout}
    assert workflow_ids("lane/web/prod") == {"workflow_id": "lane/web/prod"}


async def test_refused_deliveries_are_counted_and_logged_without_the_secret_or_signature(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_WEBHOOK_SECRET", SECRET)
    config = BatonConfig(
        gitops=GitOpsConfig(repo="acme/gitops"),
        apps=[AppConfig(name="web", repo="acme/web", image="web", chart="chart")],
    )
    # Served without its lifespan: a refusal or a ping never reaches Temporal.
    app = create_app(Settings(home=tmp_path), config)
    body = json.dumps({"zen": "Keep it logically awesome."}).encode()
    forged = "sha256=" + hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
    good = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
        with caplog.at_level(logging.INFO, logger="baton.api.webhooks"):
            headers = {"x-github-event": "ping", "x-github-delivery": "d-1"}
            refused = await http.post(
                "/webhooks/github", content=body, headers={**headers, "x-hub-signature-256": forged}
            )
            pong = await http.post(
                "/webhooks/github", content=body, headers={**headers, "x-hub-signature-256": good}
            )
        metrics = await http.get("/metrics")

    assert (refused.status_code, pong.status_code) == (401, 200)
    counts = {
        (sample.labels["forge"], sample.labels["result"]): sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "baton_webhooks_total"
    }
    assert {key: n for key, n in counts.items() if n} == {
        ("github", "rejected"): 1.0,
        ("github", "accepted"): 1.0,
    }
    assert len(counts) == 4 * 5  # every forge and result, from the start
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "webhook github ping delivery d-1: 401 rejected: X-Hub-Signature-256 does not match the body",
        "webhook github ping delivery d-1: 200 accepted: pong",
    ]
    assert caplog.records[0].levelno == logging.WARNING
    for secret in (SECRET, forged, good):
        assert secret not in caplog.text


def test_spans_are_exported_over_otlp_when_the_endpoint_is_set(tmp_path: Path) -> None:
    """A process that configures tracing as the API and workers do sends its spans to an OTLP/HTTP
    collector (here one on loopback that keeps what it is sent)."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        received.append(message)
        return Response(b"", media_type="application/x-protobuf")

    collector = Served(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])).start()
    program = (
        "from opentelemetry import trace\n"
        "from baton.telemetry import configure_tracing\n"
        "assert configure_tracing('baton-test')\n"
        "with trace.get_tracer('t').start_as_current_span('webhook github'): pass\n"
        "trace.get_tracer_provider().shutdown()\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", program],
            check=False,
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        collector.stop()
    assert done.returncode == 0, done.stderr
    spans = [
        (resource.resource, span.name)
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert [name for _, name in spans] == ["webhook github"]
    attributes = {a.key: a.value.string_value for a in spans[0][0].attributes}
    assert attributes["service.name"] == "baton-test"
