"""Azure DevOps (Azure Repos, REST api-version 7.1) behind the `Forge` protocol.

`forge.url` is the organization, e.g. https://dev.azure.com/acme; repositories are named
PROJECT/REPOSITORY. The PAT goes as Basic with an empty user name.

How Azure's model maps onto Baton's:
- a pull request is completed (merged) by PATCHing `status: completed` with
  `lastMergeSourceCommit` as the head lock; the merge commit is read back once it is completed;
- `forge.merge` is the completion's `mergeStrategy`: merge → noFastForward (also when unset: the
  pull request API does not say what the branch policies allow), squash → squash, rebase → rebase
  (Azure's "rebase and fast-forward"); Azure has no plain fast-forward, so the configuration
  refuses it;
- reviews are reviewer votes: 10 and 5 approve, -10 rejects, -5 (waiting for the author) is a
  comment. A vote carries no commit, so it is reported against the head read with it: turn on the
  branch policy "reset votes on new pushes" to keep stale approvals from counting;
- commit statuses are Azure commit statuses; Baton's context `genre/name` is Azure's context.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from baton.config import MergeMethod
from baton.forges.base import (
    BranchHead,
    BranchNotFound,
    Comment,
    CommitAuthor,
    CommitStatus,
    ForgeError,
    HeadChanged,
    NotMergeable,
    PullRequest,
    PullRequestNotFound,
    PullRequestState,
    Review,
    ReviewState,
    RevisionNotFound,
    StatusState,
    marked,
    upsert_marked,
)
from baton.forges.http import (
    ForgeUnavailable,
    HostedForge,
    RequestRejected,
    ResourceNotFound,
    clip_body,
    owner_and_name,
    parse_time,
)

API_VERSION = "7.1"
DESCRIPTION_LIMIT = 4000
COMMENT_LIMIT = 150_000
"""A pull request comment's longest content (Azure refuses longer ones)."""
ZERO_SHA = "0" * 40
COMMITS_PAGE = 100
"""Commits asked for per page of a comparison."""
_STATES: dict[str, PullRequestState] = {
    "active": "open",
    "completed": "merged",
    "abandoned": "closed",
}
_TO_AZURE: dict[StatusState, str] = {
    "pending": "pending",
    "success": "succeeded",
    "failure": "failed",
    "error": "error",
}
_FROM_AZURE: dict[str, StatusState] = {
    "notSet": "pending",
    "pending": "pending",
    "succeeded": "success",
    "notApplicable": "success",
    "failed": "failure",
    "partiallySucceeded": "failure",
    "error": "error",
}
_MERGE_FAILED = ("conflicts", "failure", "rejectedByPolicy")
MERGE_STRATEGIES: dict[MergeMethod, str] = {
    "merge": "noFastForward",
    "squash": "squash",
    "rebase": "rebase",
}
"""Baton's merge methods → Azure's GitPullRequestMergeStrategy (fast-forward has none)."""


def vote_state(vote: int) -> ReviewState | None:
    """A reviewer's vote as a review state; None for no vote."""
    if vote >= 5:
        return "approved"
    if vote <= -10:
        return "changes_requested"
    return "commented" if vote < 0 else None


