"""Forge activities: commit statuses and pull-request operations through the configured forge."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity

from activities.context import current
from activities.errors import typed_errors
from activities.heartbeat import heartbeating
from baton.forges.base import StatusState


class CommitStatusInput(BaseModel):
    repo: str
    sha: str
    context: str
    state: StatusState
    description: str
    target_url: str | None = None


@activity.defn
@heartbeating
@typed_errors
def set_commit_status(input: CommitStatusInput) -> None:
    """Report a pipeline's state on a commit; the forge keeps one status per context."""
    current().forge.set_commit_status(
        input.repo, input.sha, input.context, input.state, input.description, input.target_url
    )


class CommitInput(BaseModel):
    repo: str
    sha: str


@activity.defn
@heartbeating
@typed_errors
def merged_pull_request(input: CommitInput) -> int | None:
    """The pull request whose merge put `sha` on the release branch, if any (a push's change
    leaves such a commit to that pull request's change)."""
    return current().forge.merged_pull_request(input.repo, input.sha)
