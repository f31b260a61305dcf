"""Forge activities: commit statuses, pull-request operations, the change's comment and GitHub
deployments, through the configured forge."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field
from temporalio import activity

from activities.context import current
from activities.errors import typed_errors
from activities.heartbeat import heartbeating
from baton import changes, policy, pr_comment
from baton.forges.base import Deployments, DeploymentState, StatusState


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


class AuthorsInput(BaseModel):
    repo: str
    pr_number: int
    author: str = Field(description="the forge login that opened the pull request")


@activity.defn
@typed_errors
async def change_authors(input: AuthorsInput) -> list[str]:
    """Who authored the change: the PR's author and its commits' authors, mapped to Baton users
    by `auth.users` (`policy.authors_of`)."""
    context = current()
    forge = context.forge
    commits = await asyncio.to_thread(forge.list_pull_request_commits, input.repo, input.pr_number)
    return policy.authors_of(input.author, commits, context.config.auth.users)


class ChangeCommentInput(BaseModel):
    change_id: str
    ui_url: str
    namespace: str = "default"


@activity.defn
@heartbeating
@typed_errors
async def update_change_comment(input: ChangeCommentInput) -> int | None:
    """Write the change's comment on its pull request from what its workflows published just
    now (`pr_comment.render`), editing the one already there (found by its marker) or posting
    it; its id. A pushed commit's change has no pull request: None."""
    detail = await changes.show(activity.client(), input.change_id)
    change = detail.change
    if change.pr_number is None:
        return None
    context = current()
    settings = context.settings
    board = settings.api_base or settings.api_url
    body = pr_comment.render(detail, input.ui_url, input.namespace, board_url=board)
    forge = context.forge
    return await asyncio.to_thread(
        forge.upsert_comment, change.repo, change.pr_number, pr_comment.marker(change.id), body
    )


class DeploymentInput(BaseModel):
    repo: str
    sha: str
    environment: str
    state: DeploymentState
    description: str = ""
    environment_url: str | None = None
    log_url: str | None = None


@activity.defn
@heartbeating
@typed_errors
async def report_deployment(input: DeploymentInput) -> int | None:
    """Show the app's commit deployed (or being deployed) to an environment on forges with
    deployments (GitHub); elsewhere nothing. The deployment's id."""
    forge = current().forge
    if not isinstance(forge, Deployments):
        return None
    return await asyncio.to_thread(
        forge.report_deployment,
        input.repo,
        input.sha,
        input.environment,
        input.state,
        description=input.description,
        environment_url=input.environment_url,
        log_url=input.log_url,
    )
