"""RollbackSaga: undoes a rollout's merged GitOps change when sync or verification failed."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol, Unpack

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.deploy import RevertInput, VerifyInput, revert_gitops_change
    from baton.config import NotificationEvent
    from baton.models import (
        GitOpsPullRequest,
        Rollback,
        RollbackOutcome,
        RolloutInput,
        SyncOutcome,
    )

from workflows.patches import patched
from workflows.record import Record, failure
from workflows.rollout import texts
from workflows.rollout.approvals import Approvals
from workflows.rollout.steps import StepOptions, close_pr, step

REVERT_APPROVAL_NOTICE = "revert-approval-notice"
"""Patch: a revert PR waiting for approvals posts `approval_needed` like the rollout's own PR."""
# A rollback whose forge stays unreachable this long is reported as failed, not retried forever.
ROLLBACK_PATIENCE = timedelta(minutes=10)


class Rollout(Protocol):
    """The steps of the rollout that the saga takes again, for the revert."""

    async def merge(
        self, pr: GitOpsPullRequest, name: str, *, manual: bool, **options: Unpack[StepOptions]
    ) -> str: ...

    async def converge(
        self, revision: str, check: VerifyInput, prefix: str = ""
    ) -> SyncOutcome: ...

    async def notify(self, event: NotificationEvent, detail: str) -> None: ...


class RollbackSaga:
    """Reverts the GitOps change merged as `revision` (PR `pr`), then syncs and verifies the revert.

    The revert PR is merged automatically, or in production after a fresh round of approvals
    under the environment's policy. `rollback` tells how far it got; `run` never raises for a step
    that failed, it says so.
    """

    def __init__(
        self,
        rollout: Rollout,
        input: RolloutInput,
        record: Record,
        pr: GitOpsPullRequest,
        revision: str,
        cause: str,
    ) -> None:
        self.rollout = rollout
        self.input = input
        self.record = record
        self.pr = pr
        self.revision = revision
        self.rollback = Rollback(cause=cause)
        self.approvals: Approvals | None = None  # the revert PR's round, once it began

    async def run(self) -> str:
        """Revert, sync and verify; says how the rollback ended."""
        self._show()
        try:
            revision = await self._revert()
            if revision is None:
                assert self.approvals is not None
                return self._ended(
                    "rejected",
                    f"rollback rejected by {self.approvals.rejected_by}: revert PR closed",
                )
            check = VerifyInput(
                rollout=self.input,
                commit=self.rollback.previous_commit,
                rolled_back_from=self.input.artifact.commit,
                removed=self.rollback.removed,
            )
            checked = await self.rollout.converge(revision, check, "rollback: ")
        except ActivityError as err:
            return self._ended("failed", f"rollback failed: {failure(err)}")
        if not checked.synced:
            return self._ended("failed", f"rollback failed: {checked.message}")
        revert = self.rollback.revert_pr
        how = f"GitOps PR #{revert.number}" if revert else "already in the GitOps repository"
        previous = self.rollback.previous_commit
        if self.rollback.removed:
            app, env = self.input.app.name, self.input.environment.name
            detail = f"rolled back: {app} removed from {env} (its first deploy there; {how})"
        else:
            to = previous[:12] if previous else f"the manifests before {self.revision[:12]}"
            detail = f"rolled back to {to} ({how})"
        return self._ended("rolled back", detail)

    async def _revert(self) -> str | None:
        """Open the revert PR and merge it: automatically, or in production under the policy.

        Returns the revision to sync, or None when the revert was rejected.
        """
        input, env = self.input, self.input.environment
        body = texts.revert_body(
            input, workflow.info().workflow_id, self.revision, self.pr.number, self.rollback.cause
        )
        revert = await step(
            self.record,
            "rollback: revert PR",
            revert_gitops_change,
            RevertInput(rollout=input, revision=self.revision, body=body),
            summary=f"open the revert PR for {env.name}",
            schedule_to_close_timeout=ROLLBACK_PATIENCE,
        )
        self.rollback.previous_commit = revert.previous_commit
        self.rollback.removed = revert.removed
        if revert.pr is None:
            return revert.head
        self.rollback.revert_pr = revert.pr
        self.record.fact("Revert PR", f"[#{revert.pr.number}]({revert.pr.url})")
        if env.production and not await self._approved(revert.pr):
            await close_pr(input, revert.pr, "rollback rejected")
            return None
        self.rollback.revert_revision = await self.rollout.merge(
            revert.pr,
            "rollback: merge",
            manual=env.production and env.approvals.merge == "manual",
            schedule_to_close_timeout=ROLLBACK_PATIENCE,
        )
        return self.rollback.revert_revision

    async def _approved(self, pr: GitOpsPullRequest) -> bool:
        """A fresh round of approvals under the environment's policy, for the revert PR."""
        self.approvals = Approvals(self.input, self.record, rollback=True)
        if self.approvals.required and patched(REVERT_APPROVAL_NOTICE):
            await self.rollout.notify(
                "approval_needed",
                f"revert PR #{pr.number} needs {self.approvals.required} approval(s) to roll "
                f"back: {self.rollback.cause}",
            )
        try:
            return await self.approvals.wait("rollback: approval", pr)
        finally:
            self.rollback.approvals = self.approvals.given

    def _ended(self, outcome: RollbackOutcome, detail: str) -> str:
        self.rollback.outcome = outcome
        self.rollback.detail = detail
        self._show()
        return detail

    def _show(self) -> None:
        self.record.fact("Rollback", f"{self.rollback.outcome} ({self.rollback.cause})")
