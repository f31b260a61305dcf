"""Telling people where they work: the change's one comment on its pull request, GitHub
deployments per environment, chat and webhook notifications. Helpers of the change and rollout
workflows; none of what they post can fail a change (a note says it was not posted)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.forge import (
        ChangeCommentInput,
        DeploymentInput,
        report_deployment,
        update_change_comment,
    )
    from activities.notify import NotifyInput, send_notification
    from baton.config import NotificationConfig
    from baton.forges.base import DeploymentState
    from baton.models import RolloutInput, RolloutOutcome
    from baton.notify import Notification
    from baton.temporal import TaskQueues, pipeline_id

from workflows.patches import patched
from workflows.record import Record, failure
from workflows.retries import HEARTBEAT, NOTIFY, TELL

TELL_PATIENCE = timedelta(minutes=5)
"""How long a comment or deployment status is retried while the forge is away; then a note."""
PR_COMMENT = "pr-comment"
"""Patch: the change keeps one comment on its pull request up to date (`CommentKeeper`)."""
COMMENT_HANDOVER = "comment-handover"
"""Patch: a rollout ending hands the comment over to its change (`CommentKeeper.hand_over`), which
writes it once the rollout's stage ends, instead of writing it once more itself."""
DEPLOYMENTS = "forge-deployments"
"""Patch: rollouts report deployments and their statuses to the forge (GitHub)."""
DEPLOYMENT_STATES: dict[RolloutOutcome, DeploymentState] = {
    "deployed": "success",
    "failed": "failure",
}
"""A rollout's outcome as its deployment's last status; the others (rejected, superseded,
aborted) are `inactive`."""


class CommentKeeper:
    """Keeps the change's comment on its pull request in step with what the workflow publishes.

    `refresh` is called whenever there is news (the record's state, a new gate or a gate's new
    text, an outcome): one activity (`update_change_comment`) writes the comment from the
    published status at the time it runs, so news arriving while one is under way only asks for
    one more run after it, never one per step. `settle` waits for the last one before the
    workflow ends. The activity edits the comment it finds by its marker, so a retry or a
    restarted worker never posts a second one. The change and its running rollout (its gates)
    each keep one; every write shows what the change and its rollout published when it ran, and
    the change posts first (validating), after each rollout's end and last (its end), so the
    comment ends up whole.
    """

    def __init__(self, change_id: str, ui_url: str, namespace: str) -> None:
        self.input = ChangeCommentInput(change_id=change_id, ui_url=ui_url, namespace=namespace)
        self.running: asyncio.Task[None] | None = None
        self.again = False
        self.writing = False  # the task in `running` has begun (its activity is asked for)
        self.handed_over = False

    def refresh(self) -> None:
        """Bring the comment up to date soon (workflows recorded before it existed: never)."""
        if self.handed_over or not patched(PR_COMMENT):
            return
        if self.running is not None and not self.running.done():
            self.again = True
            return
        self.writing = False
        self.running = asyncio.ensure_future(self._write())

    def hand_over(self) -> None:
        """Ask for no more writes: a rollout's outcome reaches the comment when its change writes
        it, as the rollout's stage ends (the change's `Record.end(..., news=True)`). The rollout
        then returns without waiting for a forge write of its own (one call of 0.2-1 s on a
        hosted forge, per environment). A write under way still ends before the rollout does
        (`settle`), so it never lands after the change's; one asked for by news in the same
        workflow task, not begun yet, is dropped."""
        self.again = False
        self.handed_over = True
        if self.running is not None and not self.writing:
            self.running.cancel()
            self.running = None

    async def settle(self) -> None:
        """Wait until the comment shows the latest news."""
        while self.running is not None and not self.running.done():
            await asyncio.shield(self.running)

    async def _write(self) -> None:
        self.writing = True
        while True:
            self.again = False
            try:
                await workflow.execute_activity(
                    update_change_comment,
                    self.input,
                    start_to_close_timeout=timedelta(seconds=60),
                    heartbeat_timeout=HEARTBEAT,
                    schedule_to_close_timeout=TELL_PATIENCE,
                    retry_policy=TELL,
                    summary="update the pull request's comment",
                )
            except ActivityError as err:
                workflow.logger.warning("the change's comment was not updated: %s", failure(err))
            if not self.again:
                return


async def report_deployment_state(
    input: RolloutInput, record: Record, state: DeploymentState, description: str
) -> None:
    """Report the rollout's app commit to the forge's deployments of its environment (GitHub;
    other forges take nothing), with the environment's endpoint and the rollout's page."""
    if not input.deployments or not patched(DEPLOYMENTS):
        return
    verify = input.environment.verify
    try:
        await workflow.execute_activity(
            report_deployment,
            DeploymentInput(
                repo=input.app.repo,
                sha=input.artifact.commit,
                environment=input.environment.name,
                state=state,
                description=description[:140],
                environment_url=verify.url if verify else None,
                log_url=record.link(workflow.info().workflow_id),
            ),
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=HEARTBEAT,
            schedule_to_close_timeout=TELL_PATIENCE,
            retry_policy=TELL,
            summary=f"deployment {state}",
        )
    except ActivityError as err:
        record.note(f"deployment status {state} not reported to the forge: {failure(err)}")


async def post_notification(
    record: Record, targets: list[NotificationConfig], note: Notification
) -> None:
    """Post `note` to `targets` (those that want its event); not posting is a note on the
    record, never a failure."""
    try:
        await workflow.execute_activity(
            send_notification,
            NotifyInput(targets=targets, notification=note),
            task_queue=TaskQueues.WORKFLOWS,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=10),
            retry_policy=NOTIFY,
            summary=f"notify {note.event}",
        )
    except ActivityError as err:
        record.note(f"{note.event} notification not sent: {failure(err)}")


CI_FAILED = "ci-failed-notice"
"""Patch: a change whose CI failed on its merged commit posts a `failed` notification."""


async def notify_ci_failed(
    targets: list[NotificationConfig], record: Record, app: str, commit: str, detail: str
) -> None:
    """Post `failed` for CI on the merged commit `commit` (no environment: none was reached)."""
    wanted = [t for t in targets if "failed" in t.events]
    if not wanted or not patched(CI_FAILED):
        return
    info = workflow.info()
    note = Notification(
        id=f"{info.workflow_id}/{info.run_id}/ci",
        event="failed",
        app=app,
        environment="",
        change_id=info.workflow_id,
        rollout_id=pipeline_id(info.workflow_id, "ci"),
        commit=commit,
        detail=detail,
        url=record.link(info.workflow_id),
    )
    await post_notification(record, wanted, note)
