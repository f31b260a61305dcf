"""A worker killed in the middle of a render: the attempt is retried within seconds (heartbeats),
and no credential it handed to helm is left in the temp directory.

The real EnvironmentRollout on the session's Temporal dev server; its deploy activities in a real
worker process (`python -m workers.main baton-deploy`) with a temp directory of its own; a real
registry (CNCF distribution, htpasswd) holding the published chart; the local forge's git
repositories. The worker is SIGKILLed the moment helm's registry config exists, as a crash would.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.context import Context
from baton import private
from baton.models import Artifact, RolloutInput, RolloutStatus
from baton.temporal import TaskQueues
from tests.conftest import serving, until
from tests.fixtures.charts import PROD_VALUES
from tests.fixtures.docker import LocalRegistry
from tests.fixtures.homes import EXAMPLES, head, publish, sample_app_home
from tests.fixtures.ports import free_port
from workflows.rollout import EnvironmentRollout

RETRIED_WITHIN_S = 15
KILLS = 3


@dataclass
class Deploy:
    """Where the worker process runs: its environment, temp directory and the secret it holds."""

    env: dict[str, str]
    tmp: Path
    username: str
    password: str
    artifact: Artifact
    context: Context
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.tmp.parent / "worker.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers.main", TaskQueues.DEPLOY],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=EXAMPLES.parent,
        )

    def kill(self) -> datetime:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        killed = datetime.now(UTC)
        self.process.wait()
        return killed

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def holds_password(self, path: Path) -> bool:
        """Whether `path` holds the registry password, as is or as docker's config encodes it."""
        basic = base64.b64encode(f"{self.username}:{self.password}".encode())
        try:
            content = path.read_bytes()
        except OSError:  # removed meanwhile
            return False
        return self.password.encode() in content or basic in content

    def credentials(self) -> list[Path]:
        """Files under the worker's temp directory that hold the registry password."""
        return [
            path for path in self.tmp.rglob("*") if path.is_file() and self.holds_password(path)
        ]


@pytest.fixture
def deploy(
    tmp_path: Path,
    registry: LocalRegistry,
    temporal_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deploy]:
    ctx, env = sample_app_home(tmp_path, registry, monkeypatch, PROD_VALUES)
    artifact = publish(ctx, head(ctx, "sample-app"))
    tmp = tmp_path / "worker-tmp"
    tmp.mkdir()
    target = temporal_env.client.service_client.config.target_host
    worker_env = {
        **os.environ,
        **env,
        "TMPDIR": str(tmp),
        "TEMPORAL_ADDRESS": target,
        "BATON_WORKER_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    deploy = Deploy(worker_env, tmp, registry.username, registry.password, artifact, ctx)
    yield deploy
    deploy.stop()


async def credential_in_use(deploy: Deploy) -> Path:
    """Wait (polling every 10 ms, up to 60 s) until helm's registry config holding the
    password exists in the worker's private directory; returns it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for path in deploy.tmp.glob(f"{private.PREFIX}*/helm-*/registry.json"):
            if deploy.holds_password(path):
                return path
        await asyncio.sleep(0.01)
    raise AssertionError(f"no registry config appeared under {deploy.tmp} within 60s")


async def render_attempt(client: Client, workflow_id: str, attempt: int) -> datetime:
    """When attempt `attempt` of the rollout's render started (the server's time)."""

    async def pending():
        description = await client.get_workflow_handle(workflow_id).describe()
        for activity in description.raw_description.pending_activities:
            if activity.activity_type.name == "render_environment":
                return activity
        return None

    activity = await until(
        pending,
        lambda a: (
            a is not None
            and a.attempt >= attempt
            and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        ),
        f"render attempt {attempt} started",
        within_s=120,
    )
    return activity.last_started_time.ToDatetime(tzinfo=UTC)


async def test_a_worker_killed_during_render_is_retried_within_seconds_leaving_no_credential(
    deploy: Deploy, temporal_env: WorkflowEnvironment
) -> None:
    client = temporal_env.client
    rollout = RolloutInput(
        change_id="change/sample-app/1",
        app=deploy.context.config.app("sample-app"),
        environment=deploy.context.config.environment("prod"),
        artifact=deploy.artifact,
        author="alice",
    )
    workflow_id = f"rollout/crash/{uuid.uuid4()}"
    async with serving(client, [EnvironmentRollout], {}):
        handle = await client.start_workflow(
            EnvironmentRollout.run, rollout, id=workflow_id, task_queue=TaskQueues.WORKFLOWS
        )
        deploy.start()
        for kill in range(1, KILLS + 1):
            left = await credential_in_use(deploy)
            killed = deploy.kill()
            # The crash left the password behind, in the dead worker's private directory.
            assert deploy.holds_password(left)
            deploy.start()
            started = await render_attempt(client, workflow_id, kill + 1)
            if kill == 1:  # later attempts wait out the retry policy's growing backoff too
                assert (started - killed).total_seconds() < RETRIED_WITHIN_S
            # The new worker removed what the dead one left.
            await until(left.exists, lambda exists: not exists, f"{left} removed", 30)

        status: RolloutStatus = await until(
            lambda: handle.query(EnvironmentRollout.status),
            lambda s: any(t.name == "render" and t.outcome != "running" for t in s.timeline),
            "the render ended",
            within_s=120,
        )
        render = next(t for t in status.timeline if t.name == "render")
        assert render.outcome == "succeeded", render
        await handle.terminate("crash test over")
    deploy.stop()

    assert deploy.credentials() == []
    assert list(deploy.tmp.iterdir()) == []  # nor anything else the killed workers began
