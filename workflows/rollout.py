"""EnvironmentRollout: one artifact into one environment through a GitOps pull request."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from urllib.parse import quote

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.deploy import (
        ApplyInput,
        CloseInput,
        MergeInput,
        ProposeInput,
        Revert,
        RevertInput,
        SyncCheckInput,
        VerifyInput,
        apply_manifests,
        check_sync,
        close_gitops_pr,
        gitops_head,
        is_descendant,
        merge_gitops_pr,
        propose_gitops_change,
        render_environment,
        request_reconcile,
        revert_gitops_change,
        verify_endpoint,
    )
    from baton import freeze, policy
    from baton.models import (
        Decision,
        ForgeReview,
        Gate,
        GitOpsPullRequest,
        Rendered,
        Rollback,
        RolloutInput,
        RolloutResult,
        RolloutStatus,
        Stage,
        StageOutcome,
        SyncEvent,
        SyncOutcome,
    )
    from baton.temporal import (
        Queries,
        SearchAttributes,
        Signals,
        TaskQueues,
        Updates,
        WorkflowTypes,
    )

QUICK = {"start_to_close_timeout": timedelta(minutes=2), "task_queue": TaskQueues.DEPLOY}
# Forge refusals that no retry can fix: the PR moved, conflicts, or is gone.
FORGE_REFUSALS = [
    "HeadChanged",
    "NotMergeable",
    "PullRequestNotFound",
    "PullRequestClosed",
    "NoCommitsBetween",
    "RepositoryNotFound",
    "BranchNotFound",
]
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["DeployConfigError", *FORGE_REFUSALS],
)
POLL = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=1.5,
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=["SyncFailed"],
)
RECONCILE = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
SYNCED_BY = {
    "local": "local cluster sync",
    "flux": "Flux sync",
    "apply": "rollout of the applied manifests",
}
# A rollback whose forge stays unreachable this long is reported as failed, not retried forever.
ROLLBACK_PATIENCE = timedelta(minutes=10)


@workflow.defn(name=WorkflowTypes.ROLLOUT)
class EnvironmentRollout:
    """Render → GitOps PR → approvals and merge → exact-revision sync → verification.

    When sync or verification fails after the merge, a rollback saga reverts the GitOps change
    (merged automatically, or in production under the approval policy), waits for the revert to
    sync and verifies that the previous version serves again; the rollout then fails either way.
    """

    @workflow.init
    def __init__(self, input: RolloutInput) -> None:
        self.input = input
        self.policy = input.environment.approvals
        self.sensitive: list[str] = []  # why the rendered diff is security-sensitive
        self.approvals: list[Decision] = []
        self.rejection: Decision | None = None
        self.sync_events: list[SyncEvent] = []
        self.human_merge: str | None = None
        self.gate: Gate | None = None
        self.timeline: list[Stage] = []
        self.pr: GitOpsPullRequest | None = None
        self.merge_commit: str | None = None
        self.rollback: Rollback | None = None
        self.started = workflow.now()
        self.merge_requested_at = None
        self.events_from = 0
        self.superseded_by: str | None = None
        self.freeze_override: Decision | None = None
        self.override_covers = None  # the end of the freeze the override was given for

    # Messages

    @workflow.update(name=Updates.APPROVE)
    def approve(self, approval: Decision) -> str:
        """Add an approval; the validator has checked it against the environment's policy."""
        self.approvals.append(approval.model_copy(update={"at": workflow.now()}))
        self._refresh_gate()
        count = len(policy.approved_by(self.approvals))
        return f"{approval.user} approved {self.input.environment.name} ({count}/{self._required})"

    @approve.validator
    def _check_approve(self, approval: Decision) -> None:
        self._check_decision(approval)
        policy.check_approval(
            self.policy,
            self.input.environment.name,
            self.input.author,
            self.approvals,
            approval.user,
            self._security_due,
        )

    @workflow.update(name=Updates.REJECT)
    def reject(self, rejection: Decision) -> str:
        self.rejection = rejection.model_copy(update={"at": workflow.now()})
        return f"{rejection.user} rejected {self.input.environment.name}"

    @reject.validator
    def _check_reject(self, rejection: Decision) -> None:
        self._check_decision(rejection)
        allowed = self.policy.approvers
        if allowed and rejection.user not in allowed:
            raise policy.PolicyViolation(
                f"{rejection.user} may not reject {self.input.environment.name}: "
                f"allowed approvers are {', '.join(allowed)}"
            )

    def _check_decision(self, decision: Decision) -> None:
        if self.gate is None or self.gate.kind != "approval":
            stage = self.timeline[-1].name if self.timeline else "starting"
            raise ApplicationError(
                f"the {self.input.environment.name} rollout is not waiting for approval "
                f"(now: {stage})",
                type="NotAwaitingApproval",
            )

    @workflow.update(name=Updates.OVERRIDE_FREEZE)
    def override_freeze(self, override: Decision) -> str:
        """Break glass: roll out although the environment is frozen; recorded with the reason."""
        self.freeze_override = override.model_copy(update={"at": workflow.now()})
        self.override_covers = self.gate.deadline if self.gate else None
        return f"{override.user} overrode the freeze of {self.input.environment.name}"

    @override_freeze.validator
    def _check_override(self, override: Decision) -> None:
        env = self.input.environment
        if self.gate is None or self.gate.kind != "freeze":
            raise ApplicationError(
                f"{env.name} is not frozen for this rollout: nothing to override", type="NotFrozen"
            )
        if not override.comment.strip():
            raise policy.PolicyViolation("a freeze override needs a reason (--reason)")
        policy.check_decider(
            self.policy, env.name, self.input.author, override.user, "override the freeze of"
        )

    @workflow.signal(name=Signals.FORGE_REVIEW)
    def forge_review(self, review: ForgeReview) -> None:
        """A forge review of the GitOps PR, judged by the same policy as CLI approvals."""
        decision = Decision(user=review.user, source="forge", comment="review on the GitOps PR")
        try:
            pr = self._pr_under_review()
            if pr and review.commit != pr.head_sha:
                raise policy.PolicyViolation(f"it reviews {review.commit[:12]}, not the PR's head")
            if review.approved:
                self._check_approve(decision)
                self.approve(decision)
            else:
                self._check_reject(decision)
                self.reject(decision)
        except (policy.PolicyViolation, ApplicationError) as violation:
            self._note(f"review by {review.user} not counted: {violation}")

    @workflow.signal(name=Signals.GITOPS_MERGED)
    def gitops_merged(self, merge_commit: str) -> None:
        """The GitOps PR (or revert PR) was merged on the forge, for policies that merge by hand."""
        if merge_commit != self.merge_commit:  # a redelivered merge of the deploy PR is no news
            self.human_merge = merge_commit

    @workflow.signal(name=Signals.SUPERSEDE)
    def supersede(self, by: str) -> None:
        """A newer change wants the environment: stop, unless the GitOps PR is merging or merged."""
        if self.merge_requested_at is None:
            self.superseded_by = by
        else:
            self._note(f"{by} is newer, but this rollout merged already: it finishes first")

    @workflow.signal(name=Signals.SYNC_EVENT)
    def sync_event(self, event: SyncEvent) -> None:
        self.sync_events.append(event)

    @workflow.query(name=Queries.STATUS)
    def status(self) -> RolloutStatus:
        current = self.timeline[-1] if self.timeline else None
        return RolloutStatus(
            name=current.name if current else "starting",
            started_at=self.started,
            ended_at=current.ended_at if current else None,
            outcome=current.outcome if current else "running",
            detail=current.detail if current else "",
            environment=self.input.environment.name,
            gate=self.gate,
            approvals=self.approvals,
            gitops_pr=self.pr,
            merge_commit=self.merge_commit,
            timeline=self.timeline,
            rollback=self.rollback,
            freeze_override=self.freeze_override,
        )

    # Orchestration

    @workflow.run
    async def run(self, input: RolloutInput) -> RolloutResult:
        try:
            await self._freeze_gate()
            if self.superseded_by:
                return await self._superseded()
            rendered = await self._step(
                "render",
                render_environment,
                input,
                summary=f"render {input.app.name} for {input.environment.name}",
            )
            self.sensitive = rendered.sensitive
            if rendered.changed_objects == 0:
                self.merge_commit = await self._step(
                    "unchanged", gitops_head, input, summary="manifests unchanged: sync the head"
                )
            else:
                if self.superseded_by:
                    return await self._superseded()
                self.pr = await self._propose(rendered)
                approved = await self._await_approvals("approval")
                if self.superseded_by:
                    return await self._superseded()
                if not approved:
                    return await self._finish("rejected", f"rejected by {self.rejection.user}")
                await self._freeze_gate()  # a freeze may have begun while approvals came in
                if self.superseded_by:
                    return await self._superseded()
                self.merge_commit = await self._merge(
                    self.pr, "merge", manual=self.policy.merge == "manual"
                )
            checked = await self._converge(self.merge_commit, VerifyInput(rollout=input))
            if not checked.synced:
                return await self._fail(checked.message)
            return await self._finish("deployed", checked.message, served=checked.revision)
        except asyncio.CancelledError:
            await self._close_unmerged("aborted")
            raise

    async def _freeze_gate(self) -> None:
        """While a freeze window is active, wait durably for its end or a break-glass override.

        An override lets the rollout through the freeze it was given for, not a later one.
        """
        env = self.input.environment
        stage, overridden = None, False
        while self.superseded_by is None:
            frozen = freeze.active(env.freeze, workflow.now())
            if frozen is None:
                break
            if self._overrides(frozen.until):
                overridden = True
                break
            stage = stage or self._begin("freeze")
            self._set_gate(
                Gate(
                    kind="freeze",
                    environment=env.name,
                    description=f"{env.name} is frozen ({frozen.name}) until "
                    f"{frozen.until:%Y-%m-%d %H:%M} UTC",
                    waiting_on=["the end of the freeze", "or a break-glass override"],
                    deadline=frozen.until,
                )
            )
            wait = max(frozen.until - workflow.now(), timedelta(seconds=1))
            try:
                await workflow.wait_condition(
                    lambda until=frozen.until: (
                        self._overrides(until) or self.superseded_by is not None
                    ),
                    timeout=wait,
                )
            except TimeoutError:
                pass
        if stage is None:
            return
        self.gate = None
        override = self.freeze_override
        if self.superseded_by is not None:
            self._end(stage, "superseded", f"superseded by {self.superseded_by}")
        elif overridden and override is not None:
            self._end(stage, "succeeded", f"overridden by {override.user}: {override.comment}")
        else:
            self._end(stage, "succeeded", "the freeze ended")

    def _overrides(self, until) -> bool:
        """Whether a break-glass override covers the freeze that lasts until `until`."""
        return self.override_covers is not None and until <= self.override_covers

    async def _step(self, name: str, activity, arg, *, summary: str, **options):
        stage = self._begin(name)
        try:
            result = await workflow.execute_activity(
                activity, arg, summary=summary, **(QUICK | {"retry_policy": RETRY} | options)
            )
        except ActivityError as err:
            self._end(stage, "failed", _cause(err))
            raise
        self._end(stage, "succeeded", _describe(result))
        return result

    async def _propose(self, rendered: Rendered) -> GitOpsPullRequest:
        input = self.input
        body = self._pr_body(
            f"Deploys **{input.app.name}** `{input.artifact.commit[:12]}` to "
            f"**{input.environment.name}** (image `{input.artifact.image_ref}`).",
            *self._security_section(),
            "### Rendered manifests",
            "",
            rendered.diff_markdown,
        )
        return await self._step(
            "gitops pull request",
            propose_gitops_change,
            ProposeInput(rollout=input, rendered=rendered, body=body),
            summary=f"open GitOps PR for {input.environment.name}",
        )

    async def _await_approvals(self, name: str) -> bool:
        """Wait durably until the policy is satisfied (True) or someone rejects (False)."""
        if self._required == 0:
            return True
        stage = self._begin(name)
        self._refresh_gate()
        await workflow.wait_condition(
            lambda: (
                self.rejection is not None
                or policy.satisfied(self.policy, self.approvals, self._security_due)
                or (self.superseded_by is not None and self.rollback is None)
            )
        )
        self.gate = None
        if self.superseded_by is not None and self.rollback is None:
            self._end(stage, "superseded", f"superseded by {self.superseded_by}")
            return False
        if self.rejection is not None:
            self._end(
                stage, "failed", f"rejected by {self.rejection.user}: {self.rejection.comment}"
            )
            return False
        self._end(
            stage, "succeeded", f"approved by {', '.join(policy.approved_by(self.approvals))}"
        )
        return True

    async def _merge(self, pr: GitOpsPullRequest, name: str, manual: bool, **options) -> str:
        # Any status observed, or event received, before this instant predates the merge.
        self.merge_requested_at = workflow.now()
        self.events_from = len(self.sync_events)
        if manual:
            stage = self._begin(name)
            self._set_gate(
                Gate(
                    kind="merge",
                    environment=self.input.environment.name,
                    description=f"waiting for a human to merge GitOps PR #{pr.number}",
                    waiting_on=["GitOps repository maintainers"],
                )
            )
            await workflow.wait_condition(lambda: self.human_merge is not None)
            self.gate = None
            self._end(stage, "succeeded", f"merged as {self.human_merge[:12]}")
            return self.human_merge
        return await self._step(
            name,
            merge_gitops_pr,
            MergeInput(rollout=self.input, pr=pr),
            summary=f"merge GitOps PR #{pr.number}",
            **options,
        )

    async def _converge(self, commit: str, check: VerifyInput, prefix: str = "") -> SyncOutcome:
        """Have the cluster apply `commit`, wait for it to sync, then verify; says what failed.

        Flux and the local runtime apply by themselves and are asked to reconcile now; without
        Flux (`sync.kind: apply`) Baton applies the manifests at `commit` itself.
        """
        if self.input.environment.sync.kind == "apply":
            failure = await self._apply(commit, f"{prefix}apply")
            if failure:
                return SyncOutcome(synced=False, reason="failed", message=failure)
        # Rollouts recorded before reconcile requests existed replay without one.
        elif workflow.patched("request-reconcile"):
            await self._request_reconcile()
        synced = await self._await_sync(commit, f"{prefix}sync")
        if not synced.synced:
            return synced.model_copy(update={"message": f"sync {synced.reason}: {synced.message}"})
        verified = await self._verify(check, f"{prefix}verify")
        if not verified.synced:
            return verified.model_copy(
                update={"message": f"verification failed: {verified.message}"}
            )
        return verified

    async def _apply(self, commit: str, name: str) -> str | None:
        """Apply the manifests at `commit` to the environment's cluster; None, or what failed.

        Retried while the cluster is unreachable, for at most the sync timeout."""
        env = self.input.environment
        try:
            await self._step(
                name,
                apply_manifests,
                ApplyInput(rollout=self.input, revision=commit),
                summary=f"apply {commit[:12]} to {env.name}",
                schedule_to_close_timeout=timedelta(seconds=env.sync.timeout_s),
            )
        except ActivityError as err:
            if isinstance(err.cause, ActivityTimeoutError):
                seen = _last_failure(err.cause)
                last = f"; last error: {seen}" if seen else ""
                return f"apply failed: not applied within {env.sync.timeout_s}s{last}"
            return f"apply failed: {_cause(err)}"
        return None

    async def _request_reconcile(self) -> None:
        """Have the cluster apply the merge now; without it, sync waits for the next poll."""
        env = self.input.environment
        try:
            await workflow.execute_activity(
                request_reconcile,
                self.input,
                task_queue=TaskQueues.DEPLOY,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RECONCILE,
                summary=f"request a reconcile of {env.name}",
            )
        except ActivityError as err:
            self._note(
                f"reconcile request failed ({_cause(err)}): sync waits for {env.sync.kind}'s own poll"
            )

    async def _await_sync(self, commit: str, name: str) -> SyncOutcome:
        """Wait for the environment to run `commit` or a descendant of it.

        Whichever comes first: a Flux event (signal) for such a revision, or the polled status.
        """
        env = self.input.environment
        timeout = timedelta(seconds=env.sync.timeout_s)
        stage = self._begin(name)
        self._set_gate(
            Gate(
                kind="sync",
                environment=env.name,
                description=f"waiting for {env.name} to sync {commit[:12]}",
                waiting_on=[SYNCED_BY[env.sync.kind]],
                deadline=workflow.now() + timeout,
            )
        )
        poll = asyncio.ensure_future(
            workflow.execute_activity(
                check_sync,
                SyncCheckInput(
                    rollout=self.input, merge_commit=commit, since=self.merge_requested_at
                ),
                task_queue=TaskQueues.DEPLOY,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timeout,
                retry_policy=POLL,
                summary=f"poll {env.name} sync status",
            )
        )
        seen = self.events_from
        outcome: SyncOutcome | None = None
        try:
            while outcome is None:
                await workflow.wait_condition(
                    lambda n=seen: poll.done() or len(self.sync_events) > n
                )
                while outcome is None and seen < len(self.sync_events):
                    outcome = await self._judge_event(self.sync_events[seen], commit)
                    seen += 1
                if outcome is None and poll.done():
                    outcome = _poll_outcome(poll, env.sync.timeout_s)
        finally:
            if not poll.done():
                poll.cancel()
            self.gate = None
        self._end(stage, "succeeded" if outcome.synced else "failed", _sync_detail(outcome))
        return outcome

    async def _judge_event(self, event: SyncEvent, commit: str) -> SyncOutcome | None:
        """An event counts when its revision is `commit` or a descendant of it."""
        if event.state == "progressing":
            return None
        descends = event.revision == commit or await workflow.execute_activity(
            is_descendant,
            SyncCheckInput(rollout=self.input, merge_commit=commit, revision=event.revision),
            summary=f"is {event.revision[:12]} a descendant of {commit[:12]}?",
            **(QUICK | {"retry_policy": RETRY}),
        )
        if not descends:
            self._note(f"ignored sync event for older revision {event.revision[:12]}")
            return None
        if event.state == "ready":
            return SyncOutcome(
                synced=True, revision=event.revision, reason=event.reason, message=event.message
            )
        return SyncOutcome(
            synced=False,
            revision=event.revision,
            reason="failed",
            message=": ".join(filter(None, [event.reason, event.message])),
        )

    async def _verify(self, check: VerifyInput, name: str) -> SyncOutcome:
        verify = self.input.environment.verify
        if verify is None:
            return SyncOutcome(synced=True, reason="no verification configured")
        stage = self._begin(name)
        self._set_gate(
            Gate(
                kind="verification",
                environment=self.input.environment.name,
                description=f"checking {verify.url}",
                deadline=workflow.now() + timedelta(seconds=verify.timeout_s),
            )
        )
        result: SyncOutcome = await workflow.execute_activity(
            verify_endpoint,
            check,
            task_queue=TaskQueues.DEPLOY,
            start_to_close_timeout=timedelta(seconds=verify.timeout_s + 30),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary=f"verify {verify.url}",
        )
        self.gate = None
        self._end(stage, "succeeded" if result.synced else "failed", result.message)
        return result

    async def _superseded(self) -> RolloutResult:
        """A newer change took the environment before the merge: close our PR and stop."""
        return await self._finish("superseded", f"superseded by {self.superseded_by}")

    async def _fail(self, reason: str) -> RolloutResult:
        """Fail the rollout; a GitOps change of ours that was merged is rolled back first."""
        merged = self.pr is not None and self.merge_commit is not None
        if merged and workflow.patched("rollback"):
            reason = f"{reason}; {await self._roll_back(reason)}"
        return await self._finish("failed", reason)

    # The rollback saga

    async def _roll_back(self, cause: str) -> str:
        """Revert the merged GitOps change, sync and verify the revert; says how it ended."""
        self.rollback = Rollback(cause=cause)
        self._publish_details()
        try:
            commit = await self._revert()
            if commit is None:
                return self._rolled_back(
                    "rejected", f"rollback rejected by {self.rejection.user}: revert PR closed"
                )
            check = VerifyInput(
                rollout=self.input,
                commit=self.rollback.previous_commit,
                rolled_back_from=self.input.artifact.commit,
                removed=self.rollback.removed,
            )
            checked = await self._converge(commit, check, "rollback: ")
        except ActivityError as err:
            return self._rolled_back("failed", f"rollback failed: {_cause(err)}")
        if not checked.synced:
            return self._rolled_back("failed", f"rollback failed: {checked.message}")
        revert = self.rollback.revert_pr
        how = f"GitOps PR #{revert.number}" if revert else "already in the GitOps repository"
        previous = self.rollback.previous_commit
        if self.rollback.removed:
            app, env = self.input.app.name, self.input.environment.name
            detail = f"rolled back: {app} removed from {env} (its first deploy there; {how})"
        else:
            to = previous[:12] if previous else f"the manifests before {self.merge_commit[:12]}"
            detail = f"rolled back to {to} ({how})"
        return self._rolled_back("rolled back", detail)

    async def _revert(self) -> str | None:
        """Open the revert PR and merge it: automatically, or in production under the policy.

        Returns the commit to sync, or None when the revert was rejected.
        """
        assert self.rollback is not None and self.merge_commit is not None
        input, env = self.input, self.input.environment
        self.human_merge = None
        body = self._pr_body(
            f"Rolls **{input.app.name}** `{input.artifact.commit[:12]}` back in "
            f"**{env.name}**: the manifests return to what they were before "
            f"`{self.merge_commit[:12]}` (GitOps PR #{self.pr.number}): to a placeholder "
            "without objects if this was its first deploy there.",
            f"Why: {self.rollback.cause}",
        )
        revert: Revert = await self._step(
            "rollback: revert PR",
            revert_gitops_change,
            RevertInput(rollout=input, merge_commit=self.merge_commit, body=body),
            summary=f"open the revert PR for {env.name}",
            schedule_to_close_timeout=ROLLBACK_PATIENCE,
        )
        self.rollback.previous_commit = revert.previous_commit
        self.rollback.removed = revert.removed
        if revert.pr is None:
            return revert.head
        self.rollback.revert_pr = revert.pr
        if env.production and not await self._approve_revert():
            await self._close_pr(revert.pr, "rollback rejected")
            return None
        self.rollback.revert_commit = await self._merge(
            revert.pr,
            "rollback: merge",
            manual=env.production and self.policy.merge == "manual",
            schedule_to_close_timeout=ROLLBACK_PATIENCE,
        )
        return self.rollback.revert_commit

    async def _approve_revert(self) -> bool:
        """A fresh round of approvals under the environment's policy, for the revert PR."""
        assert self.rollback is not None
        deployed_with = self.approvals
        self.approvals, self.rejection = [], None
        try:
            return await self._await_approvals("rollback: approval")
        finally:
            self.rollback.approvals, self.approvals = self.approvals, deployed_with

    def _rolled_back(self, outcome: str, detail: str) -> str:
        assert self.rollback is not None
        self.rollback.outcome = outcome
        self.rollback.detail = detail
        return detail

    # Finishing

    async def _finish(self, outcome: str, reason: str, served: str | None = None) -> RolloutResult:
        if outcome != "deployed":
            await self._close_unmerged(outcome)
        workflow.upsert_search_attributes([SearchAttributes.STAGE.value_set(outcome)])
        self._publish_details(f"**{outcome}**: {reason}")
        return RolloutResult(
            environment=self.input.environment.name,
            outcome=outcome,
            reason=reason,
            gitops_pr=self.pr,
            merge_commit=self.merge_commit,
            approvals=self.approvals,
            served=served,
            rollback=self.rollback,
            freeze_override=self.freeze_override,
        )

    async def _close_unmerged(self, why: str) -> None:
        """Close the GitOps PR unless it was merged, so nothing stale is left behind."""
        if self.pr is not None and self.merge_commit is None:
            await self._close_pr(self.pr, why)

    async def _close_pr(self, pr: GitOpsPullRequest, why: str) -> None:
        """Close a GitOps PR with a comment saying why, and delete its branch."""
        await workflow.execute_activity(
            close_gitops_pr,
            CloseInput(rollout=self.input, pr=pr, reason=why),
            summary=f"close GitOps PR #{pr.number} ({why})",
            **(QUICK | {"retry_policy": RETRY}),
        )

    # Record keeping

    def _refresh_gate(self) -> None:
        due = self._security_due
        if self._required == 0 or policy.satisfied(self.policy, self.approvals, due):
            return
        approved = policy.approved_by(self.approvals)
        purpose = "to roll back" if self.rollback else "for"
        security = f" (security-sensitive: {'; '.join(self.sensitive)})" if due else ""
        self._set_gate(
            Gate(
                kind="approval",
                environment=self.input.environment.name,
                description=f"{len(approved)}/{self._required} approvals {purpose} "
                f"{self.input.environment.name}{security}",
                waiting_on=policy.still_may_approve(
                    self.policy, self.input.author, self.approvals, due
                ),
                required=self._required,
                approved_by=approved,
            )
        )

    @property
    def _security_due(self) -> int:
        """Extra approvals the security-sensitive diff needs; 0 when it is not sensitive."""
        if self.rollback is not None:  # rolling back must not wait for the security reviewers
            return 0
        return self.policy.security.required if self.sensitive else 0

    @property
    def _required(self) -> int:
        return policy.required(self.policy, self._security_due)

    def _set_gate(self, gate: Gate) -> None:
        self.gate = gate
        workflow.upsert_search_attributes([SearchAttributes.GATE.value_set(gate.kind)])
        self._publish_details()

    def _begin(self, name: str) -> Stage:
        stage = Stage(name=name, started_at=workflow.now())
        self.timeline.append(stage)
        if self.gate is None:
            workflow.upsert_search_attributes([SearchAttributes.GATE.value_set("none")])
        workflow.upsert_search_attributes([SearchAttributes.STAGE.value_set(name)])
        self._publish_details()
        return stage

    def _end(self, stage: Stage, outcome: StageOutcome, detail: str = "") -> None:
        stage.ended_at = workflow.now()
        stage.outcome = outcome
        stage.detail = detail
        self._publish_details()

    def _note(self, detail: str) -> None:
        now = workflow.now()
        self.timeline.append(
            Stage(name="note", started_at=now, ended_at=now, outcome="skipped", detail=detail)
        )

    def _publish_details(self, headline: str = "") -> None:
        input = self.input
        lines = [
            f"**{input.app.name}** `{input.artifact.commit[:12]}` → **{input.environment.name}**",
            headline,
        ]
        if self.gate:
            lines.append(f"Waiting: {self.gate.description}")
            if self.gate.waiting_on:
                lines.append(f"On: {', '.join(self.gate.waiting_on)}")
        if self.pr:
            lines.append(f"GitOps PR: [#{self.pr.number}]({self.pr.url})")
        if self.rollback:
            lines.append(f"Rollback ({self.rollback.outcome}): {self.rollback.cause}")
            if self.rollback.revert_pr:
                revert = self.rollback.revert_pr
                lines.append(f"Revert PR: [#{revert.number}]({revert.url})")
        icon = {"running": "⏳", "succeeded": "✅", "failed": "❌"}
        lines += [f"- {icon.get(s.outcome, '•')} {s.name} {s.detail}" for s in self.timeline]
        workflow.set_current_details("\n".join(line for line in lines if line is not None))

    def _pr_body(self, *paragraphs: str) -> str:
        """A GitOps PR body: what it does, links to the change and rollout, the routing trailer."""
        change = self.input.change_id
        rollout = workflow.info().workflow_id
        links = (
            f"Change: [{change}]({self._ui_link(change)}) · "
            f"Rollout: [{rollout}]({self._ui_link(rollout)})"
        )
        return "\n".join(
            [paragraphs[0], "", links, "", *paragraphs[1:], "", f"Baton-Rollout: {rollout}"]
        )

    def _security_section(self) -> list[str]:
        """The PR body's warning about a security-sensitive diff, and what it needs."""
        if not self.sensitive:
            return []
        security = self.policy.security
        needs = (
            f"It needs {security.required} extra approval(s)"
            + (f" from {', '.join(security.approvers)}" if security.approvers else "")
            + "."
            if security.required
            else ""
        )
        reasons = [f"- {reason}" for reason in self.sensitive]
        return ["### ⚠ Security-sensitive", "", *reasons, "", needs, ""]

    def _pr_under_review(self) -> GitOpsPullRequest | None:
        """The revert PR while a rollback waits for it, else the rollout's GitOps PR."""
        return (self.rollback and self.rollback.revert_pr) or self.pr

    def _ui_link(self, workflow_id: str) -> str:
        return (
            f"{self.input.ui_url}/namespaces/{self.input.namespace}/workflows/"
            f"{quote(workflow_id, safe='')}"
        )


