"""An environment that spans clusters (`environments[].clusters`): EnvironmentRollout's sync gate
waits for every cluster, each with its own events, and a failure in one rolls back all of them.

The deploy activities are the stand-ins of test_rollout (by name); sync events name their cluster
as a Flux Alert's `eventMetadata: {cluster: ...}` makes them do.
"""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

from api.app import flux_event
from baton.config import ClusterTarget, SyncConfig, VerifyConfig
from baton.models import RolloutInput, SyncEvent
from tests.conftest import until
from tests.workflows import test_rollout as stand_ins
from tests.workflows.test_rollout import (
    COMMIT,
    PREVIOUS,
    REVERT,
    M,
    fresh_world,  # noqa: F401 (autouse: a fresh world per test)
    notes_when,
    rollout_input,
    stages,
    start,
    wait_for_stage,
    workers,  # noqa: F401 (fixture)
)
from workflows.rollout import EnvironmentRollout

CASE = Path(__file__).parents[1] / "fixtures" / "cases" / "19-flux-event-skips-rollout-health"


def two_clusters() -> RolloutInput:
    """prod on Flux clusters eu and us; us verifies at an endpoint of its own."""
    input = rollout_input(required=0)
    us = VerifyConfig(url="http://127.0.0.1:2/version", expected_body="{commit}")
    env = input.environment.model_copy(
        update={
            "sync": SyncConfig(kind="flux"),
            "clusters": [ClusterTarget(name="eu"), ClusterTarget(name="us", verify=us)],
        }
    )
    return input.model_copy(update={"environment": env})


async def ready(handle: WorkflowHandle, cluster: str, revision: str = M) -> None:
    event = SyncEvent(revision=revision, state="ready", cluster=cluster)
    await handle.signal(EnvironmentRollout.sync_event, event)


async def test_sync_gate_waits_for_every_cluster(workers: Client) -> None:  # noqa: F811
    handle = await start(workers, two_clusters())
    await wait_for_stage(handle, "us: sync")
    await ready(handle, "eu")
    await wait_for_stage(handle, "eu: verify")
    status = await until(
        lambda: handle.query(EnvironmentRollout.status),
        lambda status: stages(status)["eu: verify"] == "succeeded",
        "eu verified",
    )
    assert stages(status)["us: sync"] == "running"
    assert status.gate is not None and status.gate.kind == "sync"
    assert status.gate.description == f"waiting for us to sync and verify {M[:12]}"

    # us reports through Flux: its Alert adds `eventMetadata: {cluster: us}` to every event.
    delivery = json.loads((CASE / "flux-event.reconciliation-succeeded.json").read_text())
    delivery["metadata"]["cluster"] = "us"
    event = flux_event(delivery)
    assert event is not None and event.sync.cluster == "us"
    await handle.signal(EnvironmentRollout.sync_event, event.sync)
    result = await handle.result()
    assert result.outcome == "deployed" and result.served == COMMIT
    assert stand_ins.world.reconciles == 2  # each cluster is asked to reconcile
    assert stand_ins.world.checked_running == 2  # each cluster's verification checked first
    (body,) = stand_ins.world.bodies
    assert (
        "to **prod** (image `" in body and "`), in clusters eu, us: the same manifests at" in body
    )
    verified = {
        (v.rollout.environment.cluster, v.rollout.environment.verify.url)
        for v in stand_ins.world.verified
    }
    assert verified == {
        ("eu", "http://127.0.0.1:1/version"),
        ("us", "http://127.0.0.1:2/version"),
    }


async def test_an_event_without_a_cluster_passes_no_cluster_gate(workers: Client) -> None:  # noqa: F811
    handle = await start(workers, two_clusters())
    await wait_for_stage(handle, "us: sync")
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=M, state="ready"))
    status = await notes_when(handle, 1)
    assert "names no cluster of eu, us" in status.timeline[-1].detail
    assert stages(status)["eu: sync"] == stages(status)["us: sync"] == "running"
    await ready(handle, "eu")
    await ready(handle, "us")
    assert (await handle.result()).outcome == "deployed"


async def test_one_cluster_failing_to_sync_rolls_back_every_cluster(workers: Client) -> None:  # noqa: F811
    handle = await start(workers, two_clusters())
    await wait_for_stage(handle, "us: sync")
    await ready(handle, "eu")
    failed = SyncEvent(
        revision=M,
        state="failed",
        reason="HealthCheckFailed",
        message="web not ready",
        cluster="us",
    )
    await handle.signal(EnvironmentRollout.sync_event, failed)
    await wait_for_stage(handle, "rollback: us: sync")
    # One revert PR, of the one commit that wrote both clusters; each syncs it.
    await ready(handle, "us", REVERT)
    status = await handle.query(EnvironmentRollout.status)
    assert stages(status)["rollback: eu: sync"] == "running"
    await ready(handle, "eu", REVERT)
    result = await handle.result()

    assert result.outcome == "failed"
    assert result.reason.startswith("us: sync failed: HealthCheckFailed: web not ready; ")
    assert result.reason.endswith(f"rolled back to {PREVIOUS[:12]} (GitOps PR #8)")
    assert result.rollback.outcome == "rolled back" and result.rollback.revert_revision == REVERT
    assert stand_ins.world.merged == [7, 8]
    rolled_back = [v for v in stand_ins.world.verified if v.commit == PREVIOUS]
    assert sorted(v.rollout.environment.cluster for v in rolled_back) == ["eu", "us"]
    status = await handle.query(EnvironmentRollout.status)
    assert {name: outcome for name, outcome in stages(status).items() if ": " in name} == {
        "eu: check verification": "succeeded",
        "us: check verification": "succeeded",
        "eu: sync": "succeeded",
        "us: sync": "failed",
        "eu: verify": "succeeded",
        "rollback: revert PR": "succeeded",
        "rollback: merge": "succeeded",
        "rollback: eu: sync": "succeeded",
        "rollback: us: sync": "succeeded",
        "rollback: eu: verify": "succeeded",
        "rollback: us: verify": "succeeded",
    }
