"""Promotion: a change's rollouts, environment by environment along its promotion graph.

The change workflow hands its artifact to `Promotion.run`: each environment whose predecessors
are all deployed starts at once (so the environments of a parallel stage roll out at the same
time, as child workflows started together), each in its lane (`workflows.lane_client`) once no
hold stops it (`workflows.hold_client`); a rollout that ends without deploying blocks what depends
on it and nothing else. The graph's rules are pure (`baton.promotion`). Changes recorded before
the graph (no `promotion-graph` marker) replay the former one-by-one sequence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import CancelledError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from baton.config import EnvironmentConfig
    from baton.models import (
        Artifact,
        ChangeInput,
        ChangeState,
        ChangeStatus,
        RolloutInput,
        RolloutOutcome,
        RolloutResult,
        StageOutcome,
    )
    from baton.promotion import (
        OUTCOME_POSITION,
        EnvironmentStep,
        Position,
        PromotionGraph,
        describe,
    )
    from baton.temporal import SearchAttributes, TaskQueues, rollout_id
    from workflows.rollout import EnvironmentRollout

from workflows.hold_client import HoldClient
from workflows.lane_client import LaneClient, LaneTurn
from workflows.patches import patched
from workflows.record import Record, failure
from workflows.telling import COMMENT_HANDOVER

PROMOTION_GRAPH = "promotion-graph"
"""Patch: environments roll out along the promotion graph (parallel stages), each after the holds
on it are lifted."""

# How a rollout's outcome reads in the change's timeline.
ROLLOUT_STAGE: dict[RolloutOutcome, StageOutcome] = {
    "deployed": "succeeded",
    "superseded": "superseded",
}


@dataclass
class Ending:
    """How the promotion ended: the change's state and why."""

    state: ChangeState
    reason: str


