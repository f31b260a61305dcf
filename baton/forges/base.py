"""The `Forge` protocol every forge adapter implements, its models and its errors.

A forge hosts the application and GitOps repositories and their pull requests. Baton talks to it
only through this protocol, so GitHub, Azure Repos, Gitea and the embedded local forge are
interchangeable. Methods are synchronous and idempotent where the docstring says so, because
Temporal may run any activity more than once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from baton.errors import BatonError
from baton.models import CommitAuthor

PullRequestState = Literal["open", "closed", "merged"]
ReviewState = Literal["approved", "changes_requested", "commented"]
StatusState = Literal["pending", "success", "failure", "error"]


class PullRequest(BaseModel):
    """A pull request as Baton sees it; `merged` is a state of its own, unlike GitHub's API."""

    repo: str
    number: int
    title: str
    body: str
    author: str
    head_branch: str
    head_sha: str
    base_branch: str
    state: PullRequestState
    merge_commit_sha: str | None = None
    html_url: str


class BranchHead(BaseModel):
    """A branch and the commit it points at."""

    name: str
    sha: str


class Review(BaseModel):
    """One submitted review; `commit_id` is the head it approved, so stale approvals can be spotted."""

    user: str
    state: ReviewState
    commit_id: str
    submitted_at: datetime
    body: str = ""


class CommitStatus(BaseModel):
    """The latest status a context reported for a commit."""

    sha: str
    context: str
    state: StatusState
    description: str = ""
    target_url: str | None = None
    updated_at: datetime


class Comment(BaseModel):
    """A comment on a pull request; `thread` is Azure DevOps' thread holding it (others: None)."""

    id: int
    user: str
    body: str
    thread: int | None = None


DeploymentState = Literal["in_progress", "success", "failure", "inactive"]
"""GitHub's deployment status states Baton reports (docs.github.com/rest/deployments/statuses)."""


def marked(marker: str, body: str) -> str:
    """`body` ending with `marker` (a hidden HTML comment) as its own last paragraph."""
    return body if marker in body else f"{body.rstrip()}\n\n{marker}"


def upsert_marked(
    comments: Iterable[Comment],
    marker: str,
    body: str,
    edit: Callable[[Comment, str], None],
    create: Callable[[str], int],
) -> int:
    """The id of the first of `comments` carrying `marker`, edited to `body` when it differs, or
    of the comment `create` posts when none does. Finding it by its marker is what makes a
    repeat (a retried activity, a restarted worker) edit the one comment instead of adding one."""
    for comment in comments:
        if marker in comment.body:
            if comment.body.strip() != body.strip():
                edit(comment, body)
            return comment.id
    return create(body)


class ForgeError(BatonError):
    """A forge, or git on a repository it hosts, refused or could not do what was asked."""

    retryable = True


class ForgeRefusal(ForgeError):
    """What the `Forge` protocol refuses, alike on every forge: the pull request moved, cannot
    merge, or it (or its repository or branch) is gone. Asking again gets the same answer."""

    retryable = False


class RepositoryNotFound(ForgeRefusal):
    def __init__(self, repo: str) -> None:
        super().__init__(f"repository {repo!r} not found: check the name or create it first")
        self.repo = repo


class BranchNotFound(ForgeRefusal):
    def __init__(self, repo: str, branch: str) -> None:
        super().__init__(f"branch {branch!r} not found in {repo!r}: push it first")
        self.repo = repo
        self.branch = branch


class RevisionNotFound(ForgeRefusal):
    """A commit the forge does not have: never pushed, or force-pushed away and pruned."""

    def __init__(self, repo: str, *revisions: str) -> None:
        shown = " or ".join(r[:12] for r in revisions)
        super().__init__(
            f"commit {shown} not found in {repo!r}: never pushed, or force-pushed away"
        )
        self.repo = repo
        self.revisions = revisions


class PullRequestNotFound(ForgeRefusal):
    def __init__(self, repo: str, number: int) -> None:
        super().__init__(f"pull request {repo}#{number} not found: check the repository and number")
        self.repo = repo
        self.number = number


class PullRequestClosed(ForgeRefusal):
    """The pull request is closed or merged, and the operation needs an open one."""

    def __init__(self, repo: str, number: int, state: str) -> None:
        super().__init__(
            f"pull request {repo}#{number} is {state}: only open pull requests allow this"
        )
        self.repo = repo
        self.number = number
        self.state = state


class NoCommitsBetween(ForgeRefusal):
    """The head branch adds nothing to the base branch (GitHub refuses such a pull request too)."""

    def __init__(self, repo: str, base: str, head: str) -> None:
        super().__init__(
            f"no commits between {base!r} and {head!r} in {repo!r}: push a change to {head!r} first"
        )
        self.repo = repo
        self.base = base
        self.head = head


class HeadChanged(ForgeRefusal):
    """The head moved since the caller looked: merging now would merge unreviewed commits.

    When Baton moved it itself, rendering the manifests again on a newer base, `content_hash`
    and `sensitive` say what the new head holds (the rendered content's sha256 and why it is
    security-sensitive), for the approvals to be asked on that.
    """

    def __init__(
        self,
        repo: str,
        number: int,
        expected: str,
        actual: str,
        *,
        content_hash: str | None = None,
        sensitive: list[str] | None = None,
    ) -> None:
        super().__init__(
            f"head of {repo}#{number} is {actual[:12]}, not {expected[:12]}: "
            "re-read the pull request and its reviews before merging"
        )
        self.repo = repo
        self.number = number
        self.expected = expected
        self.actual = actual
        self.content_hash = content_hash
        self.sensitive = sensitive or []

    def details(self) -> dict[str, str]:
        details = {"expected": self.expected, "actual": self.actual}
        if self.content_hash is not None:
            details |= {"content_hash": self.content_hash, "sensitive": "\n".join(self.sensitive)}
        return details


