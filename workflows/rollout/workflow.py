"""EnvironmentRollout: one artifact into one environment through a GitOps pull request."""

from __future__ import annotations

import asyncio
from typing import Unpack

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.deploy import (
        MergeInput,
        ProposeInput,
        VerifyInput,
        gitops_head,
        merge_gitops_pr,
        propose_gitops_change,
        render_environment,
    )
    from baton.config import NotificationEvent
    from baton.models import (
        ForgeReview,
        Gate,
        GitOpsPullRequest,
        Rendered,
        RolloutInput,
        RolloutOutcome,
        RolloutResult,
        RolloutStatus,
        SyncEvent,
        SyncOutcome,
    )
    from baton.notify import Notification
    from baton.temporal import Queries, Signals, WorkflowTypes

from workflows import metrics
from workflows.patches import patched
from workflows.record import Record
from workflows.rollout import texts
from workflows.rollout.approvals import Approvals, ApprovalUpdates
from workflows.rollout.converge import CLUSTERS, Clusters, Convergence
from workflows.rollout.freeze_gate import FreezeGate, FreezeOverride
from workflows.rollout.preflight import verification_broken
from workflows.rollout.rollback import RollbackSaga
from workflows.rollout.steps import StepOptions, background, close_pr, step
from workflows.rollout.sync_waiter import SyncWaiter
from workflows.telling import (
    COMMENT_HANDOVER,
    DEPLOYMENT_STATES,
    CommentKeeper,
    post_notification,
    report_deployment_state,
)

PREFLIGHT_WITH_RENDER = "preflight-with-render"
"""Patch: the verification pre-check runs while the environment renders, not after it (one
round trip less). Its answer is awaited before anything changes: before the GitOps PR, or, when
the manifests are unchanged, before the rollout syncs the head."""
MERGE_WAITS_FOR_MOVED_HEAD = "merge-waits-for-moved-head"
"""Patch: a merge refused because the GitOps PR's head moved ends its stage `skipped` (what
happened: the approvals are asked again), not `failed`."""


