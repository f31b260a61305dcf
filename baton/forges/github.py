"""GitHub (REST v3, github.com or Enterprise Server) behind the `Forge` protocol.

`forge.url` is the API base: https://api.github.com, or https://HOST/api/v3 for Enterprise Server.
Repositories are named OWNER/NAME. Pull requests and comments are made as the token's user, so the
`author` Baton passes is not used here.

Merging uses the API's `merge_method` (merge, squash, rebase); `fast-forward`, which that API does not
offer, moves the base branch's ref to the head (`PATCH /git/refs`, refused unless it is a fast
forward), after which GitHub marks the pull request merged. Without `forge.merge`, the methods the
repository allows (`allow_merge_commit`, `allow_squash_merge`, `allow_rebase_merge` of its
repository object) are tried in that order, moving on when GitHub answers 405 "... are not allowed
on this repository" (https://docs.github.com/rest/pulls/pulls#merge-a-pull-request). Gitea's API mirrors this one; `GiteaForge` overrides the few
calls that differ.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from baton.config import MergeMethod
from baton.forges.base import (
    BranchHead,
    BranchNotFound,
    Comment,
    CommitAuthor,
    CommitStatus,
    DeploymentState,
    ForgeError,
    HeadChanged,
    MergeMethodRefused,
    NotMergeable,
    PullRequest,
    PullRequestNotFound,
    PullRequestState,
    RepositoryNotFound,
    Review,
    ReviewState,
    RevisionNotFound,
    StatusState,
    marked,
    upsert_marked,
)
from baton.forges.http import (
    HostedForge,
    RequestRejected,
    ResourceNotFound,
    clip_body,
    owner_and_name,
    parse_time,
)

_STATUS_STATES: dict[str, StatusState] = {
    "pending": "pending",
    "success": "success",
    "failure": "failure",
    "error": "error",
}


class GitHubRestForge(HostedForge):
    """A GitHub-shaped REST API (GitHub's, and Gitea's, which mirrors it); class attributes hold
    what Gitea spells differently."""

    name: ClassVar[str] = "GitHub"
    body_limit: ClassVar[int] = 65_536
    clone_user: ClassVar[str] = "x-access-token"
    clone_url_field: ClassVar[str] = "clone_url"
    review_states: ClassVar[dict[str, ReviewState]] = {
        "APPROVED": "approved",
        "CHANGES_REQUESTED": "changes_requested",
        "COMMENTED": "commented",
    }
    merge_styles: ClassVar[dict[MergeMethod, str]] = {
        "merge": "merge",
        "squash": "squash",
        "rebase": "rebase",
    }
    """Baton's merge methods → the API's own value, for those the merge endpoint offers."""
    allowed_fields: ClassVar[dict[MergeMethod, str]] = {
        "merge": "allow_merge_commit",
        "squash": "allow_squash_merge",
        "rebase": "allow_rebase_merge",
    }
    """The repository object's field that says whether a method is allowed, in preference order."""
    method_refused: ClassVar[str] = "not allowed on this repository"
    """What the 405 answer to a merge method the repository forbids says."""
    page_size: ClassVar[dict[str, int]] = {"per_page": 100}
    """The list endpoints' page size parameter, at its largest."""
    commit_path: ClassVar[str] = "commits"
    """Where a single commit is read, under the repository (docs.github.com/rest/commits/
    commits#get-a-commit)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        merge_method: MergeMethod | None = None,
        **options: Any,
    ) -> None:
        """`merge_method` is `forge.merge`; None: what the repository allows."""
        super().__init__(url, token, **options)
        self.merge_method = merge_method

    def auth_headers(self, token: str | None) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        return headers | ({"Authorization": f"Bearer {token}"} if token else {})

    # Repositories

    def delete_branch(self, repo: str, branch: str) -> None:
        """Delete a branch (idempotent: a missing branch is fine)."""
        try:
            self._call(repo, "DELETE", f"/git/refs/heads/{quote(branch)}")
        except ResourceNotFound:
            pass
        except RequestRejected as exc:  # 422 "Reference does not exist"
            if exc.status != 422:
                raise

    def branch_head(self, repo: str, branch: str | None = None) -> BranchHead:
        """`GET /repos/{owner}/{repo}/branches/{branch}` (docs.github.com/en/rest/branches):
        its `commit`; the default branch is the repository object's `default_branch`."""
        name = branch or self._call(repo, "GET", "")["default_branch"]
        try:
            data = self._call(repo, "GET", f"/branches/{quote(name, safe='')}")
        except ResourceNotFound:
            raise BranchNotFound(repo, name) from None
        return BranchHead(name=name, sha=self.commit_sha(data["commit"]))

    def commit_sha(self, commit: dict[str, Any]) -> str:
        """The id of a branch's commit object (GitHub: `sha`)."""
        return str(commit["sha"])

    # Pull requests

    def open_pull_requests(self, repo: str) -> list[PullRequest]:
        """`GET /repos/{owner}/{repo}/pulls?state=open`, every page, by number."""
        path = self._root(repo) + "/pulls"
        try:
            prs = [self._pull_request(repo, d) for d in self.api.pages(path, self.open_params())]
        except ResourceNotFound:
            raise RepositoryNotFound(repo) from None
        return sorted(prs, key=lambda pr: pr.number)

    def open_params(self) -> dict[str, Any]:
        """The list endpoint's query for open pull requests, with this forge's page size."""
        return {"state": "open", "per_page": 100}

    def find_pull_request(self, repo: str, head_branch: str) -> PullRequest | None:
        owner, _ = owner_and_name(self.name, repo)
        params = {"state": "open", "head": f"{owner}:{head_branch}", "per_page": 100}
        for data in self.api.pages(self._root(repo) + "/pulls", params):
            if data["head"]["ref"] == head_branch:
                return self._pull_request(repo, data)
        return None

    def open_pull_request(
        self, repo: str, head: str, base: str, title: str, body: str, author: str
    ) -> PullRequest:
        """Open a pull request, or return the one already open for `head` (idempotent)."""
        if (existing := self.find_pull_request(repo, head)) is not None:
            return existing
        request = {"title": title, "head": head, "base": base, "body": self._body(body)}
        try:
            data = self._call(repo, "POST", "/pulls", json=request)
        except RequestRejected as exc:
            # Opened concurrently (or by an earlier attempt whose answer was lost).
            if exc.status in (409, 422) and (again := self.find_pull_request(repo, head)):
                return again
            raise
        return self._pull_request(repo, data)

    def get_pull_request(self, repo: str, number: int) -> PullRequest:
        try:
            data = self._call(repo, "GET", f"/pulls/{number}")
        except ResourceNotFound:
            raise PullRequestNotFound(repo, number) from None
        return self._pull_request(repo, data)

    def merged_pull_request(self, repo: str, sha: str) -> int | None:
        """From `GET /repos/{owner}/{repo}/commits/{sha}/pulls`, the pull requests GitHub
        associates with the commit (docs.github.com/en/rest/commits/commits)."""
        for data in self.api.pages(self._root(repo) + f"/commits/{sha}/pulls", {"per_page": 100}):
            if data.get("merged_at") and data.get("merge_commit_sha") == sha:
                return int(data["number"])
        return None

    def list_reviews(self, repo: str, number: int) -> list[Review]:
        """Submitted reviews, oldest first; dismissed and pending ones are left out."""
        self.get_pull_request(repo, number)
        path = self._root(repo) + f"/pulls/{number}/reviews"
        reviews = []
        for data in self.api.pages(path, {"per_page": 100}):
            state = self.review_states.get(str(data.get("state")).upper())
            if state is None or data.get("dismissed") is True:
                continue
            reviews.append(
                Review(
                    user=data["user"]["login"],
                    state=state,
                    commit_id=data.get("commit_id") or "",
                    submitted_at=parse_time(data.get("submitted_at")),
                    body=data.get("body") or "",
                )
            )
        return reviews

    def merge_pull_request(
        self, repo: str, number: int, head_sha: str, message: str | None = None
    ) -> str:
        """Merge if the head is still `head_sha`; return the new base commit GitHub reports
        (idempotent). Raises `MergeMethodRefused` when no method Baton may use is allowed."""
        pr = self._mergeable(repo, number, head_sha)
        if pr.state == "merged":
            assert pr.merge_commit_sha is not None
            return pr.merge_commit_sha
        refusals = []
        merged: str | None
        for method in self._merge_methods(repo):
            try:
                if method == "fast-forward" and method not in self.merge_styles:
                    merged = self._fast_forward(repo, pr, head_sha)
                else:
                    merged = self._merge(repo, number, head_sha, message, method)
                break
            except RequestRejected as exc:
                if exc.status == 405 and self.method_refused in exc.detail:
                    refusals.append(f"{method}: {exc.detail}")
                    continue
                if exc.status not in (405, 409, 422):
                    raise
                # Merged meanwhile (a retried call), moved, or not mergeable: the PR says which.
                pr = self._mergeable(repo, number, head_sha)
                if pr.state == "merged" and pr.merge_commit_sha:
                    return pr.merge_commit_sha
                raise NotMergeable(repo, number, exc.detail) from None
        else:
            allowed = ", ".join(self.allowed_fields.values())
            why = "; ".join(refusals) or f"the repository allows none of them ({allowed})"
            raise MergeMethodRefused(repo, number, why)
        if merged is not None:
            return merged
        pr = self.get_pull_request(repo, number)
        if pr.merge_commit_sha is None:
            raise NotMergeable(repo, number, f"{self.name} reports no merge commit after merging")
        return pr.merge_commit_sha

    def close_pull_request(self, repo: str, number: int) -> None:
        """Close without merging (idempotent; a merged pull request stays merged)."""
        if self.get_pull_request(repo, number).state == "open":
            self._call(repo, "PATCH", f"/pulls/{number}", json={"state": "closed"})

    def comment(self, repo: str, number: int, body: str) -> None:
        self._call(repo, "POST", f"/issues/{number}/comments", json={"body": self._body(body)})

    def upsert_comment(self, repo: str, number: int, marker: str, body: str) -> int:
        """Pull request comments are issue comments: listed (paged) from `GET
        /repos/{o}/{r}/issues/{n}/comments`, edited with `PATCH .../issues/comments/{id}`,
        posted with `POST .../issues/{n}/comments` (docs.github.com/rest/issues/comments)."""
        self.get_pull_request(repo, number)
        path = self._root(repo) + f"/issues/{number}/comments"
        comments = (
            Comment(id=c["id"], user=(c.get("user") or {}).get("login") or "", body=c["body"] or "")
            for c in self.api.pages(path, self.page_size)
        )

        def edit(comment: Comment, text: str) -> None:
            self._call(repo, "PATCH", f"/issues/comments/{comment.id}", json={"body": text})

        def create(text: str) -> int:
            return self._call(repo, "POST", f"/issues/{number}/comments", json={"body": text})["id"]

        return upsert_marked(comments, marker, self._body(marked(marker, body)), edit, create)

    def list_pull_request_commits(self, repo: str, number: int) -> list[CommitAuthor]:
        """From `GET /repos/{o}/{r}/pulls/{n}/commits` (paged; GitHub lists at most 250): the
        git author, and `author.login` where the forge links the email to an account."""
        self.get_pull_request(repo, number)
        path = self._root(repo) + f"/pulls/{number}/commits"
        return [_commit_author(c) for c in self.api.pages(path, self.page_size)]

    def compare_commits(self, repo: str, base: str, head: str) -> list[CommitAuthor]:
        """From `GET /repos/{o}/{r}/compare/{base}...{head}` (docs.github.com/rest/commits/
        commits#compare-two-commits): its `commits[]`, oldest first, paged like a list (the
        same commit objects as a pull request's); 404 when either commit is unknown."""
        path = self._root(repo) + f"/compare/{quote(base, safe='')}...{quote(head, safe='')}"
        try:
            return [_commit_author(c) for c in self.api.pages(path, self.page_size, key="commits")]
        except ResourceNotFound:
            self._call(repo, "GET", "")  # RepositoryNotFound when the repository is the gap
            raise RevisionNotFound(repo, base, head) from None

    def get_commit(self, repo: str, sha: str) -> CommitAuthor:
        """From `GET /repos/{o}/{r}/{commit_path}/{sha}`: a commit object as a comparison lists
        them; GitHub answers an unknown commit 422 "No commit found for SHA", Gitea 404."""
        try:
            data = self._call(repo, "GET", f"/{self.commit_path}/{quote(sha, safe='')}")
        except ResourceNotFound:
            raise RevisionNotFound(repo, sha) from None
        except RequestRejected as exc:
            if exc.status != 422:
                raise
            raise RevisionNotFound(repo, sha) from None
        return _commit_author(data)

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
        """Report a status for `sha`; the forge shows the latest one per context."""
        request = {"state": state, "context": context, "description": description[:140]}
        if target_url:
            request["target_url"] = target_url
        self._call(repo, "POST", f"/statuses/{sha}", json=request)

    def list_commit_statuses(self, repo: str, sha: str) -> list[CommitStatus]:
        """The latest status of each context (the combined status), by context."""
        data = self._call(repo, "GET", f"/commits/{sha}/status", params={"per_page": 100})
        statuses = [
            CommitStatus(
                sha=sha,
                context=s.get("context") or "default",
                # Gitea spells the field `status`.
                state=_STATUS_STATES.get(s.get("state") or s.get("status"), "error"),
                description=s.get("description") or "",
                target_url=s.get("target_url") or None,
                updated_at=parse_time(s.get("updated_at")),
            )
            for s in data.get("statuses") or []
        ]
        return sorted(statuses, key=lambda s: s.context)

    # Where GitHub and Gitea differ

    def _merge(
        self, repo: str, number: int, head_sha: str, message: str | None, method: MergeMethod
    ) -> str | None:
        """Ask the forge to merge by `method`; the new base commit when the answer holds it (the
        merge commit, the squashed commit, or the last rebased one)."""
        request: dict[str, Any] = {"merge_method": self.merge_styles[method], "sha": head_sha}
        if message:
            title, _, rest = message.partition("\n")
            request |= {"commit_title": title, "commit_message": rest.strip()}
        return self._call(repo, "PUT", f"/pulls/{number}/merge", json=request)["sha"]

    def _fast_forward(self, repo: str, pr: PullRequest, head_sha: str) -> str:
        """Move the base branch to the head, refused unless that is a fast forward."""
        ref = f"/git/refs/heads/{quote(pr.base_branch)}"
        self._call(repo, "PATCH", ref, json={"sha": head_sha, "force": False})
        return head_sha

    # Internals

    def _merge_methods(self, repo: str) -> list[MergeMethod]:
        """`forge.merge`, or the methods the repository allows, most preferred first; all the
        merge endpoint offers when the repository object does not say."""
        if self.merge_method is not None:
            return [self.merge_method]
        try:
            data = self._call(repo, "GET", "")
        except ForgeError as exc:  # not readable: learn from the merge endpoint's refusals
            if exc.retryable:
                raise
            data = {}
        return self.allowed_methods(data)

    def allowed_methods(self, repository: dict[str, Any]) -> list[MergeMethod]:
        """The merge methods a repository object allows, in `allowed_fields` order; all of them
        when it has none of those fields (a token that cannot see the settings)."""
        known = [m for m, field in self.allowed_fields.items() if field in repository]
        if not known:
            return list(self.allowed_fields)
        return [m for m in known if repository[self.allowed_fields[m]] is True]

    def _mergeable(self, repo: str, number: int, head_sha: str) -> PullRequest:
        """The pull request, checked to be at `head_sha` and not closed unmerged."""
        pr = self.get_pull_request(repo, number)
        if pr.head_sha != head_sha:
            raise HeadChanged(repo, number, head_sha, pr.head_sha)
        if pr.state == "closed":
            raise NotMergeable(repo, number, "it is closed")
        return pr

    def _root(self, repo: str) -> str:
        owner, name = owner_and_name(self.name, repo)
        return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    def _body(self, body: str) -> str:
        return clip_body(body, self.body_limit)

    def _pull_request(self, repo: str, data: dict[str, Any]) -> PullRequest:
        merged = data.get("merged") is True or bool(data.get("merged_at"))
        state: PullRequestState = (
            "merged" if merged else "closed" if data.get("state") == "closed" else "open"
        )
        return PullRequest(
            repo=repo,
            number=data["number"],
            title=data.get("title") or "",
            body=data.get("body") or "",
            author=(data.get("user") or {}).get("login") or "",
            head_branch=data["head"]["ref"],
            head_sha=data["head"]["sha"],
            base_branch=data["base"]["ref"],
            state=state,
            # While open, GitHub's merge_commit_sha is a test merge: only a merged one counts.
            merge_commit_sha=data.get("merge_commit_sha") if merged else None,
            html_url=data.get("html_url") or "",
        )


