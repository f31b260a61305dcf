"""Gitea and Forgejo (API v1) behind the `Forge` protocol.

`forge.url` is the API base, e.g. https://gitea.example.com/api/v1. The API mirrors GitHub's, so
this adapter is `GitHubForge` with the calls that differ: finding a pull request by head branch,
merging (an empty answer: the merge commit is read back from the pull request), deleting a
branch, and the review states' spelling.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from baton.forges.base import PullRequest, ReviewState
from baton.forges.github import GitHubForge
from baton.forges.http import ResourceNotFound


class GiteaForge(GitHubForge):
    name: ClassVar[str] = "Gitea"
    clone_user: ClassVar[str] = "baton"
    review_states: ClassVar[dict[str, ReviewState]] = {
        "APPROVED": "approved",
        "REQUEST_CHANGES": "changes_requested",
        "COMMENT": "commented",
    }

    def auth_headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"token {token}"} if token else {}

    def find_pull_request(self, repo: str, head_branch: str) -> PullRequest | None:
        """Gitea's list cannot filter by head, so the open pull requests are scanned."""
        path = self._root(repo) + "/pulls"
        for data in self.api.pages(path, {"state": "open", "limit": 50}):
            if data["head"]["ref"] == head_branch:
                return self._pull_request(repo, data)
        return None

    def delete_branch(self, repo: str, branch: str) -> None:
        try:
            self._call(repo, "DELETE", f"/branches/{quote(branch)}")
        except ResourceNotFound:
            pass

    def _merge(self, repo: str, number: int, head_sha: str, message: str | None) -> str | None:
        """The answer is empty: the caller reads `merge_commit_sha` back from the pull request."""
        request: dict[str, Any] = {"Do": "merge", "head_commit_id": head_sha}
        if message:
            title, _, rest = message.partition("\n")
            request |= {"MergeTitleField": title, "MergeMessageField": rest.strip()}
        self._call(repo, "POST", f"/pulls/{number}/merge", json=request)
        return None
