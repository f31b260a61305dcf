"""What the board shows, read from what workflows publish: no worker needed.

The grid of apps × environments comes from the rollouts' search attributes (`BatonApp`,
`BatonEnvironment`, `BatonCommit`, `BatonOutcome`) and memos (`gate`, `status`); a rollout's
rendered diff is the result of its `render_environment` activity in its history; the DORA
figures are `baton.metrics` over the changes' recorded results, per day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from baton import freeze
from baton import metrics as dora
from baton.config import BatonConfig, EnvironmentConfig
from baton.models import Gate, Rendered, RolloutInput, RolloutStatus
from baton.temporal import MEMO_GATE, SearchAttributes, WorkflowTypes

RENDER_ACTIVITY = "render_environment"
ROLLOUT_SCAN = 500  # the newest rollouts the grid looks through


@dataclass
class Cell:
    """One app in one environment: what it serves, what is on its way, how the last try ended."""

    app: str
    environment: str
    serving: str | None = None  # the app commit verified there
    serving_change: str | None = None
    verified_at: datetime | None = None
    verified_detail: str = ""
    in_flight: str | None = None  # the running rollout's workflow id
    in_flight_change: str | None = None
    in_flight_commit: str | None = None
    gate: Gate | None = None
    gate_since: datetime | None = None
    last_outcome: str | None = None  # how the newest ended rollout ended, when not deployed
    last_reason: str = ""
    rolled_back: bool = False

    @property
    def state(self) -> str:
        """One word for the cell's colour and its screen-reader label."""
        if self.in_flight:
            return f"waiting-{self.gate.kind}" if self.gate else "rolling-out"
        if self.last_outcome == "failed":
            return "rolled-back" if self.rolled_back else "failed"
        if self.last_outcome:
            return self.last_outcome
        return "deployed" if self.serving else "empty"


@dataclass
class EnvironmentColumn:
    name: str
    freeze: freeze.Freeze | None
    approvals: str  # what the policy asks, in words


@dataclass
class Grid:
    environments: list[EnvironmentColumn]
    rows: dict[str, list[Cell]] = field(default_factory=dict)


def policy_words(env: EnvironmentConfig) -> str:
    approvals = env.approvals
    if not approvals.required:
        return "no approval"
    who = f" of {', '.join(approvals.approvers)}" if approvals.approvers else ""
    return f"{approvals.required} approval(s){who}"


def columns(config: BatonConfig, now: datetime) -> list[EnvironmentColumn]:
    """The environments in promotion order, each with its policy and the freeze in force."""
    return [
        EnvironmentColumn(e.name, freeze.active(e.freeze, now), policy_words(e))
        for e in config.promotion_order()
    ]


async def grid(client: Client, config: BatonConfig, now: datetime) -> Grid:
    """Every app in every environment, environments in promotion order."""
    envs = config.promotion_order()
    board = Grid(environments=columns(config, now))
    cells = {(app.name, env.name): Cell(app.name, env.name) for app in config.apps for env in envs}
    for app in config.apps:
        board.rows[app.name] = [cells[(app.name, env.name)] for env in envs]
    executions = [
        e
        async for e in client.list_workflows(
            f"WorkflowType = '{WorkflowTypes.ROLLOUT}'", limit=ROLLOUT_SCAN
        )
    ]
    executions.sort(key=lambda e: e.start_time, reverse=True)
    for execution in executions:
        attributes = execution.typed_search_attributes
        cell = cells.get(
            (
                attributes.get(SearchAttributes.APP) or "",
                attributes.get(SearchAttributes.ENVIRONMENT) or "",
            )
        )
        if cell is not None:
            await _fill(cell, execution)
    return board


