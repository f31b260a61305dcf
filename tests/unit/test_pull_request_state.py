"""A change's view of its pull request, event by event, without Temporal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from baton.models import PullRequestEvent
from workflows.pull_request import PullRequestState

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
A, B, M = "a" * 40, "b" * 40, "m" * 40


def pr() -> PullRequestState:
    return PullRequestState(head_sha=A, base_branch="main")


def test_a_new_head_moves_the_pr_on_from_the_one_validated() -> None:
    state = pr()
    state.apply(PullRequestEvent(action="synchronize", head_sha=B), T0)
    assert (state.head_sha, state.moved_on(A, 0), state.news(A)) == (B, True, "new head")
    assert not state.moved_on(B, 0)


def test_a_close_and_a_reopen_that_crossed_are_ordered_by_the_prs_update_time() -> None:
    state = pr()
    state.apply(PullRequestEvent(action="reopened", updated_at=T0 + timedelta(seconds=5)), T0)
    state.apply(PullRequestEvent(action="closed", updated_at=T0), T0)  # older: ignored
    assert (state.closed, state.reopens) == (False, 1)
    assert state.moved_on(A, 0) and state.news(A) == "reopened"


def test_retargeted_away_closes_with_the_branch_as_reason() -> None:
    state = pr()
    state.apply(PullRequestEvent(action="retargeted", base_branch="feature-x"), T0)
    assert state.closed and state.news(A) == "closed"
    assert state.closed_because == (
        "pull request retargeted to feature-x: only pull requests into main are carried"
    )


def test_once_merged_nothing_else_counts_and_the_first_merge_time_stays() -> None:
    state = pr()
    state.apply(PullRequestEvent(action="merged", merge_commit_sha=M), T0)
    state.apply(PullRequestEvent(action="closed"), T0 + timedelta(seconds=1))
    state.apply(PullRequestEvent(action="merged", merge_commit_sha=M), T0 + timedelta(seconds=2))
    assert (state.merge_commit, state.merged_at, state.closed) == (M, T0, False)
    assert state.news(A) == "merged"


def test_a_rerun_moves_the_pr_on_from_the_same_head() -> None:
    state = pr()
    state.rerun_by = "alice"
    assert state.moved_on(A, 0) and state.news(A) == "re-run"
