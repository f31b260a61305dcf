"""EnvironmentRollout: one artifact into one environment through a GitOps pull request."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from urllib.parse import quote

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.deploy import (
        CloseInput,
        MergeInput,
        ProposeInput,
        SyncCheckInput,
        VerifyInput,
        check_sync,
        close_gitops_pr,
        gitops_head,
        is_descendant,
        merge_gitops_pr,
        propose_gitops_change,
        render_environment,
        verify_endpoint,
    )
    from baton import policy
    from baton.models import (
        Approval,
        ForgeReview,
        Gate,
        GitOpsPullRequest,
        Outcome,
        Rendered,
        RolloutInput,
        RolloutResult,
        Stage,
        SyncEvent,
        SyncOutcome,
    )
    from baton.temporal import SearchAttributes, TaskQueues

QUICK = {"start_to_close_timeout": timedelta(minutes=2), "task_queue": TaskQueues.DEPLOY}
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
POLL = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=1.5,
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=["SyncFailed"],
)


def rollout_id(app: str, environment: str, commit: str) -> str:
    return f"rollout/{app}/{environment}/{commit}"


class RolloutStatus(Stage):
    """The `status` query of a rollout: its stage plus the gate and the decisions so far."""

    environment: str
    gate: Gate | None = None
    approvals: list[Approval] = []
    gitops_pr: GitOpsPullRequest | None = None
    merge_commit: str | None = None
    timeline: list[Stage] = []


@workflow.defn
class EnvironmentRollout:
    """Render → GitOps PR → approvals and merge → exact-revision sync → verification."""

    @workflow.init
    def __init__(self, input: RolloutInput) -> None:
        self.input = input
        self.policy = input.environment.approvals
        self.approvals: list[Approval] = []
        self.rejection: Approval | None = None
        self.sync_events: list[SyncEvent] = []
        self.human_merge: str | None = None
        self.gate: Gate | None = None
        self.timeline: list[Stage] = []
        self.pr: GitOpsPullRequest | None = None
        self.merge_commit: str | None = None
        self.started = workflow.now()
        self.merge_requested_at = None

    # Messages

    @workflow.update
    def approve(self, approval: Approval) -> str:
        """Add an approval; the validator has checked it against the environment's policy."""
        self.approvals.append(approval.model_copy(update={"at": workflow.now()}))
        self._refresh_gate()
        count = len(policy.approved_by(self.approvals))
        return f"{approval.user} approved {self.input.environment.name} ({count}/{self.policy.required})"

    @approve.validator
    def _check_approve(self, approval: Approval) -> None:
        self._check_decision(approval)
        policy.check_approval(
            self.policy,
            self.input.environment.name,
            self.input.author,
            self.approvals,
            approval.user,
        )

    @workflow.update
    def reject(self, rejection: Approval) -> str:
        self.rejection = rejection.model_copy(update={"at": workflow.now()})
        return f"{rejection.user} rejected {self.input.environment.name}"

    @reject.validator
    def _check_reject(self, rejection: Approval) -> None:
        self._check_decision(rejection)
        allowed = self.policy.approvers
        if allowed and rejection.user not in allowed:
            raise policy.PolicyViolation(
                f"{rejection.user} may not reject {self.input.environment.name}: "
                f"allowed approvers are {', '.join(allowed)}"
            )

    def _check_decision(self, decision: Approval) -> None:
        if self.gate is None or self.gate.kind != "approval":
            stage = self.timeline[-1].name if self.timeline else "starting"
            raise ApplicationError(
                f"the {self.input.environment.name} rollout is not waiting for approval "
                f"(now: {stage})",
                type="NotAwaitingApproval",
            )

    @workflow.signal
    def forge_review(self, review: ForgeReview) -> None:
        """A forge review of the GitOps PR, judged by the same policy as CLI approvals."""
        decision = Approval(user=review.user, source="forge", comment="review on the GitOps PR")
        try:
            if self.pr and review.commit != self.pr.head_sha:
                raise policy.PolicyViolation(f"it reviews {review.commit[:12]}, not the PR's head")
            if review.approved:
                self._check_approve(decision)
                self.approve(decision)
            else:
                self._check_reject(decision)
                self.reject(decision)
        except (policy.PolicyViolation, ApplicationError) as violation:
            self._note(f"review by {review.user} not counted: {violation}")

    @workflow.signal
    def gitops_merged(self, merge_commit: str) -> None:
        """The GitOps PR was merged on the forge (environments whose policy merges by hand)."""
        self.human_merge = merge_commit

    @workflow.signal
    def sync_event(self, event: SyncEvent) -> None:
        self.sync_events.append(event)

    @workflow.query
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
        )

    # Orchestration

    @workflow.run
    async def run(self, input: RolloutInput) -> RolloutResult:
        env = input.environment
        try:
            rendered = await self._step(
                "render",
                render_environment,
                input,
                summary=f"render {input.app.name} for {env.name}",
            )
            if rendered.changed_objects == 0:
                self.merge_commit = await self._step(
                    "unchanged", gitops_head, input, summary="manifests unchanged: sync the head"
                )
            else:
                await self._propose(rendered)
                if not await self._await_approvals():
                    return await self._finish("rejected", f"rejected by {self.rejection.user}")
                self.merge_commit = await self._merge()
            outcome = await self._await_sync()
            if not outcome.synced:
                return await self._finish(
                    "failed", f"sync failed: {outcome.reason} {outcome.message}"
                )
            verified = await self._verify()
            if not verified.synced:
                return await self._finish("failed", f"verification failed: {verified.message}")
            return await self._finish("deployed", verified.message, served=verified.revision)
        except asyncio.CancelledError:
            await self._close_pr("aborted")
            raise

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

    async def _propose(self, rendered: Rendered) -> None:
        input = self.input
        rollout = workflow.info().workflow_id
        body = "\n".join(
            [
                (
                    f"Deploys **{input.app.name}** `{input.artifact.commit[:12]}` to "
                    f"**{input.environment.name}** (image `{input.artifact.image_ref}`)."
                ),
                "",
                f"Change: [{input.change_id}]({self._ui_link(input.change_id)}) · "
                + f"Rollout: [{rollout}]({self._ui_link(rollout)})",
                "",
                "### Rendered manifests",
                "",
                rendered.diff_markdown,
                "",
                f"Baton-Rollout: {rollout}",
            ]
        )
        self.pr = await self._step(
            "gitops pull request",
            propose_gitops_change,
            ProposeInput(rollout=input, rendered=rendered, body=body),
            summary=f"open GitOps PR for {input.environment.name}",
        )

    async def _await_approvals(self) -> bool:
        """Wait durably until the policy is satisfied (True) or someone rejects (False)."""
        if self.policy.required == 0:
            return True
        stage = self._begin("approval")
        self._refresh_gate()
        await workflow.wait_condition(
            lambda: self.rejection is not None or policy.satisfied(self.policy, self.approvals)
        )
        self.gate = None
        if self.rejection is not None:
            self._end(
                stage, "failed", f"rejected by {self.rejection.user}: {self.rejection.comment}"
            )
            return False
        self._end(
            stage, "succeeded", f"approved by {', '.join(policy.approved_by(self.approvals))}"
        )
        return True

    async def _merge(self) -> str:
        assert self.pr is not None
        # Any status observed before this instant predates the merge and can never count.
        self.merge_requested_at = workflow.now()
        if self.policy.merge == "manual":
            stage = self._begin("merge")
            self._set_gate(Gate(kind="merge", environment=self.input.environment.name,
                                description="waiting for a human to merge the GitOps PR",
                                waiting_on=["GitOps repository maintainers"]))  # fmt: skip
            await workflow.wait_condition(lambda: self.human_merge is not None)
            self.gate = None
            self._end(stage, "succeeded", f"merged as {self.human_merge[:12]}")
            return self.human_merge
        return await self._step(
            "merge",
            merge_gitops_pr,
            MergeInput(rollout=self.input, pr=self.pr),
            summary=f"merge GitOps PR #{self.pr.number}",
        )

    async def _await_sync(self) -> SyncOutcome:
        """Wait for the environment to run the merge commit or a descendant of it.

        Whichever comes first: a Flux event (signal) for such a revision, or the polled status.
        """
        assert self.merge_commit is not None
        env = self.input.environment
        timeout = timedelta(seconds=env.sync.timeout_s)
        stage = self._begin("sync")
        self._set_gate(Gate(kind="sync", environment=env.name,
                            description=f"waiting for {env.name} to sync {self.merge_commit[:12]}",
                            waiting_on=[f"{env.sync.kind} sync"],
                            deadline=workflow.now() + timeout))  # fmt: skip
        poll = asyncio.ensure_future(
            workflow.execute_activity(
                check_sync,
                SyncCheckInput(
                    rollout=self.input,
                    merge_commit=self.merge_commit,
                    since=self.merge_requested_at,
                ),
                task_queue=TaskQueues.DEPLOY,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timeout,
                retry_policy=POLL,
                summary=f"poll {env.name} sync status",
            )
        )
        seen = 0
        outcome: SyncOutcome | None = None
        try:
            while outcome is None:
                await workflow.wait_condition(
                    lambda n=seen: poll.done() or len(self.sync_events) > n
                )
                while outcome is None and seen < len(self.sync_events):
                    outcome = await self._judge_event(self.sync_events[seen])
                    seen += 1
                if outcome is None and poll.done():
                    outcome = _poll_outcome(poll, env.sync.timeout_s)
        finally:
            if not poll.done():
                poll.cancel()
            self.gate = None
        self._end(stage, "succeeded" if outcome.synced else "failed",
                  f"{outcome.reason} at {(outcome.revision or '?')[:12]}")  # fmt: skip
        return outcome

    async def _judge_event(self, event: SyncEvent) -> SyncOutcome | None:
        """An event counts when its revision is the merge commit or a descendant of it."""
        if event.state == "progressing":
            return None
        descends = event.revision == self.merge_commit or await workflow.execute_activity(
            is_descendant,
            SyncCheckInput(
                rollout=self.input, merge_commit=self.merge_commit, revision=event.revision
            ),
            summary=f"is {event.revision[:12]} a descendant of {self.merge_commit[:12]}?",
            **(QUICK | {"retry_policy": RETRY}),
        )
        if not descends:
            self._note(f"ignored sync event for older revision {event.revision[:12]}")
            return None
        return SyncOutcome(
            synced=event.state == "ready",
            revision=event.revision,
            reason=event.reason,
            message=event.message,
        )

    async def _verify(self) -> SyncOutcome:
        verify = self.input.environment.verify
        if verify is None:
            return SyncOutcome(synced=True, reason="no verification configured")
        stage = self._begin("verify")
        self._set_gate(Gate(kind="verification", environment=self.input.environment.name,
                            description=f"checking {verify.url}",
                            deadline=workflow.now() + timedelta(seconds=verify.timeout_s)))  # fmt: skip
        result: SyncOutcome = await workflow.execute_activity(
            verify_endpoint,
            VerifyInput(rollout=self.input),
            task_queue=TaskQueues.DEPLOY,
            start_to_close_timeout=timedelta(seconds=verify.timeout_s + 30),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary=f"verify {verify.url}",
        )
        self.gate = None
        self._end(stage, "succeeded" if result.synced else "failed", result.message)
        return result

    async def _finish(self, outcome: str, reason: str, served: str | None = None) -> RolloutResult:
        if outcome != "deployed":
            await self._close_pr(outcome)
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
        )

    async def _close_pr(self, why: str) -> None:
        """Close an unmerged GitOps PR and delete its branch, so nothing stale is left behind."""
        if self.pr is None or self.merge_commit is not None:
            return
        await workflow.execute_activity(
            close_gitops_pr,
            CloseInput(rollout=self.input, pr=self.pr, reason=why),
            summary=f"close GitOps PR #{self.pr.number} ({why})",
            **(QUICK | {"retry_policy": RETRY}),
        )

    # Record keeping

    def _refresh_gate(self) -> None:
        if self.policy.required == 0 or policy.satisfied(self.policy, self.approvals):
            return
        approved = policy.approved_by(self.approvals)
        self._set_gate(
            Gate(
                kind="approval",
                environment=self.input.environment.name,
                description=f"{len(approved)}/{self.policy.required} approvals for "
                f"{self.input.environment.name}",
                waiting_on=policy.still_may_approve(self.policy, self.input.author, self.approvals),
                required=self.policy.required,
                approved_by=approved,
            )
        )

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

    def _end(self, stage: Stage, outcome: Outcome, detail: str = "") -> None:
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
        icon = {"running": "⏳", "succeeded": "✅", "failed": "❌"}
        lines += [f"- {icon.get(s.outcome, '•')} {s.name} {s.detail}" for s in self.timeline]
        workflow.set_current_details("\n".join(line for line in lines if line is not None))

    def _ui_link(self, workflow_id: str) -> str:
        return (
            f"{self.input.ui_url}/namespaces/{self.input.namespace}/workflows/"
            f"{quote(workflow_id, safe='')}"
        )


def _poll_outcome(poll: asyncio.Future, timeout_s: int) -> SyncOutcome:
    try:
        return poll.result()
    except ActivityError as err:
        if isinstance(err.cause, ApplicationError) and err.cause.type == "SyncFailed":
            return SyncOutcome(synced=False, reason="failed", message=err.cause.message)
        return SyncOutcome(
            synced=False, reason="timed out", message=f"not synced within {timeout_s}s"
        )


def _cause(err: ActivityError) -> str:
    cause = err.cause
    return getattr(cause, "message", None) or str(cause or err)


def _describe(result) -> str:
    if isinstance(result, GitOpsPullRequest):
        return f"#{result.number} {result.url}"
    if isinstance(result, Rendered):
        return f"{result.changed_objects} object(s) change"
    if isinstance(result, str):
        return result[:12]
    return ""
