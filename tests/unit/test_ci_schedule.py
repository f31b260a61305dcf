"""`baton ci schedule`: each app's CI schedule put on Temporal from the configuration, again and
again, on the session's dev server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from baton.temporal import TaskQueues, WorkflowTypes, ci_schedule_id
from tests.fixtures.cli import run_baton

CONFIG = """
apps:
  - {name: web, repo: web, image: web, chart: chart%s}
  - {name: api, repo: api, image: api, chart: chart}
"""


def schedule(config: Path, temporal_env: WorkflowEnvironment, client: Client) -> list[str]:
    """Run `baton ci schedule` as an operator does; the lines it printed."""
    env = os.environ | {
        "BATON_HOME": str(config.parent / "home"),
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
    }
    result = run_baton("ci", "schedule", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


async def test_each_apps_ci_schedule_is_created_updated_and_deleted_with_the_config(
    tmp_path: Path, temporal_env: WorkflowEnvironment, isolated_client: Client
) -> None:
    config = tmp_path / "baton.yaml"
    config.write_text(CONFIG % ", ci: {schedule: '0 */6 * * *'}")

    assert schedule(config, temporal_env, isolated_client) == [
        "schedule ci-batch-web: 0 */6 * * * (UTC)"
    ]
    config.write_text(CONFIG % ", ci: {schedule: '30 * * * *'}")
    assert schedule(config, temporal_env, isolated_client) == [
        "schedule ci-batch-web: 30 * * * * (UTC)"
    ]

    handle = isolated_client.get_schedule_handle(ci_schedule_id("web"))
    description = await handle.describe()
    action = description.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.id, action.task_queue) == (
        WorkflowTypes.CI_BATCH,
        "ci-batch-web",
        TaskQueues.WORKFLOWS,
    )
    assert [json.loads(arg.data) for arg in action.args] == [{"app": "web"}]  # type: ignore[union-attr]
    # The server keeps a cron as the calendar it means: the update took, minute 30 of each hour.
    (calendar,) = description.schedule.spec.calendars
    assert [(r.start, r.end) for r in calendar.minute] == [(30, 30)]

    config.write_text(CONFIG % "")
    assert schedule(config, temporal_env, isolated_client) == [
        "schedule ci-batch-web: deleted (no app has it as ci.schedule)"
    ]
    with pytest.raises(RPCError) as gone:
        await handle.describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND
