"""A worker killed in the middle of a render: the attempt is retried within seconds (heartbeats),
and no credential it handed to helm is left in the temp directory.

The real EnvironmentRollout on the session's Temporal dev server; its deploy activities in a real
worker process (`python -m workers.main baton-deploy`) with a temp directory of its own; a real
registry (CNCF distribution, htpasswd) holding the published chart; the local forge's git
repositories. The worker running the render is SIGKILLed the moment helm's registry config
exists, as a crash would, and started again; a second deploy worker polls all along.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from baton.models import RolloutInput, RolloutStatus
from baton.temporal import TaskQueues
from tests.conftest import serving, until
from tests.fixtures.charts import PROD_VALUES
from tests.fixtures.crash import (
    STARTED,
    Deploy,
    credential_in_use,
    deploy_worker,
    pending_activity,
    polling,
    started_at,
)
from tests.fixtures.docker import LocalRegistry
from tests.fixtures.homes import head, publish, sample_app_home
from tests.fixtures.ports import free_port
from workflows.rollout import EnvironmentRollout

RETRIED_WITHIN_S = 15
KILLS = 3


@pytest.fixture
def deploy(
    tmp_path: Path,
    registry: LocalRegistry,
    temporal_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deploy]:
    ctx, env = sample_app_home(tmp_path, registry, monkeypatch, PROD_VALUES)
    artifact = publish(ctx, head(ctx, "sample-app"))
    target = temporal_env.client.service_client.config.target_host
    user = (registry.username, registry.password)
    deploy = deploy_worker(tmp_path, env, target, user, artifact, ctx)
    yield deploy
    deploy.stop()


async def render_attempt(client: Client, workflow_id: str, attempt: int) -> PendingActivityInfo:
    """Attempt `attempt` of the rollout's render, once it started."""
    return await until(
        lambda: pending_activity(client, workflow_id, "render_environment"),
        lambda a: a is not None and a.attempt >= attempt and a.state == STARTED,
        f"render attempt {attempt} started",
        within_s=120,
    )


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
    # A second worker polls too, so the next attempt waits for Temporal, not for a process to
    # start (seconds more on a busy host: bench.recovery). The one running the render is killed.
    metrics = {"BATON_WORKER_METRICS_ADDRESS": f"127.0.0.1:{free_port()}"}
    workers = [deploy, replace(deploy, env=deploy.env | metrics)]
    try:
        async with serving(client, [EnvironmentRollout], {}):
            for worker in workers:
                worker.start()
            since = datetime.now(UTC)
            await asyncio.gather(
                *(polling(client, w.process.pid, since) for w in workers if w.process)
            )
            handle = await client.start_workflow(
                EnvironmentRollout.run, rollout, id=workflow_id, task_queue=TaskQueues.WORKFLOWS
            )
            for kill in range(1, KILLS + 1):
                left = await credential_in_use(deploy)
                running = await render_attempt(client, workflow_id, kill)
                pid = int(running.last_worker_identity.split("@", 1)[0])  # the SDK's: pid@host
                victim = next(w for w in workers if w.process is not None and w.process.pid == pid)
                killed = victim.kill()
                # The crash left the password behind, in the dead worker's private directory.
                assert victim.holds_password(left)
                victim.start()
                started = started_at(await render_attempt(client, workflow_id, kill + 1))
                if kill == 1:  # later attempts wait out the retry policy's growing backoff too
                    assert (started - killed).total_seconds() < RETRIED_WITHIN_S
                # The new worker removed what the dead one left.
                await until(left.exists, lambda exists: not exists, f"{left} removed", 120)

            status: RolloutStatus = await until(
                lambda: handle.query(EnvironmentRollout.status),
                lambda s: any(t.name == "render" and t.outcome != "running" for t in s.timeline),
                "the render ended",
                within_s=120,
            )
            render = next(t for t in status.timeline if t.name == "render")
            assert render.outcome == "succeeded", render
            await handle.terminate("crash test over")
    finally:
        for worker in workers:
            worker.stop()

    assert deploy.credentials() == []
    assert list(deploy.tmp.iterdir()) == []  # nor anything else the killed workers began
