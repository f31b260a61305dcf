"""ChangeWorkflow: the whole life of one change, from its pull request to its last environment."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from urllib.parse import quote

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, CancelledError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.lane import join_lane
    from baton.config import EnvironmentConfig
    from baton.models import (
        TERMINAL_STATES,
        AbortInput,
        Artifact,
        ChangeInput,
        ChangeState,
        ChangeStatus,
        Gate,
        JoinLane,
        LaneRequest,
        LaneUpdate,
        PipelineInput,
        PipelineResult,
        PullRequestEvent,
        RolloutInput,
        RolloutResult,
        Stage,
        StageOutcome,
    )
    from baton.temporal import (
        Queries,
        SearchAttributes,
        Signals,
        TaskQueues,
        Updates,
        WorkflowTypes,
        lane_id,
        pipeline_id,
        rollout_id,
    )
    from workflows.lane import EnvironmentLane
    from workflows.pipelines import CIPipeline, PullRequestPipeline
    from workflows.rollout import EnvironmentRollout


@workflow.defn(name=WorkflowTypes.CHANGE)
class ChangeWorkflow:
    """Validates every head of the PR, waits for the merge, integrates the merge commit, then promotes."""

    @workflow.init
    def __init__(self, input: ChangeInput) -> None:
        self.input = input
        self.head_sha = input.head_sha
        self.merge_commit: str | None = None
        self.closed = False
        self.state: ChangeState = "validating"
        self.gate: Gate | None = None
        self.timeline: list[Stage] = []
        self.result: PipelineResult | None = None
        self.reason: str | None = None
        self.validations = 0
        self.rollouts: list[RolloutResult] = []
        self.current_rollout: str | None = None
        self.aborted: AbortInput | None = None
        self.body: asyncio.Future | None = None
        self.merged_at: datetime | None = None
        self.lane_updates: dict[str, LaneUpdate] = {}

    # Messages

    @workflow.signal(name=Signals.PULL_REQUEST_EVENT)
    def pull_request_event(self, event: PullRequestEvent) -> None:
        """Forge events from the API; redeliveries are harmless because each only sets state."""
        if event.action == "synchronize" and event.head_sha and self.merge_commit is None:
            self.head_sha = event.head_sha
        elif event.action == "merged" and event.merge_commit_sha:
            self.merge_commit = event.merge_commit_sha
            self.merged_at = self.merged_at or workflow.now()
        elif event.action == "closed" and self.merge_commit is None:
            self.closed = True

    @workflow.signal(name=Signals.LANE_UPDATE)
    def lane_update(self, update: LaneUpdate) -> None:
        """The environment's lane: queued behind another change, our turn, or superseded
        (while our rollout runs there, `_rollout` passes that on to it)."""
        self.lane_updates[update.environment] = update

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
            raise ApplicationError("give a reason for the abort (--reason)", type="BadRequest")
        if self.state in TERMINAL_STATES or self.aborted is not None:
            raise ApplicationError(
                f"{workflow.info().workflow_id} is already {self.state}: nothing to abort",
                type="BadRequest",
            )

    @workflow.query(name=Queries.STATUS)
    def status(self) -> ChangeStatus:
        return ChangeStatus(
            id=workflow.info().workflow_id,
            app=self.input.plan.app.name,
            repo=self.input.repo,
            pr_number=self.input.pr_number,
            author=self.input.author,
            head_sha=self.head_sha,
            merge_commit=self.merge_commit,
            merged_at=self.merged_at,
            state=self.state,
            gate=self.gate,
            timeline=self.timeline,
            artifact=self.result.artifact if self.result else None,
            reason=self.reason,
            rollouts=self.rollouts,
            current_rollout=self.current_rollout,
        )

    # Orchestration

    @workflow.run
    async def run(self, input: ChangeInput) -> ChangeStatus:
        self.body = asyncio.ensure_future(self._carry())
        try:
            await self.body
        except asyncio.CancelledError:
            if self.aborted is None:
                raise
        if self.aborted is not None:
            # The abort may also surface as a cancelled child rather than as our own cancellation.
            self._set_state("aborted", f"aborted by {self.aborted.user}: {self.aborted.reason}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _carry(self) -> None:
        await self._validate_until_merged()
        if self.closed:
            self._set_state("closed", "pull request closed without merging")
            return
        self.result = await self._integrate()
        if not self.result.passed or self.result.artifact is None:
            self._set_state("failed", f"CI failed: {self.result.summary()}")
            return
        self._set_state("integrated")
        await self._promote(self.result.artifact)

    async def _promote(self, artifact: Artifact) -> None:
        """Roll the artifact out to each environment in promotion order; a failure stops it."""
        plan = self.input.plan
        for env in plan.environments:
            self._set_state("promoting", f"{env.name}")
            workflow.upsert_search_attributes([SearchAttributes.ENVIRONMENT.value_set(env.name)])
            # Changes recorded before lanes existed replay without them.
            if workflow.patched("lanes"):
                result = await self._rollout_in_lane(env, artifact)
            else:
                result = await self._rollout(env, artifact)
            self.rollouts.append(result)
            self.current_rollout = None
            if result.outcome == "superseded":
                self._set_state("superseded", f"{env.name}: {result.reason}")
                return
            if result.outcome != "deployed":
                self._set_state("failed", f"{env.name}: {result.outcome}: {result.reason}")
                return
        self._set_state("completed", f"deployed to {', '.join(e.name for e in plan.environments)}")

    async def _rollout_in_lane(self, env: EnvironmentConfig, artifact: Artifact) -> RolloutResult:
        """Wait for the environment's lane to give this change its turn, roll out, release it."""
        app = self.input.plan.app.name
        lane = workflow.get_external_workflow_handle(lane_id(app, env.name))
        try:
            superseded_by = await self._take_turn(env, artifact)
            if superseded_by is not None:
                return RolloutResult(
                    environment=env.name,
                    outcome="superseded",
                    reason=f"superseded by {superseded_by}",
                )
            return await self._rollout(env, artifact)
        finally:
            try:
                await lane.signal(EnvironmentLane.release, workflow.info().workflow_id)
            except Exception:  # noqa: BLE001 - no lane (cancelled while joining): nothing held
                workflow.logger.warning("could not release %s", lane_id(app, env.name))

    async def _take_turn(self, env: EnvironmentConfig, artifact: Artifact) -> str | None:
        """Join the lane and wait until it grants the turn (None) or says who superseded us."""
        app = self.input.plan.app.name
        self.lane_updates.pop(env.name, None)
        request = LaneRequest(
            change_id=workflow.info().workflow_id,
            commit=artifact.commit,
            merged_at=self.merged_at or workflow.now(),
            policy=env.lane,
        )
        await workflow.execute_activity(
            join_lane,
            JoinLane(app=app, environment=env.name, policy=env.lane, request=request),
            task_queue=TaskQueues.WORKFLOWS,
            start_to_close_timeout=timedelta(seconds=30),
            summary=f"join lane {lane_id(app, env.name)}",
        )
        stage: Stage | None = None
        outcome: StageOutcome = "cancelled"
        detail = "stopped while waiting"
        try:
            while True:
                await workflow.wait_condition(lambda: env.name in self.lane_updates)
                update = self.lane_updates.pop(env.name)
                if update.kind != "queued":
                    break
                stage = stage or self._begin(f"turn in {env.name}")
                holder = update.holder or "the change ahead"
                self.gate = Gate(
                    kind="lane",
                    environment=env.name,
                    description=f"waiting for {holder} to finish in {env.name}",
                    waiting_on=[holder],
                )
                self._publish_details()
            superseded_by = update.by if update.kind == "superseded" else None
            outcome = "superseded" if superseded_by else "succeeded"
            detail = f"superseded by {superseded_by}" if superseded_by else "our turn"
            return superseded_by
        finally:
            self.gate = None
            if stage is not None:
                self._end(stage, outcome, detail)

    async def _rollout(self, env: EnvironmentConfig, artifact: Artifact) -> RolloutResult:
        app = self.input.plan.app.name
        child_id = rollout_id(app, env.name, artifact.commit)
        self.current_rollout = child_id
        stage = self._begin(f"deploy to {env.name}", links={"rollout": self._ui_link(child_id)})
        try:
            handle = await workflow.start_child_workflow(
                EnvironmentRollout.run,
                RolloutInput(
                    change_id=workflow.info().workflow_id,
                    app=self.input.plan.app,
                    environment=env,
                    artifact=artifact,
                    author=self.input.author,
                    ui_url=self.input.plan.ui_url,
                    namespace=self.input.plan.namespace,
                ),
                id=child_id,
                task_queue=TaskQueues.WORKFLOWS,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(SearchAttributes.APP, app),
                        SearchAttributePair(SearchAttributes.ENVIRONMENT, env.name),
                        SearchAttributePair(SearchAttributes.COMMIT, artifact.commit),
                    ]
                ),
                static_summary=f"{app} {artifact.commit[:12]} → {env.name}",
            )
            forward = asyncio.ensure_future(self._forward_supersedes(env, handle))
            try:
                # Awaiting the child itself: cancelling us (abort) cancels the rollout too.
                result: RolloutResult = await handle
            finally:
                forward.cancel()
        except ChildWorkflowError as err:
            cause = err.cause.message if err.cause else str(err)
            outcome = "aborted" if isinstance(err.cause, CancelledError) else "failed"
            result = RolloutResult(environment=env.name, outcome=outcome, reason=cause)
        if result.gitops_pr:
            stage.links["gitops pr"] = result.gitops_pr.url
        outcome = {"deployed": "succeeded", "superseded": "superseded"}.get(
            result.outcome, "failed"
        )
        self._end(stage, outcome, f"{result.outcome}: {result.reason}")
        return result

    async def _forward_supersedes(
        self, env: EnvironmentConfig, rollout: workflow.ChildWorkflowHandle
    ) -> None:
        """Pass the lane's supersedes on to our running rollout in `env`: it stops if it can."""
        while True:
            await workflow.wait_condition(lambda: self._superseded_in(env))
            update = self.lane_updates.pop(env.name)
            await rollout.signal(EnvironmentRollout.supersede, update.by or "a newer change")

    def _superseded_in(self, env: EnvironmentConfig) -> bool:
        update = self.lane_updates.get(env.name)
        return update is not None and update.kind == "superseded"

    async def _validate_until_merged(self) -> None:
        """Validate the current head; a new head cancels the running validation and starts over."""
        while self.merge_commit is None and not self.closed:
            sha = self.head_sha
            self.validations += 1
            self._set_state("validating")
            stage, handle = await self._start_pipeline(
                PullRequestPipeline.run, f"validate {sha[:12]}", sha, f"pr-{self.validations}"
            )
            await workflow.wait_condition(lambda h=handle, s=sha: h.done() or self._moved_on(s))
            if not handle.done():
                handle.cancel()
                await asyncio.wait([handle])
                reason = "merged" if self.merge_commit else "closed" if self.closed else "new head"
                self._end(stage, "superseded", f"{reason} before validation finished")
                continue
            result = await self._pipeline_result(handle, stage)
            self._set_state("awaiting-merge", None if result.passed else result.summary())
            self.gate = Gate(
                kind="merge",
                description="waiting for the pull request to be merged"
                + ("" if result.passed else " (its checks failed: push a fix)"),
                waiting_on=["repository maintainers"],
            )
            await workflow.wait_condition(lambda s=sha: self._moved_on(s))
            self.gate = None

    def _moved_on(self, sha: str) -> bool:
        return self.head_sha != sha or self.merge_commit is not None or self.closed

    async def _integrate(self) -> PipelineResult:
        assert self.merge_commit is not None
        self._set_state("integrating")
        workflow.upsert_search_attributes([SearchAttributes.COMMIT.value_set(self.merge_commit)])
        stage, handle = await self._start_pipeline(
            CIPipeline.run, f"integrate {self.merge_commit[:12]}", self.merge_commit, "ci"
        )
        return await self._pipeline_result(handle, stage)

    async def _start_pipeline(self, run, name: str, commit: str, suffix: str):
        child_id = pipeline_id(workflow.info().workflow_id, suffix)
        stage = self._begin(name, links={"pipeline": self._ui_link(child_id)})
        handle = await workflow.start_child_workflow(
            run,
            PipelineInput(
                app=self.input.plan.app,
                repo=self.input.repo,
                commit=commit,
                pr_number=self.input.pr_number,
                status_url=self._ui_link(workflow.info().workflow_id),
            ),
            id=child_id,
            task_queue=TaskQueues.WORKFLOWS,
            static_summary=f"{name} of {self.input.plan.app.name}#{self.input.pr_number}",
        )
        return stage, handle

    async def _pipeline_result(self, handle, stage: Stage) -> PipelineResult:
        try:
            result: PipelineResult = await handle
        except ChildWorkflowError as err:
            cause = err.cause.message if err.cause else str(err)
            result = PipelineResult(passed=False)
            self._end(stage, "failed", f"pipeline error: {cause}")
            return result
        stage.checks = result.checks
        self._end(stage, "succeeded" if result.passed else "failed", result.summary())
        return result

    # Record keeping

    def _begin(self, name: str, links: dict[str, str] | None = None) -> Stage:
        stage = Stage(name=name, started_at=workflow.now(), links=links or {})
        self.timeline.append(stage)
        self._publish_details()
        return stage

    def _end(self, stage: Stage, outcome: StageOutcome, detail: str = "") -> None:
        stage.ended_at = workflow.now()
        stage.outcome = outcome
        stage.detail = detail
        self._publish_details()

    def _set_state(self, state: ChangeState, reason: str | None = None) -> None:
        self.state = state
        self.reason = reason
        workflow.upsert_search_attributes([SearchAttributes.STAGE.value_set(state)])
        self._publish_details()

    def _publish_details(self) -> None:
        """The markdown the Temporal UI shows for this change: state, gate and timeline."""
        icon = {"running": "⏳", "succeeded": "✅", "failed": "❌"}
        app, pr, author = self.input.plan.app.name, self.input.pr_number, self.input.author
        lines = [f"**{app}#{pr}** by {author}: **{self.state}**"]
        if self.reason:
            lines.append(f"> {self.reason}")
        if self.gate:
            lines.append(f"Waiting: {self.gate.description}")
        lines.append("")
        lines += [f"- {icon.get(s.outcome, '⏭')} {s.name} {s.detail}" for s in self.timeline]
        workflow.set_current_details("\n".join(lines))

    def _ui_link(self, workflow_id: str) -> str:
        plan = self.input.plan
        return f"{plan.ui_url}/namespaces/{plan.namespace}/workflows/{quote(workflow_id, safe='')}"
