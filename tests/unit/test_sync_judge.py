"""The exact-revision sync predicate (ARCHITECTURE.md, "Sync detection")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from baton.cluster.base import SyncStatus
from baton.sync import judge

MERGED_AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OLD, M, CHILD = "a" * 40, "b" * 40, "c" * 40
HISTORY = {OLD: 0, M: 1, CHILD: 2}  # a linear history: OLD -> M -> CHILD


def descends(sha: str) -> bool:
    return HISTORY.get(sha, -1) >= HISTORY[M]


def status(**fields) -> SyncStatus:
    base = {
        "last_applied_revision": M,
        "last_attempted_revision": M,
        "ready": True,
        "ready_reason": "ReconciliationSucceeded",
        "generation": 3,
        "observed_generation": 3,
        "observed_at": MERGED_AT + timedelta(seconds=5),
    }
    return SyncStatus(**(base | fields))


def test_ready_status_for_merge_commit_passes() -> None:
    assert judge(status(), M, MERGED_AT, descends).verdict == "synced"


def test_status_from_before_the_merge_never_passes_even_ready() -> None:
    stale = status(observed_at=MERGED_AT - timedelta(seconds=1))
    assert judge(stale, M, MERGED_AT, descends).verdict == "waiting"


def test_older_revision_waits_and_descendant_passes() -> None:
    assert judge(status(last_applied_revision=OLD), M, MERGED_AT, descends).verdict == "waiting"
    result = judge(status(last_applied_revision=CHILD), M, MERGED_AT, descends)
    assert (result.verdict, result.revision) == ("synced", CHILD)


def test_unobserved_generation_waits() -> None:
    assert judge(status(observed_generation=2), M, MERGED_AT, descends).verdict == "waiting"


def test_failed_attempt_on_merge_commit_fails_with_flux_reason() -> None:
    failed = status(
        last_applied_revision=OLD,
        ready=False,
        ready_reason="HealthCheckFailed",
        ready_message="timeout waiting for Deployment/sample-app",
    )
    result = judge(failed, M, MERGED_AT, descends)
    assert result.verdict == "failed"
    assert result.reason == "HealthCheckFailed: timeout waiting for Deployment/sample-app"


def test_failure_of_an_older_revision_is_not_ours() -> None:
    old_failure = status(last_applied_revision=OLD, last_attempted_revision=OLD, ready=False)
    assert judge(old_failure, M, MERGED_AT, descends).verdict == "waiting"


def test_stalled_fails() -> None:
    assert judge(status(stalled=True), M, MERGED_AT, descends).verdict == "failed"
