"""CIBatch: one run of an app's CI schedule (`apps[].ci.schedule`). The commits on the release
branch since the last integrated one become one change, `change/<app>/batch-<sha12>` of the
newest, which integrates and promotes them as one; with no such commits it does nothing.
Started by the app's `ci-batch-<app>` Schedule."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.batch import BatchInput, read_release_batch
    from baton.models import ChangeInput
    from baton.temporal import (
        TaskQueues,
        WorkflowTypes,
        batch_change_id,
        initial_search_attributes,
    )

from workflows.patches import patched
from workflows.pull_request import PullRequestState
from workflows.record import Record
from workflows.retries import CHECK_RETRY

READ_PATIENCE = timedelta(minutes=10)
"""How long reading a batch may take: a fetch of the repository, two forge calls per commit."""

CI_SCHEDULE = "ci-schedule"
"""Patch: a PR merged into a release branch integrated on a schedule ends `batched`."""


@workflow.defn(name=WorkflowTypes.CI_BATCH)
class CIBatch:
    """Reads the batch, then starts its change, which outlives this run. The change's id comes
    from the batch's head commit, so a retried or overlapping run joins the batch it started
    instead of starting a second one."""

    @workflow.run
    async def run(self, input: BatchInput) -> str:
        change = await workflow.execute_activity(
            read_release_batch,
            input,
            task_queue=TaskQueues.BUILD,
            start_to_close_timeout=READ_PATIENCE,
            retry_policy=CHECK_RETRY,
            summary=f"commits of {input.app} not integrated yet",
        )
        if change is None:
            return f"{input.app}: no commits since the last integrated one"
        change_id = batch_change_id(input.app, change.head_sha)
        try:
            await workflow.start_child_workflow(
                WorkflowTypes.CHANGE,
                change,
                id=change_id,
                task_queue=TaskQueues.WORKFLOWS,
                search_attributes=initial_search_attributes(change),
                static_summary=f"{input.app}@{change.head_sha[:12]}: {change.title}"[:200],
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            return f"exists: {change_id}"
        return f"started {change_id}: {change.title}"


def take_batch(input: ChangeInput, pr: PullRequestState, record: Record) -> None:
    """A batch change integrates its head as if merged now; its record lists what it carries."""
    assert input.batch is not None
    pr.merge_commit = input.batch.head
    pr.merged_at = workflow.now()
    record.note(f"batch of {input.batch.describe()}, integrated on the CI schedule")


def batched(input: ChangeInput, merge_commit: str) -> str | None:
    """Why a merged PR's change ends here: its release branch is integrated in batches on a
    schedule, the batch holding its merge commit carries it on (None: integrated now)."""
    schedule = input.plan.app.ci.schedule
    if schedule is None or not patched(CI_SCHEDULE):
        return None
    return (
        f"merged as {merge_commit[:12]}; {input.base_branch} is integrated in batches on the CI "
        f"schedule '{schedule}' (UTC): the next batch's change carries it"
    )