def _poll_outcome(poll: asyncio.Future, timeout_s: int) -> SyncOutcome:
    """The polling activity's end: synced, failed (non-retryable), or out of time."""
    try:
        return poll.result()
    except ActivityError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):  # SyncFailed, or a cluster configuration error
            return SyncOutcome(synced=False, reason="failed", message=cause.message)
        seen = _last_failure(cause)
        return SyncOutcome(
            synced=False,
            reason="timed out",
            message=f"not synced within {timeout_s}s" + (f"; last seen: {seen}" if seen else ""),
        )


def _last_failure(timeout: BaseException | None) -> str | None:
    """The last attempt's error an activity's timeout carries, if it was one of ours."""
    last = getattr(timeout, "cause", None)
    return last.message if isinstance(last, ApplicationError) else None


def _sync_detail(outcome: SyncOutcome) -> str:
    if outcome.synced:
        return f"{outcome.reason} at {(outcome.revision or '?')[:12]}"
    return f"{outcome.reason}: {outcome.message}"


def _cause(err: ActivityError) -> str:
    cause = err.cause
    return getattr(cause, "message", None) or str(cause or err)


def _describe(result) -> str:
    if isinstance(result, GitOpsPullRequest):
        return f"#{result.number} {result.url}"
    if isinstance(result, Revert):
        if result.pr is None:
            return "the GitOps repository holds the previous manifests already"
        return f"#{result.pr.number} {result.pr.url}"
    if isinstance(result, Rendered):
        return f"{result.changed_objects} object(s) change"
    if isinstance(result, str):
        return result[:12]
    return ""