class GitHubForge(GitHubRestForge):
    """GitHub: its REST API, and deployments (`Deployments`), which Gitea does not have."""

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
        """GitHub deployments (docs.github.com/rest/deployments): the deployment of `sha` to
        `environment` from `GET /deployments?sha=&environment=`, else `POST /deployments` (ref the
        commit, `auto_merge: false`, `required_contexts: []`: Baton deploys what it checked); then
        `POST /deployments/{id}/statuses` with the state and URLs."""
        query = {"sha": sha, "environment": environment, "per_page": 100}
        deployments = self.api.pages(self._root(repo) + "/deployments", query)
        found = next(
            (d for d in deployments if (d.get("sha"), d.get("environment")) == (sha, environment)),
            None,
        )
        if found is None:
            request = {
                "ref": sha,
                "environment": environment,
                "auto_merge": False,
                "required_contexts": [],
                "description": description[:140],
                "transient_environment": False,
            }
            found = self._call(repo, "POST", "/deployments", json=request)
        status: dict[str, Any] = {"state": state, "description": description[:140]}
        if environment_url:
            status["environment_url"] = environment_url
        if log_url:
            status["log_url"] = log_url
        self._call(repo, "POST", f"/deployments/{found['id']}/statuses", json=status)
        return int(found["id"])


def _commit_author(commit: dict[str, Any]) -> CommitAuthor:
    """A commit object's git author, and `author.login` where the forge links the email to an
    account (GitHub's and Gitea's shape)."""
    author = (commit.get("commit") or {}).get("author") or {}
    return CommitAuthor(
        sha=commit["sha"],
        name=author.get("name") or "",
        email=author.get("email") or "",
        login=(commit.get("author") or {}).get("login"),
    )
