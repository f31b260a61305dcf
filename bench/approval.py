"""Benchmark: approval -> next activity started, against a raw Temporal workflow that waits for a
signal (or an Update) and then starts an activity, side by side on one Temporal dev server.

Baton: real EnvironmentRollouts of `sample-app` into staging under examples/baton.yaml (one
approval required, carol may give it), every activity a no-op stand-in (bench.rollouts), each
waiting at its approval gate. The approval is sent as the API sends it (`baton.changes.decide`:
the `approve` Update with a `Decision`, through `execute_update`); timed from the send to the
start of the merge stand-in, which notes `time.monotonic()` in this process. One approval at a
time; each rollout runs to its end before the next approval. Baselines: `BenchRawGate`, released
by a signal (as asked in issue 18) and by an Update (the same kind of message as Baton's), each
timed to the start of its activity. p50/p99 over the runs (goal: 100 ms each, issue 18) and the
ratios to the baselines' p50. Prints one JSON object.

    .venv/bin/python -m bench.approval [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable

from temporalio.client import Client, WorkflowHandle

from baton.models import Decision, RolloutStatus
from baton.temporal import Queries, Updates
from bench import raw
from bench.rollouts import (
    STARTED,
    rollout_input,
    serving,
    start_rollout,
)
from bench.shared import dev_server, percentiles, print_result

WARM_UP = 3
BATCH = 10  # rollouts brought to their gate at once
NUMBERS = itertools.count(1000)  # each rollout's own change number (and commit)


async def until_started(workflow_id: str, patience: float = 30) -> float:
    """When the activity after the gate of `workflow_id` started (monotonic)."""
    deadline = time.monotonic() + patience
    while workflow_id not in STARTED:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workflow_id}: no activity started within {patience} s")
        await asyncio.sleep(0.002)
    return STARTED.pop(workflow_id)


async def at_gate(handle: WorkflowHandle, ready: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + 60
    while not await ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{handle.id} did not reach its gate")
        await asyncio.sleep(0.05)


async def baton_latencies(client: Client, runs: int) -> list[float]:
    latencies: list[float] = []
    while len(latencies) < runs:
        handles = []
        for _ in range(min(BATCH, runs - len(latencies))):
            handles.append(await start_rollout(client, rollout_input("staging", next(NUMBERS))))
        for handle in handles:

            async def approval_gate(handle: WorkflowHandle = handle) -> bool:
                status = await handle.query(Queries.STATUS, result_type=RolloutStatus)
                return status.gate is not None and status.gate.kind == "approval"

            await at_gate(handle, approval_gate)
        for handle in handles:
            sent = time.monotonic()
            answer = await handle.execute_update(
                Updates.APPROVE, Decision(user="carol"), result_type=str
            )
            assert "approved" in answer, answer
            latencies.append(await until_started(handle.id) - sent)
            result = await handle.result()
            assert result.outcome == "deployed", result
    return latencies


async def raw_latencies(client: Client, runs: int, by: str) -> list[float]:
    latencies: list[float] = []
    while len(latencies) < runs:
        handles = [
            await client.start_workflow(
                raw.RawGate.run, id=f"bench-raw-gate-{uuid.uuid4()}", task_queue=raw.QUEUE
            )
            for _ in range(min(BATCH, runs - len(latencies)))
        ]
        for handle in handles:

            async def waiting(handle: WorkflowHandle = handle) -> bool:
                return await handle.query(raw.RawGate.waiting)

            await at_gate(handle, waiting)
        for handle in handles:
            sent = time.monotonic()
            if by == "signal":
                await handle.signal(raw.RawGate.approve)
            else:
                await handle.execute_update(raw.RawGate.approve_update)
            latencies.append(await until_started(handle.id) - sent)
            await handle.result()
    return latencies


async def run(runs: int) -> dict:
    async with dev_server() as env:
        client = env.client
        async with serving(client, "baton", "raw"):
            await baton_latencies(client, WARM_UP)
            await raw_latencies(client, WARM_UP, "signal")
            await raw_latencies(client, WARM_UP, "update")
            # In turns, a batch each, so the machine's load falls on all three alike.
            baton: list[float] = []
            signal: list[float] = []
            update: list[float] = []
            while len(baton) < runs:
                turn = min(BATCH, runs - len(baton))
                baton += await baton_latencies(client, turn)
                signal += await raw_latencies(client, turn, "signal")
                update += await raw_latencies(client, turn, "update")
    baton_ms, signal_ms, update_ms = percentiles(baton), percentiles(signal), percentiles(update)
    return {
        "benchmark": "approval.next_activity_started",
        "workflow": "EnvironmentRollout into staging (examples/baton.yaml), 1 approval required",
        "sent_as": "the approve Update with a Decision (baton.changes.decide), execute_update",
        "baseline": "raw workflow waiting on a signal (raw_signal) or an Update (raw_update), "
        "then starting an activity",
        "runs": runs,
        "baton_ms": baton_ms,
        "raw_signal_ms": signal_ms,
        "raw_update_ms": update_ms,
        "p50_ratio_to_signal": round(baton_ms["p50"] / signal_ms["p50"], 2),
        "p50_ratio_to_update": round(baton_ms["p50"] / update_ms["p50"], 2),
        "goal_ms": {"p50": 100, "p99": 100},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    print_result(asyncio.run(run(parser.parse_args().runs)))


if __name__ == "__main__":
    main()
