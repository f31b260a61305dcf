"""HoldClient: a change's side of the holds protocol (see `workflows.hold`).

Before it rolls out into an environment, a change asks the environment's holds workflow (the
`watch_holds` activity, a signal-with-start) and waits for its answer by signal; while a hold
stops it, the hold is the change's gate (kind `hold`, with the reason and who placed it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.lane import watch_holds
    from baton.holds import Hold, HoldUpdate, HoldWatch
    from baton.models import Gate
    from baton.temporal import TaskQueues, holds_id

from workflows.record import Record
from workflows.retries import RETRY

WATCH: dict[str, Any] = {
    "task_queue": TaskQueues.WORKFLOWS,
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RETRY,
}
"""How the `watch_holds` activity runs: a signal-with-start, quick, retried while Temporal is down."""


class HoldClient:
    """Waits out the holds on one app's environments for the change workflow it lives in.

    The workflow's `hold_update` signal handler hands every update to `deliver`.
    """

    def __init__(self, app: str, record: Record) -> None:
        self.app = app
        self.record = record
        self.updates: dict[str, HoldUpdate] = {}  # per environment, the latest unread one

    def deliver(self, update: HoldUpdate) -> None:
        """An update from an environment's holds workflow, as signalled."""
        self.updates[update.environment] = update

    async def clear(self, environment: str, on_hold: Callable[[str], None]) -> None:
        """Return once no hold stops automatic promotion of the app into `environment`;
        `on_hold(reason)` is called each time a hold stops it."""
        self.updates.pop(environment, None)
        watch = HoldWatch(
            change_id=workflow.info().workflow_id, app=self.app, environment=environment
        )
        await workflow.execute_activity(
            watch_holds, watch, summary=f"holds on {holds_id(environment)}", **WATCH
        )
        hold = await self._answer(environment)
        if hold is None:
            return
        stage = self.record.begin(f"hold on {environment}")
        try:
            while hold is not None:
                on_hold(f"on hold by {hold.by}: {hold.reason}")
                self.record.set_gate(_gate(hold))
                hold = await self._answer(environment)
        except asyncio.CancelledError:
            self.record.clear_gate()
            self.record.end(stage, "cancelled", "stopped while on hold")
            raise
        self.record.clear_gate()
        self.record.end(stage, "succeeded", "hold lifted")

    async def _answer(self, environment: str) -> Hold | None:
        """The next answer of `environment`'s holds workflow: the hold that stops us, or None."""
        await workflow.wait_condition(lambda: environment in self.updates)
        return self.updates.pop(environment).hold


def _gate(hold: Hold) -> Gate:
    """A hold as the gate of the change it stops: the reason, who placed it, how to lift it."""
    lift = f"baton unhold {hold.environment}" + (f" --app {hold.app}" if hold.app else "")
    return Gate(
        kind="hold",
        environment=hold.environment,
        description=f"{hold.scope} is on hold by {hold.by}: {hold.reason} (`{lift}` lifts it)",
        waiting_on=[hold.by],
    )
