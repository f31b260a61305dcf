"""EnvironmentHolds: the holds on automatic promotion into one environment (`baton.holds`).

Operators place and lift holds through the API (updates `hold`, `unhold`, with update-with-start).
A change about to roll out into the environment signals `watch` (the `watch_holds` activity, a
signal-with-start) and is told by signal (`hold_update`) which hold stops it, if any; a change
stopped is told again when no hold covers its app any more. The workflow runs for as long as the
environment exists, continuing as new with its state when its history grows long; its status memo
lists the holds, so the API reads them without a worker.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from baton import holds as rules
    from baton.errors import BadRequest
    from baton.holds import Hold, HoldRequest, HoldState, HoldUpdate, HoldWatch, UnholdRequest
    from baton.temporal import Queries, Signals, Updates, WorkflowTypes

from workflows import record


@workflow.defn(name=WorkflowTypes.HOLDS)
class EnvironmentHolds:
    """Keeps an environment's holds and tells the changes they stop when they may go on (see the
    module's docstring)."""

    @workflow.init
    def __init__(self, state: HoldState) -> None:
        self.state = state
        self.joined: list[HoldWatch] = []  # watchers not answered yet
        self.changed = False  # a hold was placed or lifted since the last answers
        title = f"holds on automatic promotion into **{state.environment}**"
        self.record = record.Record(title, status=self.status)

    @workflow.update(name=Updates.HOLD)
    def hold(self, request: HoldRequest) -> Hold:
        """Place the hold (replacing one on the same app, or on every app)."""
        hold = Hold(
            environment=self.state.environment,
            app=request.app,
            reason=request.reason.strip(),
            by=request.by,
            at=workflow.now(),
        )
        self.state.holds = [h for h in self.state.holds if h.app != request.app] + [hold]
        self.changed = True
        return hold

    @hold.validator
    def _check_hold(self, request: HoldRequest) -> None:
        if not request.reason.strip():
            raise BadRequest(
                "give a reason for the hold (--reason): it is what waiting changes show"
            )

    @workflow.update(name=Updates.UNHOLD)
    def unhold(self, request: UnholdRequest) -> Hold:
        """Lift the hold; changes it stopped go on unless another hold covers them."""
        lifted = next(h for h in self.state.holds if h.app == request.app)
        self.state.holds.remove(lifted)
        self.changed = True
        return lifted

    @unhold.validator
    def _check_unhold(self, request: UnholdRequest) -> None:
        if not any(h.app == request.app for h in self.state.holds):
            raise BadRequest(rules.not_held(request, self.state.holds))

    @workflow.signal(name=Signals.WATCH)
    def watch(self, watch: HoldWatch) -> None:
        self.joined.append(watch)

    @workflow.query(name=Queries.STATUS)
    def status(self) -> HoldState:
        return self.state

    @workflow.run
    async def run(self, state: HoldState) -> None:
        self._show()
        rounds = 0
        while True:
            await workflow.wait_condition(lambda: bool(self.joined) or self.changed)
            await self._settle()
            self._show()
            rounds += 1
            long = rounds >= state.rounds_per_run or workflow.info().is_continue_as_new_suggested()
            if long and not self.joined and not self.changed:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self.state)

    async def _settle(self) -> None:
        """Answer new watchers, and tell stopped ones that no hold covers them any more."""
        self.changed = False
        joined, self.joined = self.joined, []
        for watch in joined:
            hold = rules.covering(self.state.holds, watch.app)
            if hold is not None:
                self.state.watching = [
                    w for w in self.state.watching if w.change_id != watch.change_id
                ] + [watch]
            await self._tell(watch, hold)
        for watch in list(self.state.watching):
            if rules.covering(self.state.holds, watch.app) is None:
                self.state.watching.remove(watch)
                await self._tell(watch, None)

    def _show(self) -> None:
        holds = self.state.holds
        text = "; ".join(f"{h.app or 'every app'}: {h.reason} (by {h.by})" for h in holds)
        waiting = ", ".join(w.change_id for w in self.state.watching) or "nobody"
        self.record.publish(f"on hold: {text or 'nothing'}; waiting: {waiting}")

    async def _tell(self, watch: HoldWatch, hold: Hold | None) -> None:
        """Signal a change; one that has ended waits for nothing any more."""
        try:
            await workflow.get_external_workflow_handle(watch.change_id).signal(
                Signals.HOLD_UPDATE, HoldUpdate(environment=self.state.environment, hold=hold)
            )
        except Exception:  # noqa: BLE001 - the SDK raises a plain error when the target is gone
            self.state.watching = [w for w in self.state.watching if w is not watch]
