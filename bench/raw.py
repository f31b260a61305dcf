"""The baselines of the workflow benchmarks: raw Temporal workflows, no Baton code in them.

`RawSteps` runs `steps` no-op activities one after another, with the SDK's defaults (sandboxed,
one start-to-close timeout, the default retry policy); `RawGate` waits for a signal or an Update,
then starts one activity that notes when it started. This module imports only temporalio, so the
workflow sandbox re-imports as little for them as a raw workflow of anyone's would.
"""

from __future__ import annotations

import time
from datetime import timedelta

from temporalio import activity, workflow

QUEUE = "bench-raw"

STARTED: dict[str, float] = {}
"""Workflow id -> `time.monotonic()` when its next activity after a gate started (this process)."""


@activity.defn(name="bench_noop")
async def noop() -> None:
    """Does nothing: what a raw step costs is Temporal's alone."""


@activity.defn(name="bench_started")
async def started() -> None:
    """Notes when it started (by its workflow's id), for the approval benchmark."""
    STARTED[activity.info().workflow_id] = time.monotonic()


@workflow.defn(name="BenchRawSteps")
class RawSteps:
    @workflow.run
    async def run(self, steps: int) -> None:
        for _ in range(steps):
            await workflow.execute_activity(noop, start_to_close_timeout=timedelta(minutes=2))


@workflow.defn(name="BenchRawGate")
class RawGate:
    def __init__(self) -> None:
        self.approved = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.approved)
        await workflow.execute_activity(started, start_to_close_timeout=timedelta(minutes=2))

    @workflow.signal(name="approve")
    def approve(self) -> None:
        self.approved = True

    @workflow.update(name="approve_update")
    async def approve_update(self) -> str:
        self.approved = True
        return "approved"

    @workflow.query(name="waiting")
    def waiting(self) -> bool:
        return not self.approved
