"""DORA metrics from change records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from baton.metrics import Rollout, compute, rollouts_of
from baton.models import ChangeState, ChangeStatus, RolloutResult, Stage, StageOutcome

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def rollout(
    outcome: str, ended: float, merged: float = 0, opened: float = -1, app: str = "web"
) -> Rollout:
    return Rollout(
        change_id=f"change/{app}/1",
        app=app,
        outcome=outcome,
        ended_at=hours(ended),
        merged_at=hours(merged),
        opened_at=hours(opened),
    )


def deploy(env: str, started: float, ended: float, outcome: StageOutcome = "succeeded") -> Stage:
    return Stage(
        name=f"deploy to {env}", started_at=hours(started), ended_at=hours(ended), outcome=outcome
    )


def change(
    number: int, state: ChangeState, timeline: list[Stage], rollouts: list[RolloutResult]
) -> ChangeStatus:
    """Alice's pull request `number` on web, merged at hour 1."""
    return ChangeStatus(
        id=f"change/web/{number}",
        app="web",
        repo="web",
        pr_number=number,
        author="alice",
        head_sha="a" * 40,
        state=state,
        merged_at=hours(1),
        timeline=timeline,
        rollouts=rollouts,
    )


def test_frequency_lead_time_failure_rate_and_restore() -> None:
    rollouts = [
        rollout("deployed", ended=2, merged=1),  # lead time 1 h
        rollout("failed", ended=10, merged=7),
        rollout("deployed", ended=13, merged=10),  # restores after 3 h; lead time 3 h
        rollout("rejected", ended=20),
        rollout("deployed", ended=30, merged=28),  # lead time 2 h
        rollout("deployed", ended=24 * 11),  # outside the 10-day window
    ]
    metrics = compute(rollouts, "prod", T0, T0 + timedelta(days=10))

    assert (metrics.deployments, metrics.deployments_per_day, metrics.failed) == (3, 0.3, 1)
    assert metrics.change_failure_rate == 0.25  # rejected counts as neither
    assert metrics.lead_time_from_merge.median_s == 2 * 3600
    assert metrics.lead_time_from_merge.p90_s == 3 * 3600
    assert metrics.time_to_restore.median_s == 3 * 3600 and metrics.time_to_restore.count == 1


def test_no_rollouts_has_no_rates() -> None:
    metrics = compute([], "prod", T0, T0 + timedelta(days=1))
    assert metrics.change_failure_rate is None and metrics.lead_time_from_merge.count == 0


def test_rollouts_of_a_change_come_from_its_timeline_and_results() -> None:
    deployed = change(
        2,
        "completed",
        [deploy("staging", 2, 3), deploy("prod", 3, 5)],
        [
            RolloutResult(environment="staging", outcome="deployed"),
            RolloutResult(environment="prod", outcome="deployed"),
        ],
    )
    assert rollouts_of(deployed, hours(0), "prod") == [
        Rollout(
            change_id="change/web/2",
            app="web",
            outcome="deployed",
            ended_at=hours(5),
            merged_at=hours(1),
            opened_at=hours(0),
        )
    ]
    superseded = deployed.model_copy(
        update={
            "timeline": deployed.timeline[:1],
            "rollouts": [
                *deployed.rollouts[:1],
                RolloutResult(environment="prod", outcome="superseded"),
            ],
        }
    )
    assert rollouts_of(superseded, hours(0), "prod") == []


def test_time_to_restore_is_per_app_from_its_first_failure() -> None:
    rollouts = [
        rollout("failed", ended=1, app="api"),
        rollout("failed", ended=2, app="api"),  # still broken: the same outage
        rollout("deployed", ended=3, app="web"),  # another app: restores nothing of api's
        rollout("deployed", ended=5, app="api"),
    ]
    metrics = compute(rollouts, "prod", T0, T0 + timedelta(days=1))
    assert metrics.time_to_restore.count == 1
    assert metrics.time_to_restore.median_s == 4 * 3600


def test_a_failure_before_the_merge_is_not_a_change_failure() -> None:
    failed_render = change(
        3,
        "failed",
        [deploy("prod", 2, 3, outcome="failed")],
        [RolloutResult(environment="prod", outcome="failed", reason="render failed")],
    )
    [failed] = rollouts_of(failed_render, hours(0), "prod")
    assert failed.outcome == "failed before the merge"
    metrics = compute([failed, rollout("deployed", ended=4)], "prod", T0, T0 + timedelta(days=1))
    assert (metrics.failed, metrics.change_failure_rate) == (0, 0.0)
