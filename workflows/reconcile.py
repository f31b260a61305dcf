"""Reconcile: one reading of the forge for deliveries that never arrived (`baton.reconcile`).
Started by the `reconcile` Schedule every `reconcile.interval`, and when the API starts."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import reconcile_forge
    from baton.temporal import TaskQueues, WorkflowTypes

from workflows.retries import ONE_READING


@workflow.defn(name=WorkflowTypes.RECONCILE)
class Reconcile:
    """One reconciliation; its result lists what it started or signalled (the record of which
    path acted)."""

    @workflow.run
    async def run(self) -> list[str]:
        return await workflow.execute_activity(
            reconcile_forge,
            task_queue=TaskQueues.WORKFLOWS,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=ONE_READING,
            summary="read the forge for missed deliveries",
        )
