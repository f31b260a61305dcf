"""ChangeWorkflow: the whole life of one change, from its pull request to its last environment."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.forge import CommitInput, merged_pull_request
    from baton.errors import BadRequest
    from baton.holds import HoldUpdate
    from baton.models import (
        TERMINAL_STATES,
        UNKNOWN_PUSHER,
        AbortInput,
        Artifact,
        ChangeInput,
        ChangeState,
        ChangeStatus,
        Gate,
        LaneUpdate,
        PipelineInput,
        PipelineResult,
        PullRequestEvent,
        Stage,
    )
    from baton.temporal import (
        Queries,
        SearchAttributes,
        Signals,
        TaskQueues,
        Updates,
        WorkflowTypes,
        pipeline_id,
    )
    from workflows.pipelines import CIPipeline, PullRequestPipeline, cancel_long_tests

from workflows import metrics
from workflows.authors import learn_authors
from workflows.batch import batched, take_batch
from workflows.patches import patched
from workflows.promotion import Promotion
from workflows.pull_request import PullRequestState
from workflows.record import Record, failure
from workflows.retries import HEARTBEAT, RETRY
from workflows.telling import CommentKeeper, notify_ci_failed

UNVALIDATED_MERGE = "unvalidated-merge"
"""Patch: a PR merged while its validation failed or had not finished is noticed
(`apps[].on_unvalidated_merge`)."""
REOPENED_WHILE_CLOSING = "reopened-while-closing"
"""Patch: a `reopened` that reaches a run while it ends as closed (its PR comment being updated)
carries the change on, validating again, instead of ending with the reopen unseen."""


@workflow.defn(name=WorkflowTypes.CHANGE)
class ChangeWorkflow:
    """Validates every head of the PR, waits for the merge, integrates the merge commit, then promotes."""

    @workflow.init
    def __init__(self, input: ChangeInput) -> None:
        self.input = input
        plan = input.plan
        self.record = Record(
            f"**{_label(input)}** by {input.author}",
            ui_url=plan.ui_url,
            namespace=plan.namespace,
            status=self.status,
        )
        self.comment = CommentKeeper(workflow.info().workflow_id, plan.ui_url, plan.namespace)
        if input.pr_number is not None and plan.pr_comment:
            self.record.on_news = self.comment.refresh
        self.pr = PullRequestState(head_sha=input.head_sha, base_branch=input.base_branch)
        self.state: ChangeState = "validating"
        self.result: PipelineResult | None = None
        self.reason: str | None = None
        self.validations = 0
        self.promotion = Promotion(input, self.record, self._set_state)
        if input.earlier is not None and input.retry is not None:  # a retry: the change goes on
            self.record.timeline = list(input.earlier.timeline)
            self.promotion.resume(input.earlier, input.retry)
        self.aborted: AbortInput | None = None
        self.body: asyncio.Future | None = None
        self.validated: dict[str, bool] = {}  # head → whether its validation passed

    # Messages

    @workflow.signal(name=Signals.PULL_REQUEST_EVENT)
    def pull_request_event(self, event: PullRequestEvent) -> None:
        """Forge events from the API (`PullRequestState.apply`). A `reopened` that reaches a run
        still closing keeps it going (the run cannot complete past an unhandled signal)."""
        self.pr.apply(event, workflow.now())

    @workflow.signal(name=Signals.LANE_UPDATE)
    def lane_update(self, update: LaneUpdate) -> None:
        """The environment's lane: queued behind another change, our turn, or superseded
        (while our rollout runs there, it is passed on to the rollout)."""
        self.promotion.lanes.deliver(update)

    @workflow.signal(name=Signals.HOLD_UPDATE)
    def hold_update(self, update: HoldUpdate) -> None:
        """An environment's holds: which one stops the change there, or none any more."""
        self.promotion.holds.deliver(update)

    @workflow.update(name=Updates.ABORT)
    def abort(self, request: AbortInput) -> str:
        """Stop the change wherever it is; a running rollout closes its GitOps PR."""
        self.aborted = request
        if self.body is not None:
            self.body.cancel()
        return f"aborting {workflow.info().workflow_id}"

    @abort.validator
    def _check_abort(self, request: AbortInput) -> None:
        if not request.reason.strip():
            raise BadRequest("give a reason for the abort (--reason)")
        change = workflow.info().workflow_id
        if self.aborted is not None:
            by = self.aborted
            raise BadRequest(f"{change} is being aborted already, by {by.user}: {by.reason}")
        if self.state in TERMINAL_STATES:
            raise BadRequest(f"{change} is already {self.state}: nothing to abort")

    @workflow.update(name=Updates.RERUN)
    def rerun(self, user: str) -> str:
        """Validate the same head again: its checks could not run, and the cause is fixed."""
        self.pr.rerun_by = user
        return f"re-running the checks of {self.pr.head_sha[:12]}"

    @rerun.validator
    def _check_rerun(self, user: str) -> None:
        change = workflow.info().workflow_id
        if self.pr.rerun_by is not None:
            raise BadRequest(f"{change} is re-running its checks already, for {self.pr.rerun_by}")
        if self.state != "awaiting-merge":
            raise BadRequest(
                f"{change} is {self.state}: only a change waiting for its merge re-runs its checks"
            )

    @workflow.query(name=Queries.STATUS)
    def status(self) -> ChangeStatus:
        return ChangeStatus(
            id=workflow.info().workflow_id,
            app=self.input.plan.app.name,
            repo=self.input.repo,
            pr_number=self.input.pr_number,
            author=self.input.author,
            authors=self.promotion.authors,
            head_sha=self.pr.head_sha,
            merge_commit=self.pr.merge_commit,
            merged_at=self.pr.merged_at,
            state=self.state,
            gate=self.record.gate,
            timeline=self.record.timeline,
            artifact=self.result.artifact if self.result else None,
            reason=self.reason,
            rollouts=self.promotion.rollouts,
            current_rollout=self.promotion.current,
            running_rollouts=list(self.promotion.running),
            environments=[env.name for env in self.input.plan.environments],
            batch=self.input.batch,
            promotion=self.promotion.steps(),
        )

    # Orchestration

    @workflow.run
    async def run(self, input: ChangeInput) -> ChangeStatus:
        while True:
            self.body = asyncio.ensure_future(self._carry())
            try:
                await self.body
            except asyncio.CancelledError:
                if self.aborted is None:
                    raise
            if self.aborted is not None:
                # The abort may also surface as a cancelled child rather than as our own
                # cancellation. Nothing waits any more: no gate, no rollout under way.
                self.record.gate = None
                self.promotion.running.clear()
                self._set_state("aborted", f"aborted by {self.aborted.user}: {self.aborted.reason}")
            await self.comment.settle()
            if not self._reopened_while_closing():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    def _reopened_while_closing(self) -> bool:
        """Whether the PR was reopened after this run ended the change as closed (the signal of
        a signal-with-start reaches a run still ending: it cannot complete past it unseen)."""
        reopened = self.state == "closed" and not self.pr.closed and self.aborted is None
        return reopened and patched(REOPENED_WHILE_CLOSING)

    async def _carry(self) -> None:
        if self.input.artifact is not None:  # promote, retry: what CI built before
            self._take_artifact(self.input.artifact)
            await self._promote(self.input.artifact)
            return
        if self.input.trigger == "push":
            if not await self._take_push():
                return
        elif self.input.trigger == "batch":
            take_batch(self.input, self.pr, self.record)
        else:
            await self._validate_until_merged()
            if self.pr.closed:
                self._set_state("closed", self.pr.closed_because)
                return
            assert self.pr.merge_commit is not None
            if (why := batched(self.input, self.pr.merge_commit)) is not None:
                self._set_state("batched", why)
                return
            if patched(UNVALIDATED_MERGE) and not await self._merge_validated():
                return
            self.promotion.authors = await learn_authors(self.input, self.record)
        self.result = await self._integrate()
        if not self.result.passed or self.result.artifact is None:
            reason = f"CI failed: {self.result.summary()}"
            self._set_state("failed", reason)
            plan, commit = self.input.plan, self.pr.merge_commit or self.input.head_sha
            await notify_ci_failed(plan.notifications, self.record, plan.app.name, commit, reason)
            return
        self._set_state("integrated")
        await self._promote(self.result.artifact)

    async def _take_push(self) -> bool:
        """A commit pushed to the release branch is integrated as if merged now, unless the
        forge says a pull request merged as it: that PR's change carries it (the push and the
        merged deliveries arrive in either order, the forge's answer holds for both)."""
        sha = self.input.head_sha
        number = await workflow.execute_activity(
            merged_pull_request,
            CommitInput(repo=self.input.repo, sha=sha),
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=RETRY,
            summary=f"pull request merged as {sha[:12]}",
        )
        if number is not None:
            self._set_state(
                "superseded", f"{sha[:12]} is the merge of #{number}: its change carries it"
            )
            return False
        self.pr.merge_commit = sha
        self.pr.merged_at = workflow.now()
        pusher, writers = self.input.author, self.input.commit_authors
        branch = self.input.base_branch
        wrote = f", its commits by {', '.join(writers)}" if writers else ""
        if pusher == UNKNOWN_PUSHER:  # "unknown" is no one: not an author, not a name to show
            self.promotion.authors = list(writers)
            how = f"was found on {branch} without a pull request (no delivery named who pushed it)"
        else:
            self.promotion.authors = list(dict.fromkeys([pusher, *writers]))
            how = f"was pushed to {branch} by {pusher} without a pull request"
        self.record.note(f"{sha[:12]} {how}{wrote}")
        return True

    def _take_artifact(self, artifact: Artifact) -> None:
        """Deploy an artifact CI built before, as it is: a retry keeps the change's merge time
        (newer changes still supersede it), a deliberate promotion is the newest."""
        earlier = self.input.earlier
        self.pr.merge_commit = artifact.commit
        self.pr.merged_at = earlier.merged_at if earlier and earlier.merged_at else workflow.now()
        self.result = PipelineResult(passed=True, artifact=artifact)
        workflow.upsert_search_attributes([SearchAttributes.COMMIT.value_set(artifact.commit)])
        self.record.note(self.input.title)

    async def _promote(self, artifact: Artifact) -> None:
        """Roll the artifact out along the promotion graph (`workflows.promotion`)."""
        ending = await self.promotion.run(artifact, self.pr.merged_at or workflow.now())
        self._set_state(ending.state, ending.reason)

    async def _validate_until_merged(self) -> None:
        """Validate the current head; a new head cancels the running validation and starts over."""
        while self.pr.merge_commit is None and not self.pr.closed:
            await self._validate(self.pr.head_sha)

    async def _validate(self, sha: str) -> None:
        """Validate head `sha`, then wait until the PR moves on (a new head, merged, closed or
        reopened: every reopen validates again, as authors reopen to re-run the checks)."""
        reopens = self.pr.reopens
        self.validations += 1
        if self.pr.rerun_by is not None:
            self.record.note(f"{self.pr.rerun_by} re-runs the checks of {sha[:12]}")
            self.pr.rerun_by = None
        self._set_state("validating")
        stage, handle = await self._start_pipeline(
            PullRequestPipeline.run, f"validate {sha[:12]}", sha, f"pr-{self.validations}"
        )
        await workflow.wait_condition(lambda: handle.done() or self.pr.moved_on(sha, reopens))
        if not handle.done():
            news = self.pr.news(sha)
            handle.cancel()
            await workflow.wait([handle])
            self.record.end(stage, "superseded", f"{news} before validation finished")
            return
        result = await self._pipeline_result(handle, stage)
        self.validated[sha] = result.passed
        self._set_state("awaiting-merge", None if result.passed else result.summary())
        self.record.set_gate(
            Gate(
                kind="merge",
                description="waiting for the pull request to be merged"
                + _validation_says(workflow.info().workflow_id, result),
                waiting_on=["repository maintainers"],
            )
        )
        await workflow.wait_condition(lambda: self.pr.moved_on(sha, reopens))
        self.record.clear_gate()
        # The long tests started on this head (`AppConfig.long_tests_ahead`; results recorded
        # before it have none) serve CI of its merge only: a newer head or a close ends them.
        moved = self.pr.merge_commit is None and (self.pr.closed or self.pr.head_sha != sha)
        if result.long_tests and moved and await cancel_long_tests(result.long_tests):
            self.record.note(f"cancelled the long tests of {sha[:12]}: {self.pr.news(sha)}")

    async def _merge_validated(self) -> bool:
        """Whether the merged head passed validation; if not (it failed, or the merge came before
        it finished), `apps[].on_unvalidated_merge` decides: `validate` runs the PR pipeline on
        the merge commit first, `stop` fails the change with the reason."""
        passed = self.validated.get(self.pr.head_sha)
        if passed:
            return True
        assert self.pr.merge_commit is not None
        why = f"merged while the validation of {self.pr.head_sha[:12]} " + (
            "had failed" if passed is False else "had not finished"
        )
        if self.input.plan.app.on_unvalidated_merge == "stop":
            self._set_state("failed", f"{why}: stopped (apps[].on_unvalidated_merge: stop)")
            return False
        self._set_state("validating", why)
        self.record.note(f"{why}: validating the merge commit {self.pr.merge_commit[:12]} first")
        stage, handle = await self._start_pipeline(
            PullRequestPipeline.run,
            f"validate {self.pr.merge_commit[:12]}",
            self.pr.merge_commit,
            "merge",
        )
        result = await self._pipeline_result(handle, stage)
        if not result.passed:
            self._set_state("failed", f"{why}, and the merge commit failed it: {result.summary()}")
        return result.passed

    async def _integrate(self) -> PipelineResult:
        assert self.pr.merge_commit is not None
        self._set_state("integrating")
        workflow.upsert_search_attributes([SearchAttributes.COMMIT.value_set(self.pr.merge_commit)])
        stage, handle = await self._start_pipeline(
            CIPipeline.run, f"integrate {self.pr.merge_commit[:12]}", self.pr.merge_commit, "ci"
        )
        return await self._pipeline_result(handle, stage)

    async def _start_pipeline(
        self,
        run: Callable[[Any, PipelineInput], Awaitable[PipelineResult]],
        name: str,
        commit: str,
        suffix: str,
    ) -> tuple[Stage, workflow.ChildWorkflowHandle[Any, PipelineResult]]:
        child_id = pipeline_id(workflow.info().workflow_id, suffix)
        stage = self.record.begin(name, links={"pipeline": self.record.link(child_id)})
        handle = await workflow.start_child_workflow(
            run,
            PipelineInput(
                app=self.input.plan.app,
                repo=self.input.repo,
                commit=commit,
                pr_number=self.input.pr_number,
                status_url=self.record.link(workflow.info().workflow_id),
                outage_wait_s=self.input.plan.outage_wait_s,
            ),
            id=child_id,
            task_queue=TaskQueues.WORKFLOWS,
            static_summary=f"{name} of {_label(self.input)}",
        )
        return stage, handle

    async def _pipeline_result(
        self, handle: workflow.ChildWorkflowHandle[Any, PipelineResult], stage: Stage
    ) -> PipelineResult:
        try:
            result = await handle
        except ChildWorkflowError as err:
            self.record.end(stage, "failed", f"pipeline error: {failure(err)}")
            return PipelineResult(passed=False)
        stage.checks = result.checks
        self.record.end(stage, "succeeded" if result.passed else "failed", result.summary())
        return result

    def _set_state(self, state: ChangeState, reason: str | None = None) -> None:
        self.state = state
        self.reason = reason
        self.record.set_state(state, reason)
        metrics.change_state(self.input.plan.app.name, state)


def _label(input: ChangeInput) -> str:
    """How the change reads in titles: `app#<PR>`, or `app@<commit>` for a pushed commit."""
    if input.pr_number is None:
        return f"{input.plan.app.name}@{input.head_sha[:12]}"
    return f"{input.plan.app.name}#{input.pr_number}"


def _validation_says(change: str, result: PipelineResult) -> str:
    """What the author learns at the merge gate about the validation of their head."""
    if result.passed:
        return ""
    if result.errored:
        return (
            " (its checks could not run, an infrastructure error: once it is fixed, re-run them "
            f"with `baton changes rerun {change}`)"
        )
    return " (its checks failed: push a fix)"
