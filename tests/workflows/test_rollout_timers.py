"""EnvironmentRollout's freeze windows on the time-skipping server: a freeze of hours ends at once.

The rollout runs with test_rollout.py's stand-in activities and `workers` fixture, here on a
time-skipping test server, where a test skips the hours of a freeze (`WorkflowEnvironment.sleep`)
instead of waiting for them. Freeze windows are set from the server's clock, not the wall clock.

The sync timeout test stays on the dev server in test_rollout.py: when retries run out of
schedule-to-close time, the test server fails the activity with the last attempt's error where
Temporal reports a timeout (whose cause is that error), so the rollout cannot tell it timed out.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from baton.config import FreezeWindow
from baton.models import Decision, RolloutStatus, SyncEvent
from tests.conftest import at_gate, until
from tests.workflows import test_rollout as rollout
from tests.workflows.test_rollout import M, rollout_input, start
from workflows.rollout import EnvironmentRollout

# test_rollout's fixtures (a fresh `world` for its stand-ins; workers), on this module's server.
fresh_world, workers = rollout.fresh_world, rollout.workers
pytestmark = pytest.mark.usefixtures("workers")


@pytest.fixture
def temporal_env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    """test_rollout's `workers` serve the time-skipping server in this module."""
    return time_skipping_env


async def test_a_freeze_holds_the_rollout_until_it_ends(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    now = await time_skipping_env.get_current_time()
    freeze = FreezeWindow(
        name="release freeze", start=now - timedelta(minutes=1), end=now + timedelta(hours=3)
    )
    handle = await start(time_skipping_env.client, rollout_input(required=0, freeze=[freeze]))
    status = await at_gate(handle, "freeze", RolloutStatus)
    assert status.gate.description.startswith("prod is frozen (release freeze) until ")
    assert rollout.world.merged == []

    await time_skipping_env.sleep(timedelta(hours=3))

    await at_gate(handle, "sync", RolloutStatus)
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=M, state="ready"))
    result = await handle.result()
    assert result.outcome == "deployed" and result.freeze_override is None
    status = await handle.query(EnvironmentRollout.status)
    freeze_stage = next(s for s in status.timeline if s.name == "freeze")
    assert (freeze_stage.outcome, freeze_stage.detail) == ("succeeded", "the freeze ended")


async def test_an_override_covers_its_freeze_not_a_later_one(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    now = await time_skipping_env.get_current_time()
    freezes = [
        FreezeWindow(
            name="maintenance", start=now - timedelta(minutes=1), end=now + timedelta(hours=1)
        ),
        FreezeWindow(name="holidays", start=now + timedelta(hours=2), end=now + timedelta(days=10)),
    ]
    handle = await start(time_skipping_env.client, rollout_input(required=1, freeze=freezes))
    await at_gate(handle, "freeze", RolloutStatus)
    await handle.execute_update(
        EnvironmentRollout.override_freeze, Decision(user="carol", comment="urgent fix")
    )
    await at_gate(handle, "approval", RolloutStatus)

    await time_skipping_env.sleep(timedelta(hours=3))  # the holidays begin while it waits

    await handle.execute_update(EnvironmentRollout.approve, Decision(user="dave"))
    status = await at_gate(handle, "freeze", RolloutStatus)
    assert status.gate.description.startswith("prod is frozen (holidays) until ")
    assert rollout.world.merged == []


async def test_approvals_older_than_expire_after_no_longer_count_at_the_merge(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    input = rollout_input(required=2)
    policy = input.environment.approvals.model_copy(update={"expire_after": "24h"})
    environment = input.environment.model_copy(update={"approvals": policy})
    handle = await start(
        time_skipping_env.client, input.model_copy(update={"environment": environment})
    )
    await at_gate(handle, "approval", RolloutStatus)
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="carol"))

    await time_skipping_env.sleep(timedelta(hours=25))  # carol's approval is stale by the merge

    await handle.execute_update(EnvironmentRollout.approve, Decision(user="dave"))
    status = await until(
        lambda: handle.query(EnvironmentRollout.status),
        lambda seen: bool(seen.voided) and seen.gate is not None,
        f"{handle.id} to ask again",
    )
    assert [d.user for d in status.voided] == ["carol"] and status.gate.approved_by == ["dave"]
    assert rollout.world.merged == []
    notes = [s.detail for s in status.timeline if s.name == "note"]
    assert notes == ["approval(s) by carol expired (older than 24h): asking again"]

    await handle.execute_update(EnvironmentRollout.approve, Decision(user="carol"))
    await at_gate(handle, "sync", RolloutStatus)
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=M, state="ready"))
    result = await handle.result()
    assert result.outcome == "deployed" and [a.user for a in result.approvals] == ["dave", "carol"]
