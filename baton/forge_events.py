"""Forge events as Baton acts on them, whichever forge or path (a webhook delivery, or the
reconciler reading the forge) brought them: pull requests, pushes and reviews."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from baton.forges.base import PullRequest
from baton.models import CommitAuthor


class PullRequestHook(BaseModel):
    """A normalized pull-request event: what Baton needs, whichever forge sent it.

    `repo_id` is the forge's id of the repository (it survives renames), `default_branch` the
    repository's default branch and `base_changed` whether this event retargeted the PR (an
    `edited` action with the old base in `changes`), each when the delivery says so; `updated_at`
    is the PR's last update, which orders two deliveries that arrive the other way round.
    """

    action: str
    repo: str
    repo_id: str | None = None
    default_branch: str | None = None
    number: int
    title: str = ""
    body: str = ""
    author: str
    head_branch: str
    head_sha: str
    base_branch: str
    base_changed: bool = False
    merged: bool = False
    merge_commit_sha: str | None = None
    updated_at: datetime | None = None

    @classmethod
    def of(
        cls,
        pr: PullRequest,
        action: str,
        *,
        repo_id: str | None = None,
        default_branch: str | None = None,
    ) -> PullRequestHook:
        """The event `action` of `pr` as the forge's API reads it now (a merged one is `closed`
        with `merged`)."""
        same = pr.model_dump(include=set(cls.model_fields) - {"merged"})
        merged = pr.state == "merged"
        return cls(
            action=action, repo_id=repo_id, default_branch=default_branch, merged=merged, **same
        )


class PushHook(BaseModel):
    """A normalized `push` delivery: `ref` moved from `before` to `after` (`created`: it did not
    exist before, `deleted`: removed).

    `pusher` is the forge account that pushed, as the delivery names it (GitHub's `pusher.name`,
    Gitea's `pusher.login`, Azure DevOps' `pushedBy.uniqueName`, else the sender's login),
    `commits` who wrote the commits the push brought (their git authors, and the accounts the
    forge links to them), `title` the first line of the head commit's message, `default_branch`
    the repository's, when the delivery says.
    """

    repo: str
    repo_id: str | None = None
    default_branch: str | None = None
    ref: str
    before: str
    after: str
    created: bool = False
    deleted: bool = False
    pusher: str
    commits: list[CommitAuthor] = []
    title: str = ""


class ReviewHook(BaseModel):
    repo: str
    number: int
    body: str = ""
    reviewer: str
    state: str
    commit_id: str
    head_sha: str

    @classmethod
    def of(
        cls, pr: PullRequest | PullRequestHook, *, reviewer: str, state: str, commit_id: str
    ) -> ReviewHook:
        """`reviewer`'s review of `commit_id` on `pr`, which has the head it has now."""
        return cls(
            repo=pr.repo,
            number=pr.number,
            body=pr.body,
            reviewer=reviewer,
            state=state,
            commit_id=commit_id,
            head_sha=pr.head_sha,
        )
