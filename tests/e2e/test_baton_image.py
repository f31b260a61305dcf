"""Baton's own image builds here and runs: the Dockerfile at the project root, built FROM the local
base image through Baton's own builder (BuildKit), runs the API and a worker against the embedded
Temporal (host networking, 127.0.0.1): the API answers its health check and the worker polls every
task queue of Baton's in the namespace it was given."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from baton.images import build_image
from baton.temporal import TaskQueues
from baton.tools import PROJECT_ROOT
from tests.conftest import eventually_async
from tests.fixtures.ports import free_port

pytestmark = pytest.mark.docker

IMAGE = "localhost/baton:e2e"
# Builds behind a TLS-intercepting proxy need its CA bundle (the Dockerfile's build secret).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TOOLS_SCRIPT = (
    "id -u; helm version --short; kubectl version --client; hadolint --version; git --version;"
    " baton config check"
)


@pytest.fixture(scope="module")
def baton_image(base_image: str, docker_client: docker.DockerClient) -> str:
    secrets = {"ca-certificates": HOST_CA_BUNDLE.read_text()} if HOST_CA_BUNDLE.is_file() else {}
    built = build_image(
        PROJECT_ROOT, [IMAGE], buildargs={"BASE_IMAGE": base_image}, secrets=secrets
    )
    assert built.image_id.startswith("sha256:")
    return IMAGE


@pytest.fixture
def containers(docker_client: docker.DockerClient) -> Iterator[list]:
    """Containers a test starts, removed afterwards (their logs shown when the test failed)."""
    started: list = []
    yield started
    for container in started:
        container.remove(force=True)


def _run(docker_client, containers: list, command: list[str], env: dict[str, str]):
    container = docker_client.containers.run(
        IMAGE,
        command,
        detach=True,
        network_mode="host",
        environment=env,
        name=f"baton-image-test-{uuid.uuid4().hex[:8]}",
    )
    containers.append(container)
    return container


def _logs(container) -> str:
    container.reload()
    return f"{container.status}: {container.logs(tail=20).decode(errors='replace')}"


async def _until(container, probe, done, what: str):
    """`eventually_async` for a container's work; its last log lines in the failure's message."""
    try:
        return await eventually_async(probe, done, timeout=120, every=0.5, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{container.name} {_logs(container)}") from None


def test_image_has_its_tools_and_runs_as_non_root(baton_image: str, docker_client) -> None:
    output = docker_client.containers.run(
        baton_image,
        ["sh", "-c", TOOLS_SCRIPT],
        network_mode="host",
        remove=True,
    ).decode()
    lines = output.splitlines()
    assert lines[0] == "10001"
    assert lines[1].startswith("v4.")
    assert "Client Version: v1.34" in output
    assert "Haskell Dockerfile Linter" in output
    assert "git version 2." in output
    assert "/app/examples/baton.yaml: ok (2 app(s), 3 environment(s))" in output


async def test_api_and_worker_from_the_image_serve_the_embedded_temporal(
    baton_image: str, docker_client, containers: list, isolated_client: Client
) -> None:
    target = isolated_client.service_client.config.target_host
    api_port, metrics_port = free_port(), free_port()
    env = {
        "TEMPORAL_ADDRESS": target,
        "TEMPORAL_NAMESPACE": isolated_client.namespace,
        "BATON_API_PORT": str(api_port),
        "BATON_WORKER_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        "BATON_WEBHOOK_SECRET": "image-test-webhook-secret",
        "BATON_REGISTRY_PASSWORD": "image-test-registry-password",
    }
    api = _run(docker_client, containers, ["python", "-m", "api"], env)
    worker = _run(docker_client, containers, ["python", "-m", "workers.main"], env)

    http = httpx.AsyncClient(timeout=2)

    async def answer(url: str) -> httpx.Response | None:
        try:
            return await http.get(url)
        except httpx.TransportError:
            return None

    def ok(response: httpx.Response | None) -> bool:
        return response is not None and response.status_code == 200

    async with http:
        health = f"http://127.0.0.1:{api_port}/healthz"
        assert await _until(api, lambda: answer(health), ok, f"{health} answering 200")
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        metrics = await _until(worker, lambda: answer(metrics_url), ok, f"{metrics_url} answering")
    assert metrics is not None and "temporal" in metrics.text

    async def pollers(queue: str, kind: TaskQueueType.ValueType) -> list[str]:
        described = await isolated_client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=isolated_client.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=kind,
            )
        )
        return [poller.identity for poller in described.pollers]

    workflow_queue = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
    activity_queue = TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    for queue, kind in [
        (TaskQueues.WORKFLOWS, workflow_queue),
        (TaskQueues.WORKFLOWS, activity_queue),
        (TaskQueues.BUILD, activity_queue),
        (TaskQueues.DEPLOY, activity_queue),
    ]:
        found = await _until(
            worker, lambda q=queue, k=kind: pollers(q, k), bool, f"a poller on {queue} ({kind})"
        )
        assert found, queue