class AzureDevOpsForge(HostedForge):
    name = "Azure DevOps"
    clone_user = "baton"
    clone_url_field = "remoteUrl"
    api_params = {"api-version": API_VERSION}

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        merge_method: MergeMethod | None = None,
        merge_wait_s: float = 30.0,
        **options: Any,
    ) -> None:
        """`merge_method` is `forge.merge` (None: noFastForward); `merge_wait_s` bounds the wait
        for a completion to produce its merge commit."""
        super().__init__(url, token, **options)
        self.url = url.rstrip("/")
        self.merge_strategy = MERGE_STRATEGIES[merge_method or "merge"]
        self.merge_wait_s = merge_wait_s

    def auth_headers(self, token: str | None) -> dict[str, str]:
        """The PAT as Basic with an empty user name."""
        headers = {"X-TFS-FedAuthRedirect": "Suppress"}  # a 401, not a sign-in page
        if token:
            basic = base64.b64encode(f":{token}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        return headers

    # Repositories

    def delete_branch(self, repo: str, branch: str) -> None:
        """Delete a branch (idempotent): a ref update from its current commit to zeros."""
        ref = f"refs/heads/{branch}"
        refs = self._call(repo, "GET", "/refs", params={"filter": f"heads/{branch}"})
        current = next((r["objectId"] for r in refs.get("value", []) if r["name"] == ref), None)
        if current is None:
            return
        update = [{"name": ref, "oldObjectId": current, "newObjectId": ZERO_SHA}]
        answer = self._call(repo, "POST", "/refs", json=update)
        for result in answer.get("value", []):
            if not result.get("success"):
                reason = result.get("customMessage") or result.get("updateStatus")
                raise ForgeError(f"cannot delete {branch!r} in {repo!r}: {reason}")

    def branch_head(self, repo: str, branch: str | None = None) -> BranchHead:
        """From `GET .../refs?filter=heads/<branch>` (a prefix filter: the exact name is picked);
        the default branch is the repository's `defaultBranch`."""
        name = branch or self._call(repo, "GET", "")["defaultBranch"].removeprefix("refs/heads/")
        ref = f"refs/heads/{name}"
        refs = self._call(repo, "GET", "/refs", params={"filter": f"heads/{name}"})
        sha = next((r["objectId"] for r in refs.get("value", []) if r["name"] == ref), None)
        if sha is None:
            raise BranchNotFound(repo, name)
        return BranchHead(name=name, sha=sha)

    # Pull requests

    def open_pull_requests(self, repo: str) -> list[PullRequest]:
        """The active pull requests (`searchCriteria.status=active`, up to `$top`), by number."""
        params = {"searchCriteria.status": "active", "$top": 1000}
        answer = self._call(repo, "GET", "/pullrequests", params=params)
        prs = [self._pull_request(repo, d) for d in answer.get("value", [])]
        return sorted(prs, key=lambda pr: pr.number)

    def find_pull_request(self, repo: str, head_branch: str) -> PullRequest | None:
        ref = f"refs/heads/{head_branch}"
        params = {"searchCriteria.sourceRefName": ref, "searchCriteria.status": "active"}
        answer = self._call(repo, "GET", "/pullrequests", params=params)
        for data in answer.get("value", []):
            if data.get("sourceRefName") == ref and data.get("status") == "active":
                return self._pull_request(repo, data)
        return None

    def open_pull_request(
        self, repo: str, head: str, base: str, title: str, body: str, author: str
    ) -> PullRequest:
        """Open a pull request, or return the one already active for `head` (idempotent)."""
        if (existing := self.find_pull_request(repo, head)) is not None:
            return existing
        request = {
            "sourceRefName": f"refs/heads/{head}",
            "targetRefName": f"refs/heads/{base}",
            "title": title,
            "description": clip_body(body, DESCRIPTION_LIMIT),
        }
        try:
            data = self._call(repo, "POST", "/pullrequests", json=request)
        except RequestRejected as exc:  # TF401179: one is active already for these branches
            if exc.status == 409 and (again := self.find_pull_request(repo, head)):
                return again
            raise
        return self._pull_request(repo, data)

    def get_pull_request(self, repo: str, number: int) -> PullRequest:
        return self._pull_request(repo, self._pr_data(repo, number))

    def merged_pull_request(self, repo: str, sha: str) -> int | None:
        """From `POST .../pullrequestquery` with a `lastMergeCommit` query: the completed pull
        request whose merge commit is `sha` (learn.microsoft.com: Pull Request Query - Get)."""
        request = {"queries": [{"type": "lastMergeCommit", "items": [sha]}]}
        answer = self._call(repo, "POST", "/pullrequestquery", json=request)
        for result in answer.get("results") or []:
            for data in result.get(sha) or []:
                if data.get("status") == "completed":
                    return int(data["pullRequestId"])
        return None

    def list_reviews(self, repo: str, number: int) -> list[Review]:
        """Each person's current vote, against the head read now (groups' roll-ups are left out)."""
        pr = self.get_pull_request(repo, number)
        answer = self._call(repo, "GET", f"/pullRequests/{number}/reviewers")
        reviews = []
        for reviewer in answer.get("value", []):
            state = vote_state(int(reviewer.get("vote") or 0))
            if state is None or reviewer.get("isContainer"):
                continue
            reviews.append(
                Review(
                    user=reviewer.get("uniqueName") or reviewer.get("displayName") or "",
                    state=state,
                    commit_id=pr.head_sha,
                    submitted_at=parse_time(None),
                )
            )
        return reviews

    def merge_pull_request(
        self, repo: str, number: int, head_sha: str, message: str | None = None
    ) -> str:
        """Complete the pull request if its head is still `head_sha`; return the merge commit."""
        data = self._mergeable(repo, number, head_sha)
        if data["status"] == "completed":
            return self._merge_commit(repo, number, data)
        request = {
            "status": "completed",
            "lastMergeSourceCommit": {"commitId": head_sha},
            "completionOptions": {
                "mergeStrategy": self.merge_strategy,
                "deleteSourceBranch": False,
                "mergeCommitMessage": message or f"Merged PR {number}: {data.get('title', '')}",
            },
        }
        try:
            data = self._call(repo, "PATCH", f"/pullrequests/{number}", json=request)
        except RequestRejected as exc:
            data = self._mergeable(repo, number, head_sha)
            if data["status"] != "completed":
                raise NotMergeable(repo, number, exc.detail) from None
        # Completion is asynchronous: wait (bounded) for the merge commit.
        waited = 0.0
        while data["status"] != "completed":
            if data.get("mergeStatus") in _MERGE_FAILED:
                raise NotMergeable(repo, number, f"merge status {data['mergeStatus']}")
            if waited >= self.merge_wait_s:
                raise ForgeUnavailable(
                    f"{self.name} is still completing {repo}#{number}: try again later"
                )
            self.api.sleep(1.0)
            waited += 1.0
            data = self._pr_data(repo, number)
        return self._merge_commit(repo, number, data)

    def close_pull_request(self, repo: str, number: int) -> None:
        """Abandon (idempotent; a completed pull request stays completed)."""
        if self._pr_data(repo, number)["status"] == "active":
            self._call(repo, "PATCH", f"/pullrequests/{number}", json={"status": "abandoned"})

    def comment(self, repo: str, number: int, body: str) -> None:
        thread = {
            "comments": [{"parentCommentId": 0, "content": body, "commentType": "text"}],
            "status": "active",
        }
        self._call(repo, "POST", f"/pullRequests/{number}/threads", json=thread)

    def upsert_comment(self, repo: str, number: int, marker: str, body: str) -> int:
        """Comments live in threads (learn.microsoft.com: Pull Request Threads - List, Comments -
        Update): the marked one is found in `GET .../pullRequests/{id}/threads` and edited with
        `PATCH .../threads/{threadId}/comments/{commentId}`, or a thread is created with it; the
        comment's id within its thread."""
        self._pr_data(repo, number)
        answer = self._call(repo, "GET", f"/pullRequests/{number}/threads")
        comments = (
            Comment(
                id=c["id"],
                thread=thread["id"],
                user=(c.get("author") or {}).get("uniqueName") or "",
                body=c.get("content") or "",
            )
            for thread in answer.get("value") or []
            if not thread.get("isDeleted")
            for c in thread.get("comments") or []
            if not c.get("isDeleted")
        )
        text = clip_body(marked(marker, body), COMMENT_LIMIT)

        def edit(comment: Comment, content: str) -> None:
            path = f"/pullRequests/{number}/threads/{comment.thread}/comments/{comment.id}"
            self._call(repo, "PATCH", path, json={"content": content})

        def create(content: str) -> int:
            thread = {
                "comments": [{"parentCommentId": 0, "content": content, "commentType": "text"}],
                "status": "active",
            }
            made = self._call(repo, "POST", f"/pullRequests/{number}/threads", json=thread)
            return int(made["comments"][0]["id"])

        return upsert_marked(comments, marker, text, edit, create)

    def list_pull_request_commits(self, repo: str, number: int) -> list[CommitAuthor]:
        """From `GET .../pullRequests/{id}/commits` (learn.microsoft.com: Pull Request Commits -
        Get Pull Request Commits), newest first and paged by `continuationToken` (answered in
        the `x-ms-continuationtoken` header); Azure links no account to a commit's email."""
        self._pr_data(repo, number)
        path = self._root(repo) + f"/pullRequests/{number}/commits"
        params: dict[str, Any] = {"$top": 100}
        commits: list[CommitAuthor] = []
        while True:
            response = self.api.request("GET", path, params=params)
            commits += map(_commit_author, response.json().get("value") or [])
            token = response.headers.get("x-ms-continuationtoken")
            if not token:
                return commits[::-1]
            params = {"$top": 100, "continuationToken": token}

    def compare_commits(self, repo: str, base: str, head: str) -> list[CommitAuthor]:
        """From `GET .../commits` with `searchCriteria.itemVersion` `head` and
        `searchCriteria.compareVersion` `base`, both of versionType commit (learn.microsoft.com:
        Commits - Get Commits): the commits of `head` not in `base`, newest first, paged by
        `searchCriteria.$skip` until a page is empty; a commit Azure cannot resolve (TF401175)
        is a 404."""
        criteria: dict[str, Any] = {
            "searchCriteria.itemVersion.version": head,
            "searchCriteria.itemVersion.versionType": "commit",
            "searchCriteria.compareVersion.version": base,
            "searchCriteria.compareVersion.versionType": "commit",
            "searchCriteria.$top": COMMITS_PAGE,
        }
        commits: list[CommitAuthor] = []
        while True:
            try:
                skip = {"searchCriteria.$skip": len(commits)}
                data = self._call(repo, "GET", "/commits", params=criteria | skip)
            except ResourceNotFound:
                raise RevisionNotFound(repo, base, head) from None
            page = data.get("value") or []
            if not page:  # a page may hold fewer than asked for: only an empty one is the end
                return commits[::-1]
            commits += map(_commit_author, page)

    def get_commit(self, repo: str, sha: str) -> CommitAuthor:
        """From `GET .../commits/{commitId}` (learn.microsoft.com: Commits - Get); 404 when
        Azure has no such commit."""
        try:
            return _commit_author(self._call(repo, "GET", f"/commits/{quote(sha, safe='')}"))
        except ResourceNotFound:
            raise RevisionNotFound(repo, sha) from None

    # Commit statuses

    def set_commit_status(
        self,
        repo: str,
        sha: str,
        context: str,
        state: StatusState,
        description: str,
        target_url: str | None = None,
    ) -> None:
        genre, _, name = context.rpartition("/")
        request: dict[str, Any] = {
            "state": _TO_AZURE[state],
            "description": description[:1000],
            "context": {"name": name, "genre": genre} if genre else {"name": name},
        }
        if target_url:
            request["targetUrl"] = target_url
        self._call(repo, "POST", f"/commits/{sha}/statuses", json=request)

    def list_commit_statuses(self, repo: str, sha: str) -> list[CommitStatus]:
        answer = self._call(repo, "GET", f"/commits/{sha}/statuses", params={"latestOnly": "true"})
        statuses = []
        for s in answer.get("value", []):
            context = s.get("context") or {}
            genre, name = context.get("genre"), context.get("name") or "default"
            statuses.append(
                CommitStatus(
                    sha=sha,
                    context=f"{genre}/{name}" if genre else name,
                    state=_FROM_AZURE.get(s.get("state"), "error"),
                    description=s.get("description") or "",
                    target_url=s.get("targetUrl") or None,
                    updated_at=parse_time(s.get("updatedDate") or s.get("creationDate")),
                )
            )
        return sorted(statuses, key=lambda s: s.context)

    # Internals

    def _pr_data(self, repo: str, number: int) -> dict[str, Any]:
        try:
            return self._call(repo, "GET", f"/pullrequests/{number}")
        except ResourceNotFound:
            raise PullRequestNotFound(repo, number) from None

    def _mergeable(self, repo: str, number: int, head_sha: str) -> dict[str, Any]:
        """The pull request's data, checked to be at `head_sha` and not abandoned."""
        data = self._pr_data(repo, number)
        head = (data.get("lastMergeSourceCommit") or {}).get("commitId") or ""
        if head != head_sha:
            raise HeadChanged(repo, number, head_sha, head)
        if data["status"] == "abandoned":
            raise NotMergeable(repo, number, "it is abandoned")
        return data

    def _merge_commit(self, repo: str, number: int, data: dict[str, Any]) -> str:
        commit = (data.get("lastMergeCommit") or {}).get("commitId")
        if not commit:
            raise NotMergeable(repo, number, "completed without a merge commit")
        return commit

    def _root(self, repo: str) -> str:
        project, name = owner_and_name(self.name, repo)
        return f"/{quote(project, safe='')}/_apis/git/repositories/{quote(name, safe='')}"

    def _pull_request(self, repo: str, data: dict[str, Any]) -> PullRequest:
        state = _STATES.get(data.get("status", ""), "open")
        project, name = owner_and_name(self.name, repo)
        number = data["pullRequestId"]
        return PullRequest(
            repo=repo,
            number=number,
            title=data.get("title") or "",
            body=data.get("description") or "",
            author=(data.get("createdBy") or {}).get("uniqueName") or "",
            head_branch=data["sourceRefName"].removeprefix("refs/heads/"),
            head_sha=(data.get("lastMergeSourceCommit") or {}).get("commitId") or "",
            base_branch=data["targetRefName"].removeprefix("refs/heads/"),
            state=state,
            merge_commit_sha=(data.get("lastMergeCommit") or {}).get("commitId")
            if state == "merged"
            else None,
            html_url=f"{self.url}/{quote(project)}/_git/{quote(name)}/pullrequest/{number}",
        )


def _commit_author(commit: dict[str, Any]) -> CommitAuthor:
    """A GitCommitRef's git author; Azure links no account to a commit's email."""
    author = commit.get("author") or {}
    return CommitAuthor(
        sha=commit["commitId"], name=author.get("name") or "", email=author.get("email") or ""
    )
