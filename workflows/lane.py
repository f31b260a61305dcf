"""EnvironmentLane: one rollout at a time per app and environment.

Changes join the lane when they reach the environment (`join_lane`, a signal-with-start) and are
told by signal when their turn comes. Under the `latest` policy a newer change (by merge time)
supersedes every older one still waiting: queued ones at once, and the holder if its GitOps PR is
not merged yet (its rollout closes the PR and deletes the branch). Under `sequential` every change
rolls out, in merge order. A holder that ends without releasing its turn (terminated, say) is
noticed within a minute. The lane runs for as long as the app and environment exist, continuing as
new with its state when its history grows long.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.lane import is_running
    from baton.models import LaneRequest, LaneState, LaneStatus, LaneUpdate
    from baton.temporal import Queries, Signals, TaskQueues, WorkflowTypes

from workflows.patches import patched
from workflows.record import Record
from workflows.retries import HOLDER_CHECK


@workflow.defn(name=WorkflowTypes.LANE)
class EnvironmentLane:
    """Grants one change at a time its turn in an app's environment (see the module's docstring)."""

    @workflow.init
    def __init__(self, state: LaneState) -> None:
        self.state = state
        self.record = Record(f"**{state.app}** → **{state.environment}**: one rollout at a time")
        self.joined: list[LaneRequest] = []
        self.released: list[str] = []
        self.released_count = 0

    @workflow.signal(name=Signals.JOIN)
    def join(self, request: LaneRequest) -> None:
        self.joined.append(request)

    @workflow.signal(name=Signals.RELEASE)
    def release(self, change_id: str) -> None:
        self.released.append(change_id)

    @workflow.query(name=Queries.STATUS)
    def status(self) -> LaneStatus:
        return LaneStatus(**self.state.model_dump(), released=self.released_count)

    @workflow.run
    async def run(self, state: LaneState) -> None:
        rounds = 0
        while True:
            changed = await self._next_event()
            if not changed and self.state.holder is not None:
                await self._check_holder()
            await self._settle()
            self._show()
            rounds += 1
            long = rounds >= state.rounds_per_run or workflow.info().is_continue_as_new_suggested()
            if long and not self._pending():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self.state)

    async def _next_event(self) -> bool:
        """Wait for a join or a release; with a holder, for at most `holder_check_s`. True if
        one came."""
        check = timedelta(seconds=self.state.holder_check_s)
        try:
            await workflow.wait_condition(
                self._pending, timeout=check if self.state.holder else None
            )
        except TimeoutError:
            return False
        return True

    def _show(self) -> None:
        """The lane in the Temporal UI: its policy, who holds the turn and who waits."""
        state = self.state
        holder = state.holder.change_id if state.holder else "nobody"
        waiting = ", ".join(r.change_id for r in state.queue) or "nobody"
        self.record.publish(f"policy {state.policy}; turn: {holder}; waiting: {waiting}")

    def _pending(self) -> bool:
        return bool(self.joined or self.released)

    async def _settle(self) -> None:
        """Apply joins and releases, supersede what the policy says, grant the next turn."""
        state = self.state
        for change_id in self.released:
            self.released_count += 1
            if state.holder and state.holder.change_id == change_id:
                state.holder = None
            state.queue = [r for r in state.queue if r.change_id != change_id]
        self.released = []
        joined, self.joined = self.joined, []
        for request in joined:
            known = [(r.change_id, r.run_id) for r in state.queue] + [
                (r.change_id, r.run_id) for r in (state.holder, state.newest) if r is not None
            ]
            if (request.change_id, request.run_id) in known:
                continue  # a retried join (a retried change is a new run: it joins again)
            state.policy = request.policy or state.policy  # the configuration may have changed
            state.queue.append(request)
        state.queue.sort(key=lambda r: r.merged_at)
        if state.policy == "latest":
            await self._supersede()
        granted = state.holder is None and bool(state.queue)
        if granted:
            state.holder = state.queue.pop(0)
            if state.newest is None or state.holder.merged_at >= state.newest.merged_at:
                state.newest = state.holder
            await self._tell(
                state.holder.change_id, LaneUpdate(environment=state.environment, kind="granted")
            )
        # Who waits is told who holds the lane now: when it joins, and after each new grant
        # (lanes recorded before that notice replay without it).
        again = granted and patched("queued-after-grant")
        for request in state.queue if again else [r for r in joined if r in state.queue]:
            if state.holder:
                await self._tell(
                    request.change_id,
                    LaneUpdate(
                        environment=state.environment, kind="queued", holder=state.holder.change_id
                    ),
                )

    async def _supersede(self) -> None:
        """Only the newest change may still roll out: older waiting ones are told to stop."""
        state = self.state
        candidates = [*state.queue, *(r for r in (state.holder, state.newest) if r is not None)]
        newest = max(candidates, key=lambda r: r.merged_at, default=None)
        if newest is None:
            return
        for request in [r for r in state.queue if r is not newest]:
            state.queue.remove(request)
            await self._tell(
                request.change_id,
                LaneUpdate(environment=state.environment, kind="superseded", by=newest.change_id),
            )
        holder = state.holder
        if holder and holder.merged_at < newest.merged_at and state.told_holder != holder.change_id:
            state.told_holder = holder.change_id
            await self._tell(
                holder.change_id,
                LaneUpdate(environment=state.environment, kind="superseded", by=newest.change_id),
            )

    async def _check_holder(self) -> None:
        """Release the turn of a holder that ended without releasing it."""
        holder = self.state.holder
        assert holder is not None
        try:
            running = await workflow.execute_activity(
                is_running,
                holder.change_id,
                task_queue=TaskQueues.WORKFLOWS,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=HOLDER_CHECK,
                summary=f"is {holder.change_id} still running?",
            )
        except ActivityError:
            return  # Temporal itself is unwell: ask again at the next check
        if not running:
            workflow.logger.warning("%s ended holding the lane: released", holder.change_id)
            self.released.append(holder.change_id)

    async def _tell(self, change_id: str, update: LaneUpdate) -> None:
        """Signal a change; one that has ended no longer waits for anything, so it is released."""
        try:
            await workflow.get_external_workflow_handle(change_id).signal(
                Signals.LANE_UPDATE, update
            )
        except Exception:  # noqa: BLE001 - the SDK raises a plain error when the target is gone
            self.released.append(change_id)
