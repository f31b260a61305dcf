"""Benchmark: Baton's orchestration overhead per rollout, against a raw Temporal workflow running
the same number of no-op activities, side by side on one Temporal dev server.

Baton: a real EnvironmentRollout of `sample-app` into dev under examples/baton.yaml (no approval
gate), every activity a no-op stand-in of the same name (bench.rollouts): its freeze gate, render,
verification pre-check, GitOps PR, merge, reconcile request, sync gate, verification and the PR
comment it keeps, each through Baton's retry policies, heartbeat timeouts and record keeping.
Baseline: `BenchRawSteps` running, one after another, as many no-op activities as the rollout's
history scheduled. Rounds alternate the two, one workflow at a time, each timed from its start
request to its result. Reports the medians, their ratio (goal at most 1.2, issue 18), and per
rollout its history events and the bytes of its activities' inputs. Prints one JSON object.

    .venv/bin/python -m bench.orchestration [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from temporalio.client import Client

from baton.temporal import rollout_id
from bench import raw
from bench.rollouts import APP, history_figures, rollout_input, serving, start_rollout
from bench.shared import dev_server, print_result

WARM_UP = 3


async def baton_rollout(client: Client, number: int) -> float:
    input = rollout_input("dev", number)
    started = time.perf_counter()
    handle = await start_rollout(client, input)
    result = await handle.result()
    elapsed = time.perf_counter() - started
    assert result.outcome == "deployed", result
    return elapsed


async def raw_steps(client: Client, steps: int) -> float:
    started = time.perf_counter()
    handle = await client.start_workflow(
        raw.RawSteps.run, steps, id=f"bench-raw-{uuid.uuid4()}", task_queue=raw.QUEUE
    )
    await handle.result()
    return time.perf_counter() - started


async def run(rounds: int) -> dict:
    async with dev_server() as env:
        client = env.client
        async with serving(client, "baton", "raw"):
            for number in range(1, WARM_UP + 1):
                await baton_rollout(client, number)
            last = rollout_id(APP, "dev", rollout_input("dev", WARM_UP).artifact.commit)
            figures = await history_figures(client.get_workflow_handle(last))
            steps = figures["activities"]
            for _ in range(WARM_UP):
                await raw_steps(client, steps)
            baton_s, raw_s = [], []
            for number in range(WARM_UP + 1, WARM_UP + rounds + 1):
                baton_s.append(await baton_rollout(client, number))
                raw_s.append(await raw_steps(client, steps))
    baton_median, raw_median = statistics.median(baton_s), statistics.median(raw_s)
    return {
        "benchmark": "orchestration.rollout",
        "workflow": f"EnvironmentRollout into dev (examples/baton.yaml), {last}",
        "baseline": f"raw Temporal workflow running {steps} no-op activities one after another",
        "rounds": rounds,
        "activities_per_rollout": steps,
        "baton_s": round(baton_median, 4),
        "raw_s": round(raw_median, 4),
        "ratio": round(baton_median / raw_median, 2),
        "goal_ratio": 1.2,
        "baton_per_activity_ms": round(baton_median / steps * 1000, 1),
        "raw_per_activity_ms": round(raw_median / steps * 1000, 1),
        "history_events_per_rollout": figures["history_events"],
        "activity_input_bytes_per_rollout": figures["activity_input_bytes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    print_result(asyncio.run(run(parser.parse_args().rounds)))


if __name__ == "__main__":
    main()