class Promotion:
    """Rolls one change's artifact out along its promotion graph (see the module's docstring).

    `set_state` is the change's own (state, reason) setter; `rollouts`, `running`, `current` and
    `steps()` are what its status shows.
    """

    def __init__(
        self,
        input: ChangeInput,
        record: Record,
        set_state: Callable[[ChangeState, str | None], None],
    ) -> None:
        self.input, self.record, self.set_state = input, record, set_state
        # The change's signal handlers hand lane and hold updates to these two.
        self.lanes = LaneClient(input.plan.app.name, record)
        self.holds = HoldClient(input.plan.app.name, record)
        plan = input.plan
        self.envs = {env.name: env for env in plan.environments}
        self.graph = PromotionGraph(plan.stages or [[env.name] for env in plan.environments])
        self.rollouts: list[RolloutResult] = []
        # The rollouts under way, in the order they started (a parallel stage runs several).
        self.running: list[str] = []
        self.positions: dict[str, Position] = {}
        self.details: dict[str, str] = {}
        self.tracked = False  # whether positions are kept (the graph's path)
        self.authors = [input.author]  # the PR's and, once merged, its commits' (`authors`)

    def resume(self, earlier: ChangeStatus, environment: str) -> None:
        """A retry of `environment`: where the change stood when it ended stays (deployed
        environments, other failures), `environment` and what it blocked start again."""
        self.rollouts = list(earlier.rollouts)
        self.authors = list(earlier.authors) or self.authors
        for result in earlier.rollouts:
            if result.environment in self.graph.stage_of and result.environment != environment:
                position = OUTCOME_POSITION.get(result.outcome, "failed")
                self.positions[result.environment] = position
                self.details[result.environment] = result.reason

    @property
    def current(self) -> str | None:
        """The first rollout under way: what `current_rollout` said before parallel stages."""
        return self.running[0] if self.running else None

    def steps(self) -> list[EnvironmentStep]:
        """The graph and where the change stands in it (empty for changes from before it)."""
        return self.graph.steps(self.positions, self.details) if self.tracked else []

    async def run(self, artifact: Artifact, merged_at: datetime) -> Ending:
        if patched(PROMOTION_GRAPH):
            return await self._along_graph(artifact, merged_at)
        return await self._in_sequence(artifact, merged_at)

    async def _in_sequence(self, artifact: Artifact, merged_at: datetime) -> Ending:
        """The former promotion, one environment after the other; a failure stops it."""
        for env in self.input.plan.environments:
            self.set_state("promoting", env.name)
            workflow.upsert_search_attributes([SearchAttributes.ENVIRONMENT.value_set(env.name)])
            # Changes recorded before lanes existed replay without them.
            if patched("lanes"):
                result = await self._rollout_in_lane(env, artifact, merged_at)
            else:
                result = await self._rollout(env, artifact)
            self.rollouts.append(result)
            if result.outcome == "superseded":
                return Ending("superseded", f"{env.name}: {result.reason}")
            if result.outcome != "deployed":
                return Ending("failed", f"{env.name}: {result.outcome}: {result.reason}")
        names = ", ".join(e.name for e in self.input.plan.environments)
        return Ending("completed", f"deployed to {names}")

    async def _along_graph(self, artifact: Artifact, merged_at: datetime) -> Ending:
        """Start every environment that may start, wait for one to end, and again, until none
        runs; cancelling it (abort) cancels every running rollout."""
        self.tracked = True
        running: dict[str, asyncio.Task[RolloutResult]] = {}
        try:
            while True:
                for name in self.graph.blocked(self.positions):
                    self._move(name, "blocked", "a predecessor did not deploy")
                for name in self.graph.ready(self.positions):
                    self._move(name, "running")
                    running[name] = asyncio.ensure_future(
                        self._environment(self.envs[name], artifact, merged_at)
                    )
                if not running:
                    break
                self.set_state("promoting", ", ".join(running))
                await workflow.wait(list(running.values()), return_when=asyncio.FIRST_COMPLETED)
                for name, task in list(running.items()):
                    if task.done():
                        del running[name]
                        result = task.result()
                        self.rollouts.append(result)
                        position = OUTCOME_POSITION.get(result.outcome, "failed")
                        self._move(name, position, result.reason)
        except asyncio.CancelledError:
            for name, task in running.items():
                task.cancel()
                self._move(name, "aborted")
            await workflow.wait(list(running.values()))
            raise
        return self._ending()

    async def _environment(
        self, env: EnvironmentConfig, artifact: Artifact, merged_at: datetime
    ) -> RolloutResult:
        """One environment of the graph: wait while it is on hold, then roll out in its lane."""
        if self.input.trigger != "promote":  # a deliberate promotion is no automatic one
            await self.holds.clear(env.name, on_hold=lambda why: self._move(env.name, "held", why))
        self._move(env.name, "running")
        workflow.upsert_search_attributes([SearchAttributes.ENVIRONMENT.value_set(env.name)])
        return await self._rollout_in_lane(env, artifact, merged_at)

    def _move(self, env: str, position: Position, detail: str = "") -> None:
        """`env` is at `position` now: shown in the status and the UI details."""
        self.positions[env] = position
        self.details[env] = detail
        self.record.fact("promotion", describe(self.steps()))

    def _ending(self) -> Ending:
        """The change's state once nothing runs: completed when every environment deployed,
        else failed (or superseded) naming each environment that did not, and what it blocked."""
        # The latest result per environment of the graph (a retry's replaces the one before).
        by_env = {r.environment: r for r in self.rollouts if r.environment in self.graph.stage_of}
        stopped = [r for r in by_env.values() if r.outcome != "deployed"]
        blocked = [env for env, pos in self.positions.items() if pos == "blocked"]
        if not stopped:
            return Ending("completed", f"deployed to {', '.join(self.graph.environments)}")
        reason = "; ".join(
            f"{r.environment}: {r.reason}"
            if r.outcome == "superseded"  # "superseded by <change>" says it already
            else f"{r.environment}: {r.outcome}: {r.reason}"
            for r in stopped
        )
        if blocked:
            reason += f" ({', '.join(blocked)} not started)"
        if all(r.outcome == "superseded" for r in stopped):
            return Ending("superseded", reason)
        return Ending("failed", reason)

    async def _rollout_in_lane(
        self, env: EnvironmentConfig, artifact: Artifact, merged_at: datetime
    ) -> RolloutResult:
        """Wait for the environment's lane to give this change its turn, roll out, release it."""
        async with self.lanes.turn(env, artifact.commit, merged_at) as turn:
            if turn.superseded_by is not None:
                return RolloutResult(
                    environment=env.name,
                    outcome="superseded",
                    reason=f"superseded by {turn.superseded_by}",
                )
            return await self._rollout(env, artifact, turn)

    async def _rollout(
        self, env: EnvironmentConfig, artifact: Artifact, turn: LaneTurn | None = None
    ) -> RolloutResult:
        """Roll the artifact out to `env` as a child workflow; with a lane `turn`, the lane's
        supersedes reach the rollout."""
        plan = self.input.plan
        app = plan.app.name
        child_id = rollout_id(app, env.name, artifact.commit)
        # Kept where the timeline changes too, so the status memo is upserted no more often.
        self.running.append(child_id)
        stage = self.record.begin(
            f"deploy to {env.name}", links={"rollout": self.record.link(child_id)}
        )
        try:
            handle = await workflow.start_child_workflow(
                EnvironmentRollout.run,
                RolloutInput(
                    change_id=workflow.info().workflow_id,
                    app=plan.app,
                    environment=env,
                    artifact=artifact,
                    author=self.input.author,
                    authors=self.authors,
                    ui_url=plan.ui_url,
                    namespace=plan.namespace,
                    notifications=plan.notifications,
                    pr_comment=self.record.on_news is not None,
                    deployments=plan.deployments,
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
            # Awaiting the child itself: cancelling us (abort) cancels the rollout too.
            result = await turn.follow(handle) if turn else await handle
        except ChildWorkflowError as err:
            outcome: RolloutOutcome = (
                "aborted" if isinstance(err.cause, CancelledError) else "failed"
            )
            result = RolloutResult(environment=env.name, outcome=outcome, reason=failure(err))
        self.running.remove(child_id)
        if result.gitops_pr:
            stage.links["gitops pr"] = result.gitops_pr.url
        self.record.end(
            stage,
            ROLLOUT_STAGE.get(result.outcome, "failed"),
            f"{result.outcome}: {result.reason}",
            # The rollout left its outcome for the change's comment to tell.
            news=self.record.on_news is not None and patched(COMMENT_HANDOVER),
        )
        return result