async def _fill(cell: Cell, execution: WorkflowExecution) -> None:
    """Take what `execution` (a rollout of the cell, newest first) tells that newer ones did not."""
    attributes = execution.typed_search_attributes
    commit = attributes.get(SearchAttributes.COMMIT)
    change = _change_of(execution)
    if execution.status == WorkflowExecutionStatus.RUNNING:
        if cell.in_flight is None:
            cell.in_flight, cell.in_flight_change, cell.in_flight_commit = (
                execution.id,
                change,
                commit,
            )
            if MEMO_GATE in execution.raw_info.memo.fields:
                cell.gate = await execution.memo_value(MEMO_GATE, type_hint=Gate)
            cell.gate_since = execution.start_time
        return
    outcome = attributes.get(SearchAttributes.OUTCOME) or attributes.get(
        SearchAttributes.LEGACY_STAGE
    )
    if outcome == "superseded":
        return
    if cell.serving is None and cell.last_outcome is None and outcome != "deployed":
        ended = execution.status.name.lower() if execution.status else "unknown"
        cell.last_outcome = outcome or ended
        status = await _status(execution)
        if status is not None:
            cell.last_reason = status.detail
            cell.rolled_back = bool(status.rollback and status.rollback.outcome == "rolled back")
    if outcome == "deployed" and cell.serving is None:
        cell.serving, cell.serving_change, cell.verified_at = commit, change, execution.close_time
        status = await _status(execution)
        cell.verified_detail = status.detail if status else ""


async def _status(execution: WorkflowExecution) -> RolloutStatus | None:
    if "status" not in execution.raw_info.memo.fields:
        return None
    return await execution.memo_value("status", type_hint=RolloutStatus)


def _change_of(execution: WorkflowExecution) -> str | None:
    """The change a rollout belongs to: its parent workflow."""
    parent = execution.parent_id
    return parent if parent and parent.startswith("change/") else None


async def change_of(client: Client, rollout: str) -> str | None:
    """The change a rollout serves: its parent workflow, else the `change_id` it was started with
    (a rollout started on its own, as by an administrator)."""
    handle = client.get_workflow_handle(rollout)
    parent = (await handle.describe()).parent_id
    if parent:
        return parent
    async for event in handle.fetch_history_events():
        started = event.workflow_execution_started_event_attributes
        if started.input.payloads:
            (found,) = await client.data_converter.decode(
                list(started.input.payloads), [RolloutInput]
            )
            return found.change_id
        break
    return None


async def rendered(client: Client, rollout: str) -> Rendered | None:
    """What the rollout's render step returned (diff, sensitive reasons), from its history; None
    before it rendered."""
    scheduled: set[int] = set()
    async for event in client.get_workflow_handle(rollout).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name == RENDER_ACTIVITY:
                scheduled.add(event.event_id)
        elif event.HasField("activity_task_completed_event_attributes"):
            completed = event.activity_task_completed_event_attributes
            if completed.scheduled_event_id in scheduled and completed.result.payloads:
                (found,) = await client.data_converter.decode(
                    list(completed.result.payloads), [Rendered]
                )
                return found
    return None


@dataclass
class Series:
    """One environment's DORA figures over the period and per day (for the charts)."""

    environment: str
    app: str | None
    total: dora.DoraMetrics
    days: list[dora.DoraMetrics]


async def delivery(
    client: Client, config: BatonConfig, now: datetime, days: int, apps: Iterable[str | None]
) -> list[Series]:
    """DORA figures per app (None: all apps) and environment over the last `days` days; the
    changes are read once per environment."""
    since = now - timedelta(days=days)
    starts = [since + timedelta(days=d) for d in range(days)]
    envs = config.promotion_order()
    recorded = {env.name: await dora.collect(client, env.name, since) for env in envs}
    found = []
    for app in apps:
        for env in envs:
            rollouts = [r for r in recorded[env.name] if app is None or r.app == app]
            found.append(
                Series(
                    environment=env.name,
                    app=app,
                    total=dora.compute(rollouts, env.name, since, now),
                    days=[
                        dora.compute(rollouts, env.name, s, s + timedelta(days=1)) for s in starts
                    ],
                )
            )
    return found