@workflow.defn(name=WorkflowTypes.ROLLOUT)
class EnvironmentRollout(ApprovalUpdates, FreezeOverride):
    """Freeze gate → render → GitOps PR → approvals and merge → exact-revision sync → verification.

    When sync or verification fails after the merge, a rollback saga reverts the GitOps change
    (merged automatically, or in production under the approval policy), waits for the revert to
    sync and verifies that the previous version serves again; the rollout then fails either way.
    The mechanisms with state of their own are helper objects: `Approvals`, `FreezeGate`,
    `SyncWaiter`, `RollbackSaga`; the `Record` keeps its timeline, gate and UI details. The approve,
    reject and override_freeze Updates come from `ApprovalUpdates` and `FreezeOverride`.
    """

    @workflow.init
    def __init__(self, input: RolloutInput) -> None:
        self.input = input
        app, env = input.app.name, input.environment.name
        self.record = Record(
            f"**{app}** `{input.artifact.commit[:12]}` → **{env}**",
            stages_searchable=True,
            ui_url=input.ui_url,
            namespace=input.namespace,
            status=self.status,
            coalesce=True,
        )
        self.approvals = Approvals(input, self.record)
        self.freeze_gate = FreezeGate(input, self.record)
        self.sync = SyncWaiter(input, self.record)
        self.cluster = Convergence(input, self.record, self.sync)
        self.clusters = Clusters(input, self.record)  # an environment of several clusters
        self.saga: RollbackSaga | None = None
        self.pr: GitOpsPullRequest | None = None
        self.revision: str | None = None  # the GitOps revision the environment must run
        self.human_merge: str | None = None  # a merge by hand, as the forge reported it
        self.superseded_by: str | None = None
        self.started = workflow.now()
        self.notified = 0  # notifications sent so far; numbers their idempotency keys
        self.comment = CommentKeeper(input.change_id, input.ui_url, input.namespace)
        if input.pr_comment:
            self.record.on_news = self.comment.refresh

    # Messages

    @workflow.signal(name=Signals.FORGE_REVIEW)
    def forge_review(self, review: ForgeReview) -> None:
        """A forge review of the PR awaiting approvals, judged by the same policy as CLI ones."""
        self._deciding().review(review)

    @workflow.signal(name=Signals.GITOPS_MERGED)
    def gitops_merged(self, revision: str) -> None:
        """The GitOps PR (or revert PR) was merged on the forge, for policies that merge by hand."""
        if revision != self.revision:  # a redelivered merge of the deploy PR is no news
            self.human_merge = revision

    @workflow.signal(name=Signals.SUPERSEDE)
    def supersede(self, by: str) -> None:
        """A newer change wants the environment: stop, unless the GitOps PR is merging or merged."""
        if self.sync.since is None:  # no merge requested yet
            self.superseded_by = by
        else:
            self.record.note(f"{by} is newer, but this rollout merged already: it finishes first")

    @workflow.signal(name=Signals.SYNC_EVENT)
    def sync_event(self, event: SyncEvent) -> None:
        """A Flux (or local cluster) event about the environment, from the API."""
        if self.clusters.each:
            self.clusters.add(event)
        else:
            self.sync.add(event)

    @workflow.query(name=Queries.STATUS)
    def status(self) -> RolloutStatus:
        """The current stage, gate, decisions and timeline."""
        current = self.record.timeline[-1] if self.record.timeline else None
        return RolloutStatus(
            name=self.record.current,
            started_at=self.started,
            ended_at=current.ended_at if current else None,
            outcome=current.outcome if current else "running",
            detail=current.detail if current else "",
            environment=self.input.environment.name,
            gate=self.record.gate,
            approvals=self.approvals.given,
            gitops_pr=self.pr,
            revision=self.revision,
            timeline=self.record.timeline,
            rollback=self.saga.rollback if self.saga else None,
            freeze_override=self.freeze_gate.override,
            content_hash=self.approvals.content_hash,
            voided=self.approvals.voided,
        )

    def _deciding(self) -> Approvals:
        """The round decisions count in: the revert PR's once a rollback asks for approvals."""
        return self.saga.approvals if self.saga and self.saga.approvals else self.approvals

    # The process

    @workflow.run
    async def run(self, input: RolloutInput) -> RolloutResult:
        """Roll the artifact out; says how it ended (deployed, rejected, failed, superseded)."""
        try:
            await report_deployment_state(input, self.record, "in_progress", "rolling out")
            await self.freeze_gate.wait(lambda: self.superseded_by)
            if self.superseded_by:
                return await self._superseded()
            preflight = (
                background(self._verification_broken()) if patched(PREFLIGHT_WITH_RENDER) else None
            )
            rendered = await step(
                self.record,
                "render",
                render_environment,
                input,
                summary=f"render {input.app.name} for {input.environment.name}",
            )
            self.approvals.sensitive = rendered.sensitive
            self.approvals.content_hash = rendered.content_hash
            if rendered.changed_objects == 0:
                self.revision = await step(
                    self.record,
                    "unchanged",
                    gitops_head,
                    input,
                    summary="manifests unchanged: sync the head",
                )
                if preflight and (broken := await preflight):
                    return await self._finish("failed", broken)
            else:
                if self.superseded_by:
                    return await self._superseded()
                broken = await (preflight or self._verification_broken())
                if broken:
                    return await self._finish("failed", broken)
                pr = self.pr = await self._propose(rendered)
                if self.approvals.required:
                    await self.notify(
                        "approval_needed",
                        f"GitOps PR #{pr.number} needs {self.approvals.required} approval(s)",
                    )
                approved = await self.approvals.wait("approval", pr, lambda: self.superseded_by)
                while self.revision is None:
                    if self.superseded_by:
                        return await self._superseded()
                    if not approved:
                        return await self._finish(
                            "rejected", f"rejected by {self.approvals.rejected_by}"
                        )
                    # A freeze may have begun while approvals came in.
                    await self.freeze_gate.wait(lambda: self.superseded_by)
                    if self.superseded_by:
                        return await self._superseded()
                    # An approval dismissed on the forge meanwhile, or expired (only with
                    # approvals.expire_after): approve again before merging.
                    if self.approvals.drop_expired() or (
                        not self.approvals.satisfied and patched("approval-withdrawn")
                    ):
                        approved = await self.approvals.wait(
                            "approval", pr, lambda: self.superseded_by
                        )
                        continue
                    pr = await self._merge_approved(pr)
                    if self.revision is None:  # the PR's head moved: its approvals are void
                        approved = await self.approvals.wait(
                            "approval", pr, lambda: self.superseded_by
                        )
            checked = await self.converge(self.revision, VerifyInput(rollout=input))
            if not checked.synced:
                return await self._fail(checked.message)
            return await self._finish("deployed", checked.message, served=checked.revision)
        except asyncio.CancelledError:
            await self._close_unmerged("aborted")
            await report_deployment_state(input, self.record, "inactive", "aborted")
            raise

    async def _propose(self, rendered: Rendered) -> GitOpsPullRequest:
        input = self.input
        pr = await step(
            self.record,
            "gitops pull request",
            propose_gitops_change,
            ProposeInput(
                rollout=input,
                rendered=rendered,
                body=texts.deploy_body(input, workflow.info().workflow_id, rendered),
            ),
            summary=f"open GitOps PR for {input.environment.name}",
        )
        self.record.fact("GitOps PR", f"[#{pr.number}]({pr.url})")
        return pr

    async def _merge_approved(self, pr: GitOpsPullRequest) -> GitOpsPullRequest:
        """Merge the approved PR and set `revision`; when its head moved since the approvals
        (someone pushed to it), they no longer count: returns the PR as it is now, to ask again."""
        try:
            self.revision = await self.merge(
                pr, "merge", manual=self.input.environment.approvals.merge == "manual"
            )
        except ActivityError as err:
            moved = moved_head(err)
            # Rollouts recorded before approvals followed the PR's head failed here.
            if moved is None or not patched("approvals-follow-head"):
                raise
            if patched(MERGE_WAITS_FOR_MOVED_HEAD):
                self.record.retell(
                    "merge",
                    "skipped",
                    f"not merged: the PR's head moved to {moved['actual'][:12]}, "
                    "approvals asked again",
                )
            pr = self.pr = pr.model_copy(update={"head_sha": moved["actual"]})
            self.sync.since = None  # nothing merges now: a newer change may supersede again
            self.approvals.content_moved(pr, moved.get("content_hash"), moved.get("sensitive"))
        return pr

    async def merge(
        self, pr: GitOpsPullRequest, name: str, *, manual: bool, **options: Unpack[StepOptions]
    ) -> str:
        """Merge a GitOps PR (the rollout's, or its revert): by the merge activity, or by hand."""
        self.sync.expect_merge()
        self.clusters.expect_merge()
        if not manual:
            return await step(
                self.record,
                name,
                merge_gitops_pr,
                MergeInput(rollout=self.input, pr=pr),
                summary=f"merge GitOps PR #{pr.number}",
                **options,
            )
        stage = self.record.begin(name)
        self.record.set_gate(
            Gate(
                kind="merge",
                environment=self.input.environment.name,
                description=f"waiting for a human to merge GitOps PR #{pr.number}",
                waiting_on=["GitOps repository maintainers"],
            )
        )
        # A merge of the rollout's own PR is no news to its revert.
        await workflow.wait_condition(lambda: self.human_merge not in (None, self.revision))
        merged = self.human_merge
        assert merged is not None
        self.record.clear_gate()
        self.record.end(stage, "succeeded", f"merged as {merged[:12]}")
        return merged

    async def _verification_broken(self) -> str | None:
        """Whether the environment's verification (each cluster's) works: see `preflight`."""
        if self.clusters.each and patched(CLUSTERS):
            return await self.clusters.verification_broken()
        return await verification_broken(self.record, self.input)

    async def converge(self, revision: str, check: VerifyInput, prefix: str = "") -> SyncOutcome:
        """Have the environment's cluster (or each of its `clusters`) apply `revision`, sync and
        be verified; says what failed."""
        if self.clusters.each and patched(CLUSTERS):
            return await self.clusters.converge(revision, check, prefix)
        return await self.cluster.run(revision, check, prefix)

    # How it ends

    async def _superseded(self) -> RolloutResult:
        """A newer change took the environment before the merge: close our PR and stop."""
        return await self._finish("superseded", f"superseded by {self.superseded_by}")

    async def _fail(self, reason: str) -> RolloutResult:
        """Fail the rollout; a GitOps change of ours that was merged is rolled back first."""
        pr, revision = self.pr, self.revision
        if pr is not None and revision is not None and patched("rollback"):
            self.saga = RollbackSaga(self, self.input, self.record, pr, revision, reason)
            reason = f"{reason}; {await self.saga.run()}"
            if self.saga.rollback.outcome == "rolled back":
                await self.notify("rolled_back", reason)
        return await self._finish("failed", reason)

    async def _finish(
        self, outcome: RolloutOutcome, reason: str, served: str | None = None
    ) -> RolloutResult:
        if outcome != "deployed":
            await self._close_unmerged(outcome)
        if self.input.pr_comment and patched(COMMENT_HANDOVER):
            self.comment.hand_over()
        self.record.set_state(outcome, reason, outcome=True)
        metrics.rollout_ended(self.input.app.name, self.input.environment.name, outcome)
        if outcome in ("deployed", "failed"):
            await self.notify(outcome, reason)
        state = DEPLOYMENT_STATES.get(outcome, "inactive")
        await report_deployment_state(self.input, self.record, state, f"{outcome}: {reason}")
        await self.comment.settle()
        return RolloutResult(
            environment=self.input.environment.name,
            outcome=outcome,
            reason=reason,
            gitops_pr=self.pr,
            revision=self.revision,
            approvals=self.approvals.given,
            served=served,
            rollback=self.saga.rollback if self.saga else None,
            freeze_override=self.freeze_gate.override,
        )

    async def notify(self, event: NotificationEvent, detail: str) -> None:
        """Post `event` to the notification targets that want it; not posting is a note, never
        the rollout's failure (the revert's saga asks too). Rollouts without such targets (all
        recorded before notifications existed) schedule nothing."""
        targets = [t for t in self.input.notifications if event in t.events]
        if not targets or not patched("notifications"):
            return
        self.notified += 1
        info = workflow.info()
        note = Notification(
            id=f"{info.workflow_id}/{info.run_id}/{self.notified}",
            event=event,
            app=self.input.app.name,
            environment=self.input.environment.name,
            change_id=self.input.change_id,
            rollout_id=info.workflow_id,
            commit=self.input.artifact.commit,
            detail=detail,
            url=self.record.link(info.workflow_id),
        )
        await post_notification(self.record, targets, note)

    async def _close_unmerged(self, why: str) -> None:
        """Close the GitOps PR unless it was merged, so nothing stale is left behind."""
        if self.pr is not None and self.revision is None:
            await close_pr(self.input, self.pr, why)


def moved_head(err: ActivityError) -> dict[str, str] | None:
    """What a merge refused because the GitOps PR's head moved (HeadChanged) says: the new head
    (`actual`), and when Baton rendered it again on a newer base, its `content_hash` and
    `sensitive` reasons (one a line)."""
    cause = err.cause
    if not isinstance(cause, ApplicationError) or cause.type != "HeadChanged" or not cause.details:
        return None
    details = cause.details[0]
    if not isinstance(details, dict) or not isinstance(details.get("actual"), str):
        return None
    return {key: value for key, value in details.items() if isinstance(value, str)}
