"""Gitea and Forgejo (API v1) behind the `Forge` protocol.

`forge.url` is the API base, e.g. https://gitea.example.com/api/v1. The API mirrors GitHub's, so
this adapter is `GitHubRestForge` with the calls that differ: finding a pull request by head branch,
merging (an empty answer: the merge commit is read back from the pull request), deleting a
branch, and the review states' spelling.

Merge methods are Gitea's merge styles (`Do`: merge, squash, rebase, fast-forward-only since Gitea
1.21); without `forge.merge`, the repository's `default_merge_style` comes first, then the other
styles its settings allow (`allow_merge_commits`, `allow_squash_merge`, `allow_rebase`,
`allow_fast_forward_only_merge`); a style it forbids is answered 405 "<style> is not allowed an
allowed merge style for this repository".

Comparing two commits (`compare_commits`) is `GET /repos/{owner}/{repo}/compare/{base}...{head}`,
GitHub's shape: Gitea 1.22 added it for branches and tags only (go-gitea/gitea#31838), commits
are compared since Gitea 1.23 (go-gitea/gitea#32801); 1.22 answers a commit with 404, which
Baton takes as commits it cannot name (`RevisionNotFound`).
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from baton.config import MergeMethod
from baton.forges.base import PullRequest, ReviewState
from baton.forges.github import GitHubRestForge
from baton.forges.http import ResourceNotFound


class GiteaForge(GitHubRestForge):
    name: ClassVar[str] = "Gitea"
    clone_user: ClassVar[str] = "baton"
    review_states: ClassVar[dict[str, ReviewState]] = {
        "APPROVED": "approved",
        "REQUEST_CHANGES": "changes_requested",
        "COMMENT": "commented",
    }
    merge_styles: ClassVar[dict[MergeMethod, str]] = GitHubRestForge.merge_styles | {
        "fast-forward": "fast-forward-only"
    }
    allowed_fields: ClassVar[dict[MergeMethod, str]] = {
        "merge": "allow_merge_commits",
        "squash": "allow_squash_merge",
        "rebase": "allow_rebase",
        "fast-forward": "allow_fast_forward_only_merge",
    }
    method_refused: ClassVar[str] = "is not allowed an allowed merge style"
    page_size: ClassVar[dict[str, int]] = {"limit": 50}
    commit_path: ClassVar[str] = "git/commits"
    """`GET /repos/{owner}/{repo}/git/commits/{sha}`: Gitea's single commit (GitHub's shape)."""

    def auth_headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"token {token}"} if token else {}

    def open_params(self) -> dict[str, Any]:
        return {"state": "open", "limit": 50}

    def commit_sha(self, commit: dict[str, Any]) -> str:
        """Gitea's branch `commit` is a PayloadCommit: its `id`."""
        return str(commit["id"])

    def find_pull_request(self, repo: str, head_branch: str) -> PullRequest | None:
        """Gitea's list cannot filter by head, so the open pull requests are scanned."""
        path = self._root(repo) + "/pulls"
        for data in self.api.pages(path, self.open_params()):
            if data["head"]["ref"] == head_branch:
                return self._pull_request(repo, data)
        return None

    def merged_pull_request(self, repo: str, sha: str) -> int | None:
        """From `GET /repos/{owner}/{repo}/commits/{sha}/pull` (Gitea 1.19+): the pull request
        that merged as the commit, 404 when none did."""
        try:
            data = self._call(repo, "GET", f"/commits/{sha}/pull")
        except ResourceNotFound:
            return None
        merged = data.get("merged") and data.get("merge_commit_sha") == sha
        return int(data["number"]) if merged else None

    def delete_branch(self, repo: str, branch: str) -> None:
        try:
            self._call(repo, "DELETE", f"/branches/{quote(branch)}")
        except ResourceNotFound:
            pass

    def allowed_methods(self, repository: dict[str, Any]) -> list[MergeMethod]:
        """The repository's default merge style first, then the others it allows."""
        allowed = super().allowed_methods(repository)
        default = repository.get("default_merge_style")
        first = [m for m in allowed if self.merge_styles[m] == default]
        return first + [m for m in allowed if m not in first]

    def _merge(
        self, repo: str, number: int, head_sha: str, message: str | None, method: MergeMethod
    ) -> str | None:
        """The answer is empty: the caller reads `merge_commit_sha` back from the pull request."""
        request: dict[str, Any] = {"Do": self.merge_styles[method], "head_commit_id": head_sha}
        if message:
            title, _, rest = message.partition("\n")
            request |= {"MergeTitleField": title, "MergeMessageField": rest.strip()}
        self._call(repo, "POST", f"/pulls/{number}/merge", json=request)
        return None
