"""Benchmark: a Flux event posted to Baton's API -> the rollout's verification started, against a
raw Temporal workflow that waits for a signal and then starts an activity, on one dev server.

Baton: real EnvironmentRollouts of `sample-app` into dev under examples/baton.yaml (sync kind
local, whose runtime sends Flux-format events; the Kustomization `flux-system/sample-app-dev`),
every activity a no-op stand-in (bench.rollouts) except what the sync gate needs: `check_sync`
answers as a cluster that has not applied the merge yet when the gate polls (so only the event
passes the gate), and as one that has when the gate confirms an event; `verify_endpoint` notes
when it started. Each rollout waits at its sync gate; then the notification-controller's event
(the shape of tests/fixtures/cases/19-*/flux-event.reconciliation-succeeded.json:
`ReconciliationSucceeded` at the merged revision, signed generic-hmac) is posted to the real API
(`/webhooks/flux`: verify the signature, map the Kustomization to app and environment, list the
running rollouts of both, signal each), in this process through httpx's ASGI transport. Timed from
the POST to the start of `verify_endpoint`; the gate on the way confirms the event with one look
at the sync status (`check_sync`). One rollout at a time (the API signals every running rollout of the app and environment, as
a lane has one). Baseline: `BenchRawGate` released by a
signal, timed to the start of its activity. p50/p99 over the runs (goal: 150 ms, issue 18) and
the ratio to the baseline's p50. Prints one JSON object.

    .venv/bin/python -m bench.flux_event [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import httpx
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError

from activities.deploy import SyncCheckInput, VerifyInput
from api.app import create_app
from baton.config import load_config
from baton.flux import sign_generic_hmac
from baton.models import RolloutStatus, SyncOutcome
from baton.settings import Settings
from baton.temporal import Queries
from baton.tools import PROJECT_ROOT
from bench.approval import at_gate, raw_latencies, until_started
from bench.rollouts import MERGED, STARTED, rollout_input, serving, start_rollout
from bench.shared import dev_server, percentiles, print_result

SECRET = "bench-flux-secret"
RUNS = 30
WARM_UP = 3
TURN = 5  # runs of each in turn
NUMBERS = itertools.count(2000)  # each rollout's own change number (and commit)
CASE = (
    PROJECT_ROOT
    / "tests/fixtures/cases/19-flux-event-skips-rollout-health"
    / "flux-event.reconciliation-succeeded.json"
)


@activity.defn(name="check_sync")
async def check_sync(input: SyncCheckInput) -> SyncOutcome:
    """The gate's poll: not applied yet (retried, as the real one raises NotSynced); the look
    that confirms an event (`input.revision` set): applied and Ready at that revision."""
    if input.revision is None:
        raise ApplicationError("not synced yet: Flux has not applied it", type="NotSynced")
    return SyncOutcome(synced=True, revision=input.revision, reason="ReconciliationSucceeded")


@activity.defn(name="verify_endpoint")
async def verify_endpoint(input: VerifyInput) -> SyncOutcome:
    STARTED[activity.info().workflow_id] = time.monotonic()
    commit = input.commit or input.rollout.artifact.commit
    return SyncOutcome(synced=True, revision=commit, message="200 ok")


def flux_event(revision: str) -> tuple[bytes, dict[str, str]]:
    """kustomize-controller's `ReconciliationSucceeded` for sample-app in dev at `revision`, as
    the notification-controller's generic-hmac provider posts it: body and headers."""
    event = json.loads(CASE.read_text())
    event["involvedObject"]["name"] = "sample-app-dev"
    event["metadata"]["revision"] = f"main@sha1:{revision}"
    body = json.dumps(event).encode()
    headers = {
        "Content-Type": "application/json",
        "Gotk-Component": "kustomize-controller",
        "X-Signature": sign_generic_hmac(SECRET, body),
    }
    return body, headers


async def baton_latencies(client: Client, http: httpx.AsyncClient, runs: int) -> list[float]:
    latencies: list[float] = []
    body, headers = flux_event(MERGED)  # every merge stand-in returns MERGED
    for _ in range(runs):
        handle = await start_rollout(client, rollout_input("dev", next(NUMBERS)))

        async def sync_gate(handle: WorkflowHandle = handle) -> bool:
            status = await handle.query(Queries.STATUS, result_type=RolloutStatus)
            return status.gate is not None and status.gate.kind == "sync"

        await at_gate(handle, sync_gate)
        STARTED.pop(handle.id, None)  # the merge stand-in's note
        sent = time.monotonic()
        answer = await http.post("/webhooks/flux", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        assert "signalled 1 rollout" in answer.text, answer.text
        latencies.append(await until_started(handle.id) - sent)
        result = await handle.result()
        assert result.outcome == "deployed", result
    return latencies


async def run(runs: int) -> dict:
    # The gate's poll fails (not synced) until the event passes it: expected, not worth a line.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    os.environ["BATON_WEBHOOK_SECRET"] = SECRET
    os.environ.pop("BATON_FLUX_WEBHOOK_SECRET", None)
    replaced = {"check_sync": check_sync, "verify_endpoint": verify_endpoint}
    async with dev_server() as env:
        client = env.client
        with tempfile.TemporaryDirectory() as home:
            config = load_config(PROJECT_ROOT / "examples" / "baton.yaml")
            app = create_app(Settings(home=Path(home)), config, client)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://baton"
                ) as http,
                serving(client, "baton", "raw", replaced=replaced),
            ):
                await baton_latencies(client, http, WARM_UP)
                await raw_latencies(client, WARM_UP, "signal")
                # In turns, a few each, so the machine's load falls on both alike.
                baton: list[float] = []
                signal: list[float] = []
                while len(baton) < runs:
                    turn = min(TURN, runs - len(baton))
                    baton += await baton_latencies(client, http, turn)
                    signal += await raw_latencies(client, turn, "signal")
    baton_ms, signal_ms = percentiles(baton), percentiles(signal)
    return {
        "benchmark": "flux_event.verification_started",
        "workflow": "EnvironmentRollout into dev (examples/baton.yaml) waiting at its sync gate; "
        "stand-in activities, check_sync: not synced when polled, synced when confirming",
        "sent_as": "kustomize-controller ReconciliationSucceeded at the merged revision, "
        "generic-hmac signed, POST /webhooks/flux (in process, httpx ASGI transport)",
        "path": "API: signature, Kustomization -> app/env, visibility list of running rollouts, "
        "signal; workflow: one check_sync to confirm, then verify_endpoint",
        "baseline": "raw workflow waiting on a signal, then starting an activity",
        "runs": runs,
        "baton_ms": baton_ms,
        "raw_signal_ms": signal_ms,
        "p50_ratio_to_signal": round(baton_ms["p50"] / signal_ms["p50"], 2),
        "goal_ms": {"p50": 150, "p99": 150},
        "runs_default": f"{RUNS} (make bench), after {WARM_UP} untimed of each",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=RUNS, help=f"events timed (default {RUNS}: a p99 needs 30)"
    )
    runs = parser.parse_args().runs
    print_result(asyncio.run(run(runs)))


if __name__ == "__main__":
    main()
