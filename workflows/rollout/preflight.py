"""Checks a rollout makes before it changes anything: does the environment's verification work?"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.deploy import RUNNING_PATIENCE_S, verify_running
    from baton.models import RolloutInput
    from baton.temporal import TaskQueues

from workflows.patches import patched
from workflows.record import Record
from workflows.retries import HEARTBEAT, RETRY


async def verification_broken(record: Record, input: RolloutInput, prefix: str = "") -> str | None:
    """Why the environment's verification cannot tell a good deploy from a bad one, or None.

    It must answer for the version running now (unless nothing runs there yet): when it does
    not, a verify URL or expectation that is wrong would fail the new version and revert a
    healthy environment, so the rollout stops before its GitOps PR instead. Rollouts recorded
    before this check replay without it.
    """
    verify = input.environment.verify
    if verify is None or not patched("verify-running-first"):
        return None
    stage = record.begin(f"{prefix}check verification")
    outcome = await workflow.execute_activity(
        verify_running,
        input,
        task_queue=TaskQueues.DEPLOY,
        start_to_close_timeout=timedelta(seconds=RUNNING_PATIENCE_S + 30),
        heartbeat_timeout=HEARTBEAT,
        retry_policy=RETRY,
        summary=f"check that {verify.url} answers for the running version",
    )
    if outcome.synced:
        record.end(stage, "succeeded", outcome.reason)
        return None
    record.end(stage, "failed", outcome.message)
    return outcome.message
