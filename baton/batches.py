"""Scheduled CI (`apps[].ci.schedule`): which commits on a release branch are not integrated yet.

A commit is integrated once the CI pipeline reported on it: it carries the `baton/ci` commit
status (pending from the pipeline's start, then its outcome). Every change that integrates sets
it, whether it came from a pull request, a push or an earlier batch, so it is the forge itself
that remembers where the last integration stopped, across Baton restarts and schedule changes.
"""

from __future__ import annotations

from collections.abc import Callable

from git import GitCommandError, Repo

from baton.forges.base import BranchNotFound, Forge
from baton.models import BatchCommit, ReleaseBatch
from baton.workspace import CheckoutError, Workspace

CI_CONTEXT = "baton/ci"
"""The commit status context of the CI pipeline: its presence marks a commit integrated."""
LONG_TESTS_CONTEXT = "baton/long-tests"
"""The commit status of the long tests a PR pipeline started on its head (`LongTests`)."""

HISTORY = 200
"""How many commits back (first parent) a batch looks for the last integrated one at most."""


def release_batch(
    forge: Forge,
    workspace: Workspace,
    repo: str,
    branch: str | None,
    batched: Callable[[str], bool] = lambda sha: False,
) -> ReleaseBatch | None:
    """The commits on `repo`'s `branch` (None: the repository's default branch) since the last
    integrated one, newest first, with the pull requests the forge says merged as any of them;
    None when the branch's head is integrated already. A commit `batched` says a batch was
    started for counts as integrated too (its CI may not have reported yet).

    Reads the branch from a fresh fetch of the repository's mirror (`Workspace.mirror`), then,
    commit by commit back along the first-parent history (each commit that landed on the
    branch: a direct push, a merge, squash or rebase merge), the commit statuses and the pull
    request merged as it (`Forge.list_commit_statuses`, `Forge.merged_pull_request`). Raises
    `BranchNotFound` when the branch does not exist.
    """
    url = forge.clone_url(repo)
    mirror = workspace.mirror(repo, url)
    branch = branch or _default_branch(mirror, repo, url)
    if branch is None:  # an empty repository
        return None
    try:
        head = mirror.git.rev_parse("--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
    except GitCommandError:
        raise BranchNotFound(repo, branch) from None
    log = mirror.git.log(
        "--first-parent", f"--max-count={HISTORY}", "--format=%H%x00%an%x00%s", head
    )
    commits: list[BatchCommit] = []
    since = None
    for line in log.splitlines():
        sha, author, title = line.split("\0", 2)
        statuses = forge.list_commit_statuses(repo, sha)
        if any(s.context == CI_CONTEXT for s in statuses) or batched(sha):
            since = sha
            break
        commits.append(BatchCommit(sha=sha, title=title, author=author))
    if not commits:
        return None
    merged = {forge.merged_pull_request(repo, commit.sha) for commit in commits}
    return ReleaseBatch(
        branch=branch,
        head=head,
        since=since,
        commits=commits,
        pull_requests=sorted(n for n in merged if n is not None),
    )


def _default_branch(mirror: Repo, repo: str, url: str) -> str | None:
    """The repository's default branch: where the remote's HEAD points (None: nowhere yet).
    Git's error would show the URL, which may carry the forge's token: it is not passed on."""
    try:
        answer = str(mirror.git.ls_remote("--symref", url, "HEAD"))
    except GitCommandError:
        raise CheckoutError(
            f"cannot read {repo}'s default branch: set apps[].branch to its release branch"
        ) from None
    for line in answer.splitlines():
        ref, _, name = line.partition("\t")
        if name == "HEAD" and ref.startswith("ref: refs/heads/"):
            return ref.removeprefix("ref: refs/heads/")
    return None
