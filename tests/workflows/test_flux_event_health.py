"""Case 19: a Flux event wakes the sync gate, but every rule of the gate still holds.

kustomize-controller sends `ReconciliationSucceeded` after every Ready reconcile, i.e. once the
manifests were applied, without waiting for the Deployments to roll out. The rollout must not be
"deployed" until the sync status says they did (`sync.rollout_health`, on by default).
"""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.client import Client

from api.app import flux_event
from baton.config import SyncConfig
from baton.models import RolloutStatus
from tests.conftest import at_gate
from tests.workflows import test_rollout as rollout
from tests.workflows.test_rollout import M, notes_when, rollout_input, start
from workflows.rollout import EnvironmentRollout

# test_rollout's fixtures: a fresh `world` for its stand-ins, and the workers serving them.
fresh_world, workers = rollout.fresh_world, rollout.workers

CASE = Path(__file__).parents[1] / "fixtures" / "cases" / "19-flux-event-skips-rollout-health"
ROLLING_OUT = (
    'not Ready yet: Waiting for deployment "web" rollout to finish: '
    "0 of 1 updated replicas are available..."
)


def flux_prod_rollout():
    input = rollout_input(required=0)
    env = input.environment.model_copy(update={"sync": SyncConfig(kind="flux", timeout_s=600)})
    return input.model_copy(update={"environment": env})


async def test_case_19_reconciliation_succeeded_does_not_deploy_before_the_rollout(
    workers: Client,
) -> None:
    rollout.world.rolling_out = ROLLING_OUT
    handle = await start(workers, flux_prod_rollout())
    await at_gate(handle, "sync", RolloutStatus)

    # What /webhooks/flux makes of the case's delivery: "ready" at the merge commit.
    event = flux_event(json.loads((CASE / "flux-event.reconciliation-succeeded.json").read_text()))
    assert event is not None and (event.sync.revision, event.sync.state) == (M, "ready")
    await handle.signal(EnvironmentRollout.sync_event, event.sync)

    # The case's expected behaviour: the rollout check still applies, the gate keeps waiting.
    status = await notes_when(handle, 1)
    (note,) = [s.detail for s in status.timeline if s.name == "note"]
    assert note == (
        f"sync event ReconciliationSucceeded at {M[:12]}, but the sync gate does not hold yet "
        f"(not synced yet: {ROLLING_OUT}): still waiting"
    )
    assert status.gate is not None and status.gate.kind == "sync"
    assert not any(s.name == "sync" and s.outcome == "succeeded" for s in status.timeline)

    # Once the Deployments rolled out, polling (or the next event) passes the gate.
    rollout.world.rolling_out = None
    rollout.world.polled_synced.add(M)
    result = await handle.result()
    assert result.outcome == "deployed"
