"""SyncWaiter: waits for an environment to run a GitOps revision or a descendant of it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from functools import partial

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

with workflow.unsafe.imports_passed_through():
    from activities.deploy import SyncCheckInput, check_sync, is_descendant
    from baton.models import Gate, RolloutInput, SyncEvent, SyncOutcome
    from baton.temporal import TaskQueues

from workflows.patches import patched
from workflows.record import Record, failure, last_failure
from workflows.retries import HEARTBEAT, ONE_LOOK, POLL
from workflows.rollout.steps import QUICK, background

CONFIRM_EVENTS = "sync-event-confirmed"
"""Patch: a "ready" sync event wakes one look at the sync status instead of passing the gate."""

SYNCED_BY = {
    "local": "local cluster sync",
    "flux": "Flux sync",
    "apply": "rollout of the applied manifests",
}


class SyncWaiter:
    """Whichever comes first: a sync event (signalled by the API from Flux or the local cluster)
    for the revision or a descendant, or the polled sync status; a durable timeout otherwise.

    An event only wakes the gate: a "ready" one is confirmed by one look at the sync status with
    every rule of the gate (exact revision, Ready, the Deployments rolled out), because Flux's
    `ReconciliationSucceeded` means "applied", not "rolled out". A "failed" event fails the sync.

    Only what happens after the merge counts: `expect_merge` marks that instant.
    """

    def __init__(self, input: RolloutInput, record: Record) -> None:
        self.input = input
        self.record = record
        self.events: list[SyncEvent] = []
        self.since: datetime | None = None  # when the merge was requested; None before
        self.events_from = 0  # events before this index arrived before the merge

    def add(self, event: SyncEvent) -> None:
        """A sync event, as signalled."""
        self.events.append(event)

    def expect_merge(self) -> None:
        """Any status observed, or event received, before this instant predates the merge."""
        self.since = workflow.now()
        self.events_from = len(self.events)

    async def wait(self, revision: str, name: str) -> SyncOutcome:
        """Wait, as the stage `name`, for the environment to run `revision` or a descendant."""
        env = self.input.environment
        timeout = timedelta(seconds=env.sync.timeout_s)
        stage = self.record.begin(name)
        self.record.set_gate(
            Gate(
                kind="sync",
                environment=env.name,
                description=f"waiting for {env.name} to sync {revision[:12]}",
                waiting_on=[SYNCED_BY[env.sync.kind]],
                deadline=workflow.now() + timeout,
            )
        )
        poll = background(
            workflow.execute_activity(
                check_sync,
                SyncCheckInput(rollout=self.input, merged_revision=revision, since=self.since),
                task_queue=TaskQueues.DEPLOY,
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=HEARTBEAT,
                schedule_to_close_timeout=timeout,
                retry_policy=POLL,
                summary=f"poll {env.name} sync status",
            )
        )
        seen = self.events_from
        outcome: SyncOutcome | None = None
        try:
            while outcome is None:
                await workflow.wait_condition(partial(self._news, poll, seen))
                while outcome is None and seen < len(self.events):
                    outcome = await self._judge(self.events[seen], revision)
                    seen += 1
                if outcome is None and poll.done():
                    outcome = _poll_outcome(poll, env.sync.timeout_s)
        finally:
            if not poll.done():
                poll.cancel()
            self.record.clear_gate()
        self.record.end(stage, "succeeded" if outcome.synced else "failed", _sync_detail(outcome))
        return outcome

    def _news(self, poll: asyncio.Future[SyncOutcome], seen: int) -> bool:
        return poll.done() or len(self.events) > seen

    async def _judge(self, event: SyncEvent, revision: str) -> SyncOutcome | None:
        """An event counts when its revision is `revision` or a descendant of it."""
        if event.state == "progressing":
            return None
        descends = event.revision == revision or await workflow.execute_activity(
            is_descendant,
            SyncCheckInput(rollout=self.input, merged_revision=revision, revision=event.revision),
            summary=f"is {event.revision[:12]} a descendant of {revision[:12]}?",
            **QUICK,
        )
        if not descends:
            self.record.note(f"ignored sync event for older revision {event.revision[:12]}")
            return None
        if event.state == "ready":
            if patched(CONFIRM_EVENTS):
                return await self._confirm(event, revision)
            return SyncOutcome(
                synced=True, revision=event.revision, reason=event.reason, message=event.message
            )
        return SyncOutcome(
            synced=False,
            revision=event.revision,
            reason="failed",
            message=": ".join(filter(None, [event.reason, event.message])),
        )

    async def _confirm(self, event: SyncEvent, revision: str) -> SyncOutcome | None:
        """One look at the sync status after a "ready" event: the event's outcome when every rule
        of the gate holds, else None (a note says why) and polling goes on."""
        env = self.input.environment
        check = SyncCheckInput(
            rollout=self.input, merged_revision=revision, since=self.since, revision=event.revision
        )
        try:
            await workflow.execute_activity(
                check_sync,
                check,
                task_queue=TaskQueues.DEPLOY,
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=HEARTBEAT,
                retry_policy=ONE_LOOK,
                summary=f"confirm {env.name} sync of {event.revision[:12]}",
            )
        except ActivityError as err:
            seen = err.cause.message if isinstance(err.cause, ApplicationError) else failure(err)
            self.record.note(
                f"sync event {event.reason or event.state} at {event.revision[:12]}, but the "
                f"sync gate does not hold yet ({seen}): still waiting"
            )
            return None
        return SyncOutcome(
            synced=True, revision=event.revision, reason=event.reason, message=event.message
        )


def _poll_outcome(poll: asyncio.Future[SyncOutcome], timeout_s: int) -> SyncOutcome:
    """The polling activity's end: synced, failed (non-retryable), or out of time."""
    try:
        return poll.result()
    except ActivityError as err:
        cause = err.cause
        out_of_time = err.retry_state == RetryState.TIMEOUT
        if isinstance(cause, ApplicationError) and not out_of_time:
            # SyncFailed, or a cluster configuration error: no retry can help.
            return SyncOutcome(synced=False, reason="failed", message=cause.message)
        # Out of time during an attempt (a timeout that carries the last error), or before the
        # next attempt (Temporal then reports the last error itself).
        seen = cause.message if isinstance(cause, ApplicationError) else last_failure(cause)
        return SyncOutcome(
            synced=False,
            reason="timed out",
            message=f"not synced within {timeout_s}s" + (f"; last seen: {seen}" if seen else ""),
        )


def _sync_detail(outcome: SyncOutcome) -> str:
    """How a sync ended, for the timeline."""
    if outcome.synced:
        return f"{outcome.reason} at {(outcome.revision or '?')[:12]}"
    return f"{outcome.reason}: {outcome.message}"
