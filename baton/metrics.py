"""Delivery metrics (DORA) from the exact timestamps the change workflows recorded.

For one environment (production, by default the last in the promotion order) over a period:

- deployment frequency: successful rollouts per day;
- lead time for changes: from the pull request's merge (and from its opening) to the rollout's
  end, median and 90th percentile;
- change failure rate: failed rollouts that reached the cluster (merged, then sync or
  verification failed, rolled back or not) over those plus deployed ones; rejected, aborted,
  superseded rollouts and those that failed before the merge deployed nothing and count as neither;
- time to restore: from the first of an app's failed rollouts to its next successful one, median.

The records are the results of finished ChangeWorkflows (their `ChangeStatus`), read from
Temporal without a worker.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio.client import Client

from baton.models import ChangeStatus, RolloutResult
from baton.temporal import WorkflowTypes


class Rollout(BaseModel):
    """One rollout of a change into the environment, as the change recorded it."""

    change_id: str
    app: str
    outcome: str
    ended_at: datetime
    merged_at: datetime | None
    opened_at: datetime | None


class Durations(BaseModel):
    count: int = 0
    median_s: float | None = None
    p90_s: float | None = None

    @classmethod
    def of(cls, values: list[timedelta]) -> Durations:
        seconds = sorted(v.total_seconds() for v in values)
        if not seconds:
            return cls()
        p90 = seconds[min(len(seconds) - 1, round(0.9 * (len(seconds) - 1)))]
        return cls(count=len(seconds), median_s=statistics.median(seconds), p90_s=p90)


class DoraMetrics(BaseModel):
    environment: str
    since: datetime
    until: datetime
    deployments: int
    deployments_per_day: float
    failed: int
    change_failure_rate: float | None
    lead_time_from_merge: Durations
    lead_time_from_pr: Durations
    time_to_restore: Durations


def rollouts_of(
    change: ChangeStatus, opened_at: datetime | None, environment: str
) -> list[Rollout]:
    """The change's rollouts into `environment`, with when each ended (from its timeline)."""
    # A change superseded while queued has a result but no rollout stage: superseded ones
    # deployed nothing and are left out on both sides.
    ends = [
        s.ended_at
        for s in change.timeline
        if s.name == f"deploy to {environment}" and s.ended_at and s.outcome != "superseded"
    ]
    results = [
        r for r in change.rollouts if r.environment == environment and r.outcome != "superseded"
    ]
    merged_at = change.merged_at or next(
        (s.started_at for s in change.timeline if s.name.startswith("integrate ")), None
    )
    return [
        Rollout(
            change_id=change.id,
            app=change.app,
            outcome=_outcome(result),
            ended_at=ended_at,
            merged_at=merged_at,
            opened_at=opened_at,
        )
        for ended_at, result in zip(ends, results, strict=False)
    ]


def _outcome(result: RolloutResult) -> str:
    """The rollout's outcome; a failure before the merge never reached the cluster."""
    if result.outcome == "failed" and result.revision is None and result.rollback is None:
        return "failed before the merge"
    return result.outcome


def compute(
    rollouts: list[Rollout], environment: str, since: datetime, until: datetime
) -> DoraMetrics:
    """The four metrics over the rollouts that ended in [since, until)."""
    window = sorted((r for r in rollouts if since <= r.ended_at < until), key=lambda r: r.ended_at)
    deployed = [r for r in window if r.outcome == "deployed"]
    failed = [r for r in window if r.outcome == "failed"]
    days = max((until - since).total_seconds() / 86400, 1e-9)
    restores = []
    for app in {r.app for r in failed}:
        broken_since = None  # the first of the app's failures since it last deployed
        for rollout in (r for r in window if r.app == app):
            if rollout.outcome == "failed" and broken_since is None:
                broken_since = rollout.ended_at
            elif rollout.outcome == "deployed" and broken_since is not None:
                restores.append(rollout.ended_at - broken_since)
                broken_since = None
    attempted = len(deployed) + len(failed)
    return DoraMetrics(
        environment=environment,
        since=since,
        until=until,
        deployments=len(deployed),
        deployments_per_day=round(len(deployed) / days, 3),
        failed=len(failed),
        change_failure_rate=round(len(failed) / attempted, 3) if attempted else None,
        lead_time_from_merge=Durations.of(
            [r.ended_at - r.merged_at for r in deployed if r.merged_at]
        ),
        lead_time_from_pr=Durations.of([r.ended_at - r.opened_at for r in deployed if r.opened_at]),
        time_to_restore=Durations.of(restores),
    )


async def collect(
    client: Client, environment: str, since: datetime, app: str | None = None
) -> list[Rollout]:
    """The rollouts into `environment` recorded by changes that closed since `since`."""
    query = (
        f"WorkflowType = '{WorkflowTypes.CHANGE}' AND ExecutionStatus = 'Completed' "
        f"AND CloseTime >= '{since.isoformat()}'"
    )
    if app:
        query += f" AND BatonApp = '{app}'"
    rollouts: list[Rollout] = []
    async for execution in client.list_workflows(query):
        handle = client.get_workflow_handle(
            execution.id, run_id=execution.run_id, result_type=ChangeStatus
        )
        change = await handle.result()
        rollouts += rollouts_of(change, execution.start_time, environment)
    return rollouts
