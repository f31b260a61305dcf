"""`baton dev up|status|down`: the embedded stack as a user runs it."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from baton.settings import Settings
from baton.temporal import SearchAttributes, connect
from baton.tools import PROJECT_ROOT
from tests.conftest import eventually
from tests.e2e.stack import stack_env as e2e_stack_env
from tests.fixtures.cli import run_baton

# Longer than `dev up` may take on a loaded machine (it gives each of the services it waits for
# 60 s to answer) and than `dev down` (20 s for each service to stop).
CLI_TIMEOUT_S = 300


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env, _ = e2e_stack_env(tmp_path)
    yield env
    baton(env, "dev", "down")


def baton(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_baton(*args, env=env, timeout=CLI_TIMEOUT_S)


async def start_parked_workflow(address: str) -> str:
    """A workflow no worker serves: it stays open, so it must survive a restart."""
    client = await connect(address)
    workflow_id = f"persist-{uuid.uuid4()}"
    await client.start_workflow("Parked", id=workflow_id, task_queue="nobody-serves-this")
    return workflow_id


async def describe(address: str, workflow_id: str) -> str:
    client = await connect(address)
    return (await client.get_workflow_handle(workflow_id).describe()).status.name


def test_dev_up_detach_status_down_keeps_history(stack_env: dict[str, str]) -> None:
    up = baton(stack_env, "dev", "up", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"http://127.0.0.1:{stack_env['BATON_TEMPORAL_UI_PORT']}" in up.stdout

    status = baton(stack_env, "dev", "status")
    assert status.returncode == 0, status.stdout
    lines = dict(line.split(None, 1) for line in status.stdout.splitlines() if "running" in line)
    assert set(lines) == {"temporal", "registry", "api", "worker", "cluster"}
    # Each process gets only the secrets it uses: the registry's push password (generated into
    # the secrets directory, handed over as BATON_REGISTRY_PASSWORD) reaches the worker alone;
    # the API (step logs from the registry, baton.store) and the local cluster (image pulls)
    # hold the pull user's password (BATON_REGISTRY_PULL_PASSWORD); Temporal neither.
    settings = Settings(home=Path(stack_env["BATON_HOME"]))
    passwords = {
        "push": settings.local_secret("BATON_REGISTRY_PASSWORD", "registry-password"),
        "pull": settings.local_secret("BATON_REGISTRY_PULL_PASSWORD", "registry-pull-password"),
    }
    holds = {
        name: sorted(
            kind
            for kind, password in passwords.items()
            if password.encode() in environ(int(line.split("pid ")[1].rstrip(")")))
        )
        for name, line in lines.items()
    }
    assert holds == {
        "temporal": [],
        "registry": [],
        "api": ["pull"],
        "worker": ["push"],
        "cluster": ["pull"],
    }

    api = f"http://127.0.0.1:{stack_env['BATON_API_PORT']}"
    assert httpx.get(f"{api}/healthz").json() == {"status": "ok"}
    metrics = httpx.get(f"{api}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'baton_webhooks_total{forge="github",result="accepted"} 0.0' in metrics.text
    worker = f"http://{stack_env['BATON_WORKER_METRICS_ADDRESS']}/metrics"
    # The worker's runtime serves the SDK's series once the worker process has connected.
    eventually(lambda: scrape(worker), lambda text: "temporal_" in text, what="worker metrics")
    ui = httpx.get(f"http://127.0.0.1:{stack_env['BATON_TEMPORAL_UI_PORT']}/")
    assert ui.status_code == 200

    address = stack_env["TEMPORAL_ADDRESS"]
    workflow_id = asyncio.run(start_parked_workflow(address))
    registered = asyncio.run(_search_attribute_names(address))
    assert {key.name for key in SearchAttributes.ALL} <= registered

    down = baton(stack_env, "dev", "down")
    assert down.returncode == 0 and "temporal" in down.stdout
    assert baton(stack_env, "dev", "status").returncode == 1

    assert baton(stack_env, "dev", "up", "--detach").returncode == 0
    assert asyncio.run(describe(address, workflow_id)) == "RUNNING"
    assert (Path(stack_env["BATON_HOME"]) / "temporal.db").is_file()


def environ(pid: int) -> bytes:
    """The environment process `pid` started with."""
    return Path(f"/proc/{pid}/environ").read_bytes()


def scrape(url: str) -> str:
    """A metrics endpoint's text, or "" while nothing listens there yet."""
    try:
        return httpx.get(url).text
    except httpx.ConnectError:
        return ""


async def _search_attribute_names(address: str) -> set[str]:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    client = await connect(address)
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return set(response.custom_attributes)


def test_busy_port_is_one_clear_line(stack_env: dict[str, str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", int(stack_env["BATON_API_PORT"])))
        sock.listen()
        result = baton(stack_env, "dev", "up", "--detach")
    assert result.returncode == 5  # a service Baton needs cannot start (README: Exit codes)
    assert result.stderr.strip().count("\n") == 0
    assert f"port {stack_env['BATON_API_PORT']} on 127.0.0.1 is in use" in result.stderr
    assert baton(stack_env, "dev", "status").returncode == 1


def test_dev_up_in_the_foreground_stops_everything_on_ctrl_c(stack_env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "dev", "up"],
        env=stack_env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in process.stdout:
            if "Ctrl-C stops everything" in line:
                break
        assert baton(stack_env, "dev", "status").returncode == 0
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=CLI_TIMEOUT_S)[0]
    finally:
        process.kill()
    assert process.returncode == 0
    assert "stopped" in output and "Traceback" not in output
    status = baton(stack_env, "dev", "status")
    assert status.returncode == 1 and "running" not in status.stdout