class NotMergeable(ForgeRefusal):
    def __init__(self, repo: str, number: int, reason: str) -> None:
        super().__init__(f"pull request {repo}#{number} cannot be merged: {reason}")
        self.repo = repo
        self.number = number
        self.reason = reason


class MergeMethodRefused(NotMergeable):
    """The repository's settings do not allow the merge method(s) Baton may use."""

    def __init__(self, repo: str, number: int, detail: str) -> None:
        super().__init__(
            repo,
            number,
            f"{detail}; set forge.merge to a method the repository allows "
            "(merge, squash, rebase or fast-forward), or allow one in its settings",
        )


class RequiredChecksNotPassing(NotMergeable):
    """Branch protection: a required check of the head is not green (missing, pending or red)."""

    def __init__(self, repo: str, number: int, failing: dict[str, str], override: str) -> None:
        checks = ", ".join(f"{context} is {state}" for context, state in sorted(failing.items()))
        super().__init__(
            repo,
            number,
            f"required check(s) not green ({checks}); wait for them to pass or push a fix, "
            f"or override as an admin: {override}",
        )
        self.failing = failing


@runtime_checkable
class Forge(Protocol):
    """What Baton needs from a forge. `repo` is the forge's repository name ("app", "org/app")."""

    def clone_url(self, repo: str) -> str:
        """URL git can clone and push `repo` with."""
        ...

    def find_pull_request(self, repo: str, head_branch: str) -> PullRequest | None:
        """The open pull request whose head is `head_branch`, if any."""
        ...

    def open_pull_request(
        self, repo: str, head: str, base: str, title: str, body: str, author: str
    ) -> PullRequest:
        """Open a pull request, or return the one already open for `head` (idempotent)."""
        ...

    def get_pull_request(self, repo: str, number: int) -> PullRequest:
        """The pull request `number`; raises `PullRequestNotFound`."""
        ...

    def open_pull_requests(self, repo: str) -> list[PullRequest]:
        """Every open pull request of `repo`, by number (what the reconciler compares with the
        changes it runs, for the deliveries it may have missed)."""
        ...

    def branch_head(self, repo: str, branch: str | None = None) -> BranchHead:
        """The commit `branch` (None: the repository's default branch) points at; raises
        `BranchNotFound` or `RepositoryNotFound`."""
        ...

    def list_reviews(self, repo: str, number: int) -> list[Review]:
        """Every review of the pull request, oldest first."""
        ...

    def merged_pull_request(self, repo: str, sha: str) -> int | None:
        """The number of the pull request whose merge put commit `sha` on its base branch (the
        merge commit, the squashed or last rebased commit, the head of a fast-forward: the
        forge's `merge_commit_sha`), or None when no pull request merged as `sha` (a direct push).
        """
        ...

    def merge_pull_request(
        self, repo: str, number: int, head_sha: str, message: str | None = None
    ) -> str:
        """Merge if the head is still `head_sha`; return the commit the base branch then points
        at, as the forge reports it: the merge commit, the squashed commit, the last rebased commit,
        or the head itself for a fast-forward.

        Idempotent: an already merged pull request returns that commit. Raises `HeadChanged` when
        the head moved, `MergeMethodRefused` when the repository forbids the configured method,
        and `NotMergeable` on conflicts or a closed pull request.
        """
        ...

    def close_pull_request(self, repo: str, number: int) -> None:
        """Close without merging (idempotent; a merged pull request stays merged)."""
        ...

    def delete_branch(self, repo: str, branch: str) -> None:
        """Delete a branch (idempotent)."""
        ...

    def set_commit_status(
        self,
        repo: str,
        sha: str,
        context: str,
        state: StatusState,
        description: str,
        target_url: str | None = None,
    ) -> None:
        """Report a status for `sha`; it replaces the previous one of the same context."""
        ...

    def list_commit_statuses(self, repo: str, sha: str) -> list[CommitStatus]:
        """The latest status of each context for `sha`."""
        ...

    def comment(self, repo: str, number: int, body: str) -> None:
        """Add a comment to the pull request."""
        ...

    def upsert_comment(self, repo: str, number: int, marker: str, body: str) -> int:
        """Keep one comment carrying `marker` (a hidden HTML comment, e.g. `<!-- baton:... -->`)
        on the pull request: edit it in place to `body`, or post it when there is none yet; its
        id. Idempotent: running it again edits the same comment (`upsert_marked`)."""
        ...

    def list_pull_request_commits(self, repo: str, number: int) -> list[CommitAuthor]:
        """The pull request's commits, oldest first, with their authors (also once merged)."""
        ...

    def compare_commits(self, repo: str, base: str, head: str) -> list[CommitAuthor]:
        """The commits of `head` not in `base` (`git log base..head`), oldest first, with their
        authors (what a push from `base` to `head` brought); raises `RevisionNotFound` when the
        forge has not either commit."""
        ...

    def get_commit(self, repo: str, sha: str) -> CommitAuthor:
        """Commit `sha` with its author; raises `RevisionNotFound`."""
        ...


@runtime_checkable
class Deployments(Protocol):
    """A forge with a deployments API (GitHub's; Gitea, Azure Repos and the local forge have
    none): what an environment runs, shown on the commit and the pull request."""

    def report_deployment(
        self,
        repo: str,
        sha: str,
        environment: str,
        state: DeploymentState,
        *,
        description: str = "",
        environment_url: str | None = None,
        log_url: str | None = None,
    ) -> int:
        """Show `sha` deployed (or being deployed) to `environment`: one deployment per commit
        and environment, found again before one is created (idempotent), and a new status on
        it; the deployment's id."""
        ...
