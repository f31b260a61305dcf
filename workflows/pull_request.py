"""What a change knows of its pull request: the head, the merge, closes, reopens and re-runs, as
the forge's events (and people's re-runs) tell it. Pure state, safe in workflow code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from baton.models import PullRequestEvent


@dataclass
class PullRequestState:
    head_sha: str
    base_branch: str
    merge_commit: str | None = None
    merged_at: datetime | None = None
    closed: bool = False
    closed_because: str = "pull request closed without merging"
    reopens: int = 0  # how often the PR was reopened (or retargeted back) while the change ran
    opened_or_closed_at: datetime | None = None  # the PR's update that last did either
    rerun_by: str | None = None  # who asked to validate the same head again

    def apply(self, event: PullRequestEvent, now: datetime) -> None:
        """Take one forge event; redeliveries are harmless because each only sets state.

        Once the merge is seen nothing else counts. Deliveries can cross: an older close or
        reopen does not undo a newer one (the PR's `updated_at` orders them).
        """
        if self.merge_commit is not None and event.action != "merged":
            return
        if event.action in ("closed", "reopened", "retargeted") and event.updated_at:
            if self.opened_or_closed_at and event.updated_at < self.opened_or_closed_at:
                return
            self.opened_or_closed_at = event.updated_at
        if event.action == "synchronize" and event.head_sha:
            self.head_sha = event.head_sha
        elif event.action == "merged" and event.merge_commit_sha:
            self.merge_commit = event.merge_commit_sha
            self.merged_at = self.merged_at or now
        elif event.action == "closed":
            self.closed = True
            self.closed_because = "pull request closed without merging"
        elif event.action == "retargeted":
            self.closed = True
            self.closed_because = (
                f"pull request retargeted to {event.base_branch}: "
                f"only pull requests into {self.base_branch} are carried"
            )
        elif event.action == "reopened":
            self.closed = False
            self.head_sha = event.head_sha or self.head_sha
            self.reopens += 1

    def news(self, sha: str) -> str:
        """What moved the PR on from head `sha`."""
        if self.merge_commit:
            return "merged"
        if self.closed:
            return "closed"
        if self.head_sha != sha:
            return "new head"
        return "re-run" if self.rerun_by is not None else "reopened"

    def moved_on(self, sha: str, reopens: int) -> bool:
        """Whether the PR moved on from head `sha` (validated when it had been reopened
        `reopens` times): a new head, merged, closed, reopened, or a re-run asked for."""
        return (
            self.head_sha != sha
            or self.merge_commit is not None
            or self.closed
            or self.reopens != reopens
            or self.rerun_by is not None
        )
