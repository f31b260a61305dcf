"""Patches through one marker (workflows/patches.py), on a real Temporal server: a new rollout
records `BASELINE` alone, and a rollout that started on code from before it (each patch its own
marker) finishes on the new code with its own markers and replays."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from baton.models import Decision
from baton.temporal import TaskQueues
from tests.workflows import test_rollout as rollouts
from tests.workflows.test_replay import RUNNERS
from workflows import WORKFLOWS
from workflows.patches import BASELINE, COVERED, patched
from workflows.rollout import EnvironmentRollout

world = rollouts.fresh_world  # the deploy stand-ins' world, fresh for each test


def patch_markers(history: WorkflowHistory) -> list[str]:
    """The patch ids of the history's patch markers, in order."""
    ids = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            ids += [json.loads(p.data)["id"] for p in details["patch-data"].payloads]
    return ids


def version_upserts(history: WorkflowHistory) -> int:
    """How many upserts of `TemporalChangeVersion` the history holds."""
    return sum(
        "TemporalChangeVersion"
        in event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    )


async def replays(history: WorkflowHistory) -> None:
    for runner in RUNNERS.values():
        replayer = Replayer(
            workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=runner
        )
        await replayer.replay_workflow(history)


def serving(client: Client) -> tuple[Worker, Worker]:
    return (
        Worker(client, task_queue=TaskQueues.DEPLOY, activities=rollouts.DEPLOY_STAND_INS),
        Worker(client, task_queue=TaskQueues.WORKFLOWS, workflows=[EnvironmentRollout]),
    )


@pytest.fixture
def before_baseline(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Workers meanwhile run the code from before `BASELINE`: each patch its own marker (a
    `BASELINE` asked for is false and recorded nowhere, as that code never asked). Calling the
    result returns to this code."""
    real = workflow.patched

    def per_patch(patch_id: str) -> bool:
        return False if patch_id == BASELINE else real(patch_id)

    monkeypatch.setattr(workflow, "patched", per_patch)
    yield monkeypatch.undo


def test_a_patch_newer_than_the_baseline_is_refused() -> None:
    assert "approvals-capped" in COVERED
    with pytest.raises(ValueError, match="newer than baseline-2026-12: call workflow.patched"):
        patched("a-patch-from-next-year")


async def test_a_new_rollout_records_the_baseline_alone(temporal_env: WorkflowEnvironment) -> None:
    client = temporal_env.client
    deploy, flows = serving(client)
    async with deploy, flows:
        handle = await rollouts.start(client, rollouts.rollout_input(required=1))
        await rollouts.wait_for_gate(handle, "approval")
        await handle.execute_update(EnvironmentRollout.approve, Decision(user="carol"))
        assert (await rollouts.synced(handle)).outcome == "deployed"
    history = await handle.fetch_history()
    assert patch_markers(history) == [BASELINE]
    assert version_upserts(history) == 1
    await replays(history)


async def test_a_rollout_from_before_the_baseline_finishes_on_its_own_patches(
    temporal_env: WorkflowEnvironment, before_baseline: Callable[[], None]
) -> None:
    client = temporal_env.client
    deploy, flows = serving(client)
    async with deploy, flows:
        handle = await rollouts.start(client, rollouts.rollout_input(required=1))
        await rollouts.wait_for_gate(handle, "approval")
    started = patch_markers(await handle.fetch_history())
    assert started and BASELINE not in started

    before_baseline()  # the upgrade: new workers, which replay the run from its history
    deploy, flows = serving(client)
    async with deploy, flows:
        await handle.execute_update(EnvironmentRollout.approve, Decision(user="carol"))
        assert (await rollouts.synced(handle)).outcome == "deployed"
    history = await handle.fetch_history()
    finished = patch_markers(history)
    assert BASELINE not in finished and len(finished) > len(started)  # later patches, own markers
    await replays(history)
