"""Fake GitHub, Gitea and Azure DevOps servers on 127.0.0.1, for adapter and end-to-end tests.

Each fake serves the REST endpoints Baton's adapters call, in the shapes the forge documents
(GitHub's REST API, Gitea's Swagger API and Azure DevOps' REST reference), authenticates tokens the way the forge does, and sends
the forge's webhooks, signed the forge's way, to Baton's API. Storage and git are a `LocalForge`:
its bare repositories are what the fake's `clone_url`s point at (file:// URLs), so git pushes land
there, and its records hold pull requests, reviews, statuses and comments.

Tests steer a fake with `fail_next` (error and rate-limit answers) and `content_type` (how its
webhooks are encoded), and act on it as people would (`open_pull_request`, `review`,
`withdraw_approval`, `retarget`, `merge`, `close`, `reopen`): the webhooks follow as from the
real forge.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import quote_plus

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from api.azure_devops import basic_auth
from baton.config import MergeMethod
from baton.forges.base import (
    Comment,
    CommitAuthor,
    HeadChanged,
    NoCommitsBetween,
    NotMergeable,
    PullRequest,
    PullRequestNotFound,
    Review,
    RevisionNotFound,
)
from baton.local.forge import LocalForge, RefUpdate, signature_256
from tests.fakes import Lifecycle

ZERO_SHA = "0" * 40


@dataclass
class Failure:
    """An answer to give instead of serving the next `times` requests whose path has `path`."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=lambda: {"message": "injected failure"})
    path: str = ""
    times: int = 1


@dataclass
class Sent:
    """One webhook the fake delivered (as sent, so a test can replay it), and Baton's answer."""

    event: str
    payload: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    status: int | None
    answer: str


class Served:
    """An ASGI app served by uvicorn from a thread, on a free port of 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self, timeout_s: float = 30) -> Self:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the app on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class ApiError(Exception):
    """Ends a request with the forge's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=Alice", "-c", "user.email=alice@example.invalid"]
    return subprocess.run(
        ["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeForge(Lifecycle):
    """The parts every fake shares: server, auth, failure injection, storage, webhook delivery."""

    kind: ClassVar[str]
    webhook_path: ClassVar[str]

    def __init__(
        self,
        root: Path,
        tokens: dict[str, str],
        baton_url: str | None = None,
        webhook_secret: str | None = None,
        page_size: int = 30,
    ) -> None:
        """`tokens` maps each accepted token to its user; webhooks go to Baton at `baton_url`."""
        self.root = Path(root)
        self.tokens = tokens
        self.webhook_url = f"{baton_url}{self.webhook_path}" if baton_url else None
        self.webhook_secret = webhook_secret
        self.page_size = page_size
        self.merge_methods: list[MergeMethod] = ["merge", "squash", "rebase", "fast-forward"]
        """What the repositories' settings allow, the default first (`allow_merge_methods`)."""
        self.store = LocalForge(self.root, user="fake-forge")
        self.failures: list[Failure] = []
        self.requests: list[tuple[str, str]] = []
        self.sent: list[Sent] = []
        # The webhook's content type, as set in the forge's webhook form: JSON, or the JSON in a
        # form field `payload` (application/x-www-form-urlencoded), with any charset parameter.
        self.content_type = "application/json"
        self.bases: dict[tuple[str, int], str] = {}  # PRs retargeted since they were opened
        self.withdrawn: dict[tuple[str, int], set[str]] = {}  # approvals dismissed or reset
        self.accounts: dict[str, str] = {}
        """Commit emails the forge links to an account (email → login), as verified emails are."""
        self._outbox: queue.Queue[tuple[str, dict[str, Any], dict[str, str]] | None] = queue.Queue()
        self.app = FastAPI()
        self.app.middleware("http")(self._gate)
        self.app.exception_handler(ApiError)(self._api_error)
        self.routes()
        self._served = Served(self.app)
        self._delivery = threading.Thread(target=self._deliver_forever, daemon=True)

    # Lifecycle

    @property
    def origin(self) -> str:
        return self._served.url

    @property
    def url(self) -> str:
        """The API base URL to configure as `forge.url`."""
        return self.origin

    def start(self) -> Self:
        self._delivery.start()
        self._served.start()
        return self

    def stop(self) -> None:
        self._outbox.put(None)
        self._served.stop()
        self._delivery.join(timeout=10)

    # Steering

    def fail_next(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        path: str = "",
        times: int = 1,
        message: str = "injected failure",
    ) -> None:
        """Answer the next `times` API requests whose path contains `path` with `status`."""
        self.failures.append(Failure(status, headers or {}, {"message": message}, path, times))

    def allow_merge_methods(self, *methods: MergeMethod) -> None:
        """Set the repositories' merge settings: only `methods`, the first being the default."""
        self.merge_methods = list(methods)

    def create_repo(self, repo: str, from_dir: Path | None = None) -> None:
        self.store.create_repo(repo, from_dir=from_dir)

    def deliver_to(self, baton_url: str | None) -> None:
        """Send webhooks to Baton's API at `baton_url` from now on (None: record them only)."""
        self.webhook_url = f"{baton_url}{self.webhook_path}" if baton_url else None

    def flush(self) -> list[Sent]:
        """Wait until every queued webhook was sent; every webhook sent so far."""
        self._outbox.join()
        return self.sent

    def clone_url(self, repo: str) -> str:
        return self.store.clone_url(repo)

    def push(
        self, repo: str, branch: str, files: dict[str, str], base: str = "main", url: str = ""
    ) -> str:
        """Commit `files` on `branch` (made from `base`) and push it, as a developer would, to
        `url` (default: the repository's file:// URL); returns the new head."""
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            _git(work, "clone", "-q", url or self.clone_url(repo), ".")
            _git(work, "checkout", "-q", "-B", branch, f"origin/{base}")
            for name, text in files.items():
                (work / name).write_text(text)
            _git(work, "add", "-A")
            _git(work, "commit", "-q", "-m", f"Change {branch}")
            _git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
            return _git(work, "rev-parse", "HEAD")

    # Acting as people do on the forge; the webhooks follow

    def open_pull_request(
        self, repo: str, head: str, base: str, title: str, body: str, author: str
    ) -> PullRequest:
        pr = self.store.open_pull_request(repo, head, base, title, body, author)
        self.opened(pr)
        return pr

    def review(self, repo: str, number: int, user: str, state: str) -> Review:
        review = self.store.submit_review(repo, number, user, state)  # type: ignore[arg-type]
        self.reviewed(self.pull_request(repo, number), review)
        return review

    def merge(self, repo: str, number: int) -> str:
        head = self.pull_request(repo, number).head_sha
        merged = self.store.merge_pull_request(repo, number, head)
        self.merged(self.pull_request(repo, number))
        return merged

    def close(self, repo: str, number: int) -> None:
        self.store.close_pull_request(repo, number)
        self.closed(self.pull_request(repo, number))

    def reopen(self, repo: str, number: int) -> None:
        self.store.reopen_pull_request(repo, number)
        self.reopened(self.pull_request(repo, number))

    def retarget(self, repo: str, number: int, base: str) -> None:
        """Change the PR's base branch, as its author does in the forge's UI."""
        pr = self.pull_request(repo, number)
        self.bases[(repo, number)] = base
        self.retargeted(self.pull_request(repo, number), pr.base_branch)

    def withdraw_approval(self, repo: str, number: int, user: str) -> None:
        """Take `user`'s approval away the forge's way (dismissal, rejection or vote reset)."""
        self.withdrawn.setdefault((repo, number), set()).add(user)
        self.approval_withdrawn(self.pull_request(repo, number), user)

    def pull_request(self, repo: str, number: int) -> PullRequest:
        """The PR as the forge shows it now (a retargeted one with its new base)."""
        pr = self.store.get_pull_request(repo, number)
        base = self.bases.get((repo, number))
        return pr.model_copy(update={"base_branch": base}) if base else pr

    def push_ref(self, repo: str, branch: str, before: str, after: str) -> None:
        """Move `branch` from `before` to `after`, as a push would (the push webhook follows)."""
        ref = f"refs/heads/{branch}"
        subprocess.run(
            ["git", f"--git-dir={self.store.repo_path(repo)}", "update-ref", ref, after, before],
            check=True,
        )
        self.store.record_push(repo, [RefUpdate(before, after, ref)])

    def push_directly(self, repo: str, branch: str, files: dict[str, str]) -> str:
        """Commit `files` straight onto `branch`, as a maintainer pushing without a pull request
        does, and send the push delivery; the new head."""
        before = _git(self.store.repo_path(repo), "rev-parse", f"refs/heads/{branch}")
        after = self.push(repo, branch, files, base=branch)
        self.pushed(repo, branch, before, after)
        return after

    def announce_push(self, repo: str, number: int) -> None:
        """Send the event a forge sends when a pull request's branch got new commits."""
        self.synchronized(self.pull_request(repo, number))

    def merged_as(self, repo: str, sha: str) -> list[PullRequest]:
        """The merged pull requests whose merge commit is `sha`."""
        return [
            p for p in self.store.list_pull_requests(repo, "merged") if p.merge_commit_sha == sha
        ]

    # What each fake defines

    def routes(self) -> None:
        raise NotImplementedError

    def user_of(self, authorization: str) -> str | None:
        """The user an Authorization header authenticates, by the forge's scheme."""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() in ("token", "bearer"):
            return self.tokens.get(value.strip())
        return None

    def opened(self, pr: PullRequest) -> None: ...

    def synchronized(self, pr: PullRequest) -> None: ...

    def reviewed(self, pr: PullRequest, review: Review) -> None: ...

    def merged(self, pr: PullRequest) -> None: ...

    def closed(self, pr: PullRequest) -> None: ...

    def reopened(self, pr: PullRequest) -> None: ...

    def pushed(self, repo: str, branch: str, before: str, after: str) -> None:
        """Send the delivery of `branch` moving from `before` to `after`."""

    def retargeted(self, pr: PullRequest, old_base: str) -> None: ...

    def approval_withdrawn(self, pr: PullRequest, user: str) -> None: ...

    # Internals

    async def _gate(self, request: Request, call_next: Any) -> Response:
        path = request.url.path
        self.requests.append((request.method, path))
        for failure in self.failures:
            if failure.path in path:
                failure.times -= 1
                if failure.times <= 0:
                    self.failures.remove(failure)
                return JSONResponse(failure.body, failure.status, headers=failure.headers)
        user = self.user_of(request.headers.get("authorization", ""))
        if user is None:
            return JSONResponse({"message": "Bad credentials"}, 401)
        request.state.user = user
        return await call_next(request)

    async def _api_error(self, request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"message": str(exc)}, exc.status)

    def _require_repo(self, repo: str) -> None:
        if not self.store.repo_path(repo).is_dir():
            raise ApiError(404, "Not Found")

    def _pr(self, repo: str, number: int) -> PullRequest:
        self._require_repo(repo)
        try:
            return self.pull_request(repo, number)
        except PullRequestNotFound:
            raise ApiError(404, "Not Found") from None

    def _branches(self, repo: str, prefix: str = "") -> dict[str, str]:
        """Branch name → head commit, read from the bare repository."""
        out = subprocess.run(
            [
                "git",
                f"--git-dir={self.store.repo_path(repo)}",
                "for-each-ref",
                "--format=%(refname:strip=2) %(objectname)",
                f"refs/heads/{prefix}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return dict(line.split(" ", 1) for line in out.splitlines())

    def _latest_reviews(self, repo: str, number: int) -> dict[str, Review]:
        return {r.user: r for r in self.store.list_reviews(repo, number)}

    def _is_withdrawn(self, pr: PullRequest, review: Review) -> bool:
        return review.user in self.withdrawn.get((pr.repo, pr.number), set())

    def _send(self, event: str, payload: dict[str, Any], headers: dict[str, str]) -> None:
        self._outbox.put((event, payload, headers))

    def _deliver_forever(self) -> None:
        """Deliver in order from one thread, after the API answer, as forges do."""
        while (item := self._outbox.get()) is not None:
            event, payload, headers = item
            document = json.dumps(payload).encode()
            body = document
            if self.content_type.startswith("application/x-www-form-urlencoded"):
                body = ("payload=" + quote_plus(document)).encode()
            signature = self._sign(body, document)
            headers = {"Content-Type": self.content_type, **headers, **signature}
            try:
                if self.webhook_url is None:
                    raise httpx.TransportError("not delivered: no webhook URL")
                answer = httpx.post(self.webhook_url, content=body, headers=headers, timeout=30)
                self.sent.append(
                    Sent(event, payload, headers, body, answer.status_code, answer.text)
                )
            except httpx.HTTPError as exc:
                self.sent.append(Sent(event, payload, headers, body, None, str(exc)))
            finally:
                self._outbox.task_done()
        self._outbox.task_done()

    def _sign(self, body: bytes, document: bytes) -> dict[str, str]:
        """The signature headers for a delivery of `document` (the JSON) sent as `body`."""
        return {}


class _GitHubShaped(FakeForge):
    """GitHub's REST shapes, which Gitea's API mirrors; subclasses set the spellings."""

    review_states: ClassVar[dict[str, str]]
    status_field: ClassVar[str]
    compare_pages: ClassVar[bool]
    """Whether a comparison's `commits` are paged (GitHub's) or all in one answer (Gitea's)."""
    not_found: ClassVar[str]
    """The message of a 404, a comparison's with a commit the repository has not among them."""
    commit_path: ClassVar[str]
    """Where a single commit is read, under the repository."""
    missing_commit: ClassVar[tuple[int, str]]
    """The status and message answering a single commit the repository has not."""

    def pull_json(self, pr: PullRequest) -> dict[str, Any]:
        owner, name = pr.repo.split("/")
        merged = pr.state == "merged"
        return {
            "id": pr.number,
            "number": pr.number,
            "state": "open" if pr.state == "open" else "closed",
            "title": pr.title,
            "body": pr.body,
            "user": {"login": pr.author},
            "draft": False,
            "head": {
                "label": f"{owner}:{pr.head_branch}",
                "ref": pr.head_branch,
                "sha": pr.head_sha,
                "repo": self.repo_json(pr.repo),
            },
            "base": {
                "label": f"{owner}:{pr.base_branch}",
                "ref": pr.base_branch,
                "repo": self.repo_json(pr.repo),
            },
            "merged": merged,
            "merged_at": _now() if merged else None,
            "merge_commit_sha": pr.merge_commit_sha,
            "html_url": f"{self.origin}/{owner}/{name}/pull/{pr.number}",
        }

    def repo_json(self, repo: str) -> dict[str, Any]:
        owner, name = repo.split("/")
        return {
            "id": zlib.crc32(repo.encode()),  # stable across renames on the real forges
            "name": name,
            "full_name": repo,
            "owner": {"login": owner},
            "clone_url": self.store.clone_url(repo),
            "default_branch": self.store.default_branch(repo),
            "html_url": f"{self.origin}/{repo}",
        } | self.merge_settings()

    SETTINGS: ClassVar[dict[str, str]]
    """Merge method → the repository object's field that says it is allowed."""

    def merge_settings(self) -> dict[str, Any]:
        """The repository object's merge settings, in this forge's spelling."""
        return {field: m in self.merge_methods for m, field in self.SETTINGS.items()}

    def paged(
        self, request: Request, items: list[Any], size_param: str, key: str | None = None
    ) -> JSONResponse:
        """One page of `items` (in the object field `key`, a comparison's `commits`, with
        `total_commits`) with a GitHub-style `Link: <...>; rel="next"` header."""
        size = min(int(request.query_params.get(size_param, self.page_size)), self.page_size)
        page = int(request.query_params.get("page", 1))
        chunk = items[(page - 1) * size : page * size]
        headers = {}
        if page * size < len(items):
            url = request.url.include_query_params(page=page + 1)
            headers["Link"] = f'<{url}>; rel="next"'
        body = {"total_commits": len(items), key: chunk} if key else chunk
        return JSONResponse(body, headers=headers)

    def commit_json(self, commit: CommitAuthor) -> dict[str, Any]:
        """A commit object (a pull request's, a comparison's): its git author and committer,
        and the forge's account for the email, when one has it (null otherwise)."""
        who = {"name": commit.name, "email": commit.email, "date": _now()}
        login = self.accounts.get(commit.email)
        return {
            "sha": commit.sha,
            "commit": {"author": who, "committer": who, "message": ""},
            "author": {"login": login} if login else None,
        }

    def branch_commit(self, repo: str, sha: str) -> dict[str, Any]:
        """A branch's `commit` object: GitHub's commit summary (`sha`, `url`)."""
        return {"sha": sha, "url": f"{self.origin}/repos/{repo}/commits/{sha}"}

    def merge_via_api(self, repo: str, number: int, head_sha: str, method: MergeMethod) -> str:
        pr = self._pr(repo, number)
        if pr.state != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        try:
            merged = self.store.merge_pull_request(repo, number, head_sha, method=method)
        except HeadChanged:
            raise ApiError(
                409, "Head branch was modified. Review and try the merge again."
            ) from None
        except NotMergeable as exc:
            raise ApiError(405, f"Pull Request is not mergeable: {exc.reason}") from exc
        self.merged(self.pull_request(repo, number))
        return merged

    def delete_via_api(self, repo: str, branch: str, missing: ApiError) -> None:
        """Delete `branch`; `missing` is this forge's answer when there is no such branch."""
        self._require_repo(repo)
        if branch not in self._branches(repo, branch):
            raise missing
        self.store.delete_branch(repo, branch)

    def routes(self) -> None:
        app, prefix = self.app, self.api_prefix

        @app.get(prefix + "/repos/{owner}/{name}")
        def get_repo(owner: str, name: str) -> dict:
            self._require_repo(f"{owner}/{name}")
            return self.repo_json(f"{owner}/{name}")

        @app.get(prefix + "/repos/{owner}/{name}/branches/{branch:path}")
        def get_branch(owner: str, name: str, branch: str) -> dict:
            repo = f"{owner}/{name}"
            self._require_repo(repo)
            sha = self._branches(repo, branch).get(branch)
            if sha is None:
                raise ApiError(404, "Branch not found")
            return {"name": branch, "commit": self.branch_commit(repo, sha), "protected": False}

        @app.get(prefix + "/repos/{owner}/{name}/pulls")
        def list_pulls(owner: str, name: str, request: Request) -> JSONResponse:
            repo = f"{owner}/{name}"
            self._require_repo(repo)
            state = request.query_params.get("state", "open")
            head = request.query_params.get("head")
            pulls = [
                p
                for p in self.store.list_pull_requests(repo)
                if (state == "all" or (p.state == "open") == (state == "open"))
                and (head is None or head == f"{owner}:{p.head_branch}")
            ]
            return self.paged(request, [self.pull_json(p) for p in pulls], self.size_param)

        @app.post(prefix + "/repos/{owner}/{name}/pulls", status_code=201)
        async def create_pull(owner: str, name: str, request: Request) -> dict:
            repo, data = f"{owner}/{name}", await request.json()
            self._require_repo(repo)
            head = data["head"].split(":")[-1]
            if self.store.find_pull_request(repo, head) is not None:
                raise ApiError(self.exists_status, f"A pull request already exists for {head}.")
            if head not in self._branches(repo, head):
                raise ApiError(422, "Validation Failed: head does not exist")
            try:
                pr = self.store.open_pull_request(
                    repo,
                    head,
                    data["base"],
                    data["title"],
                    data.get("body") or "",
                    request.state.user,
                )
            except NoCommitsBetween as exc:
                raise ApiError(422, f"Validation Failed: {exc}") from None
            self.opened(pr)
            return self.pull_json(pr)

        @app.get(prefix + "/repos/{owner}/{name}/commits/{sha}/pulls")
        def commit_pulls(owner: str, name: str, sha: str, request: Request) -> JSONResponse:
            """The pull requests the commit belongs to (merged as it, or its head)."""
            repo = f"{owner}/{name}"
            self._require_repo(repo)
            pulls = [
                p
                for p in self.store.list_pull_requests(repo)
                if sha in (p.merge_commit_sha, p.head_sha)
            ]
            return self.paged(request, [self.pull_json(p) for p in pulls], self.size_param)

        @app.get(prefix + "/repos/{owner}/{name}/pulls/{number}")
        def get_pull(owner: str, name: str, number: int) -> dict:
            return self.pull_json(self._pr(f"{owner}/{name}", number))

        @app.patch(prefix + "/repos/{owner}/{name}/pulls/{number}")
        async def update_pull(owner: str, name: str, number: int, request: Request) -> dict:
            repo, data = f"{owner}/{name}", await request.json()
            pr = self._pr(repo, number)
            if data.get("state") == "closed" and pr.state == "open":
                self.store.close_pull_request(repo, number)
                self.closed(self.pull_request(repo, number))
            return self.pull_json(self.pull_request(repo, number))

        @app.get(prefix + "/repos/{owner}/{name}/pulls/{number}/reviews")
        def list_reviews(owner: str, name: str, number: int, request: Request) -> JSONResponse:
            repo = f"{owner}/{name}"
            pr = self._pr(repo, number)
            reviews = [
                {
                    "id": i,
                    "user": {"login": r.user},
                    "state": "DISMISSED"
                    if r.state == "approved" and self._is_withdrawn(pr, r)
                    else self.review_states[r.state],
                    "commit_id": r.commit_id,
                    "body": r.body,
                    "submitted_at": r.submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                for i, r in enumerate(self.store.list_reviews(repo, number), 1)
            ]
            return self.paged(request, reviews, self.size_param)

        @app.post(prefix + "/repos/{owner}/{name}/issues/{number}/comments", status_code=201)
        async def comment(owner: str, name: str, number: int, request: Request) -> dict:
            repo, data = f"{owner}/{name}", await request.json()
            self._pr(repo, number)
            self.store.comment(repo, number, data["body"])
            return self.comment_json(self.store.comments(repo, number)[-1])

        @app.get(prefix + "/repos/{owner}/{name}/issues/{number}/comments")
        def list_comments(owner: str, name: str, number: int, request: Request) -> JSONResponse:
            repo = f"{owner}/{name}"
            self._pr(repo, number)
            comments = [self.comment_json(c) for c in self.store.comments(repo, number)]
            return self.paged(request, comments, self.size_param)

        @app.patch(prefix + "/repos/{owner}/{name}/issues/comments/{comment_id}")
        async def edit_comment(owner: str, name: str, comment_id: int, request: Request) -> dict:
            repo, data = f"{owner}/{name}", await request.json()
            self._require_repo(repo)
            if not isinstance(data.get("body"), str):
                raise ApiError(422, "Validation Failed: body is required")
            edited = self.store.edit_comment(repo, comment_id, data["body"])
            if edited is None:
                raise ApiError(404, "Not Found")
            return self.comment_json(edited)

        @app.get(prefix + "/repos/{owner}/{name}/pulls/{number}/commits")
        def list_commits(owner: str, name: str, number: int, request: Request) -> JSONResponse:
            repo = f"{owner}/{name}"
            self._pr(repo, number)
            commits = self.store.list_pull_request_commits(repo, number)
            return self.paged(request, [self.commit_json(c) for c in commits], self.size_param)

        @app.get(prefix + "/repos/{owner}/{name}/compare/{basehead}")
        def compare(owner: str, name: str, basehead: str, request: Request) -> JSONResponse:
            repo = f"{owner}/{name}"
            self._require_repo(repo)
            base, _, head = basehead.partition("...")
            try:
                commits = self.store.compare_commits(repo, base, head)
            except RevisionNotFound:
                raise ApiError(404, self.not_found) from None
            listed = [self.commit_json(c) for c in commits]
            if self.compare_pages:
                return self.paged(request, listed, self.size_param, key="commits")
            return JSONResponse({"total_commits": len(listed), "commits": listed})

        @app.get(prefix + "/repos/{owner}/{name}/" + self.commit_path + "/{sha}")
        def get_commit(owner: str, name: str, sha: str) -> dict:
            repo = f"{owner}/{name}"
            self._require_repo(repo)
            try:
                return self.commit_json(self.store.get_commit(repo, sha))
            except RevisionNotFound:
                status, message = self.missing_commit
                raise ApiError(status, message.format(sha=sha)) from None

        @app.post(prefix + "/repos/{owner}/{name}/statuses/{sha}", status_code=201)
        async def create_status(owner: str, name: str, sha: str, request: Request) -> dict:
            repo, data = f"{owner}/{name}", await request.json()
            self._require_repo(repo)
            if data["state"] not in ("pending", "success", "failure", "error", "warning"):
                raise ApiError(422, f"Validation Failed: state {data['state']!r}")
            self.store.set_commit_status(
                repo,
                sha,
                data.get("context") or "default",
                data["state"],
                data.get("description") or "",
                data.get("target_url"),
            )
            return data

        @app.get(prefix + "/repos/{owner}/{name}/commits/{sha}/status")
        def combined_status(owner: str, name: str, sha: str) -> dict:
            repo = f"{owner}/{name}"
            self._require_repo(repo)
            statuses = [
                {
                    self.status_field: s.state,
                    "context": s.context,
                    "description": s.description,
                    "target_url": s.target_url,
                    "updated_at": s.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                for s in self.store.list_commit_statuses(repo, sha)
            ]
            return {"sha": sha, "statuses": statuses}

        self.more_routes()

    api_prefix: ClassVar[str]
    size_param: ClassVar[str]
    exists_status: ClassVar[int]
    sync_action: ClassVar[str]

    def more_routes(self) -> None:
        raise NotImplementedError

    def comment_json(self, comment: Comment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "body": comment.body,
            "user": {"login": comment.user},
            "created_at": _now(),
            "updated_at": _now(),
        }

    def event_headers(self, event: str, event_type: str, delivery: str) -> dict[str, str]:
        raise NotImplementedError

    def opened(self, pr: PullRequest) -> None:
        self._pr_event("pull_request", "opened", pr, pr.author)

    def synchronized(self, pr: PullRequest) -> None:
        self._pr_event("pull_request", self.sync_action, pr, pr.author)

    def merged(self, pr: PullRequest) -> None:
        self._pr_event("pull_request", "closed", pr, "fake-forge")

    def closed(self, pr: PullRequest) -> None:
        self._pr_event("pull_request", "closed", pr, "fake-forge")

    def reopened(self, pr: PullRequest) -> None:
        self._pr_event("pull_request", "reopened", pr, pr.author)

    def pushed(self, repo: str, branch: str, before: str, after: str) -> None:
        """Send the `push` delivery of `branch` moving from `before` to `after` (GitHub's
        shape, which Gitea's mirrors), as the forge does after a push or a merge."""
        update = RefUpdate(before, after, f"refs/heads/{branch}")
        payload = self.store._push_payload(repo, update) | {"repository": self.repo_json(repo)}
        payload |= self.push_people()
        self._send("push", payload, self.event_headers("push", "push", str(uuid.uuid4())))

    def push_people(self) -> dict[str, Any]:
        """The `pusher` and `sender` of a push delivery, where they differ from GitHub's."""
        return {}

    def _pr_event(
        self,
        event: str,
        action: str,
        pr: PullRequest,
        sender: str,
        event_type: str | None = None,
        **extra: Any,
    ) -> None:
        payload = {
            "action": action,
            "number": pr.number,
            "pull_request": self.pull_json(pr),
            "repository": self.repo_json(pr.repo),
            "sender": {"login": sender},
            **extra,
        }
        headers = self.event_headers(event, event_type or event, str(uuid.uuid4()))
        self._send(event, payload, headers)


class FakeGitHub(_GitHubShaped):
    """GitHub's REST v3 and its webhooks; deployments and their statuses are kept in
    `deployments` and `deployment_statuses` (by deployment id, oldest first)."""

    DEPLOYMENT_STATES = (
        "error",
        "failure",
        "inactive",
        "in_progress",
        "queued",
        "pending",
        "success",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.deployments: list[dict[str, Any]] = []
        self.deployment_statuses: dict[int, list[dict[str, Any]]] = {}
        super().__init__(*args, **kwargs)

    def deployment_json(self, deployment: dict[str, Any]) -> dict[str, Any]:
        data = {k: v for k, v in deployment.items() if k != "repo"}
        return data | {"url": f"{self.origin}/repos/{deployment['repo']}/deployments/{data['id']}"}

    kind = "github"
    webhook_path = "/webhooks/github"
    api_prefix = ""
    size_param = "per_page"
    exists_status = 422
    review_states = {
        "approved": "APPROVED",
        "changes_requested": "CHANGES_REQUESTED",
        "commented": "COMMENTED",
    }
    status_field = "state"
    compare_pages = True
    not_found = "Not Found"
    commit_path = "commits"
    missing_commit = (422, "No commit found for SHA: {sha}")

    sync_action = "synchronize"

    def event_headers(self, event: str, event_type: str, delivery: str) -> dict[str, str]:
        return {
            "User-Agent": "GitHub-Hookshot/fake",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Hook-ID": "1",
        }

    def reviewed(self, pr: PullRequest, review: Review) -> None:
        self._pr_event(
            "pull_request_review",
            "submitted",
            pr,
            review.user,
            review={
                "id": 1,
                "user": {"login": review.user},
                "state": review.state,
                "commit_id": review.commit_id,
                "body": review.body,
                "submitted_at": review.submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )

    def _sign(self, body: bytes, document: bytes) -> dict[str, str]:
        if not self.webhook_secret:  # GitHub signs the body as sent, form-encoded or not
            return {}
        return {"X-Hub-Signature-256": signature_256(self.webhook_secret, body)}

    def retargeted(self, pr: PullRequest, old_base: str) -> None:
        changes = {"base": {"ref": {"from": old_base}, "sha": {"from": ZERO_SHA}}}
        self._pr_event("pull_request", "edited", pr, pr.author, changes=changes)

    def approval_withdrawn(self, pr: PullRequest, user: str) -> None:
        review = self._latest_reviews(pr.repo, pr.number)[user]
        self._pr_event(
            "pull_request_review",
            "dismissed",
            pr,
            "maintainer",
            review={
                "id": 1,
                "user": {"login": user},
                "state": "dismissed",
                "commit_id": review.commit_id,
                "body": review.body,
                "submitted_at": review.submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )

    # GitHub's answers to a merge method the repository's settings do not allow.
    REFUSALS: ClassVar[dict[str, str]] = {
        "merge": "Merge commits are not allowed on this repository.",
        "squash": "Squash merges are not allowed on this repository.",
        "rebase": "Rebase merges are not allowed on this repository.",
    }

    SETTINGS = {
        "merge": "allow_merge_commit",
        "squash": "allow_squash_merge",
        "rebase": "allow_rebase_merge",
    }

    def update_ref(self, repo: str, branch: str, sha: str, force: bool) -> dict[str, Any]:
        """`PATCH /git/refs/heads/BRANCH`: move the branch, refused unless a fast forward."""
        self._require_repo(repo)
        current = self._branches(repo, branch).get(branch)
        if current is None:
            raise ApiError(422, "Reference does not exist")
        git = ["git", f"--git-dir={self.store.repo_path(repo)}"]
        ancestor = subprocess.run([*git, "merge-base", "--is-ancestor", current, sha], check=False)
        if ancestor.returncode != 0 and not force:
            raise ApiError(422, "Update is not a fast forward")
        # GitHub marks an open pull request merged once its head lands on its base.
        landed = [
            p
            for p in self.store.list_pull_requests(repo, "open")
            if p.base_branch == branch and p.head_sha == sha
        ]
        for pr in landed:
            self.store.merge_pull_request(repo, pr.number, sha, method="fast-forward")
            self.merged(self.store.get_pull_request(repo, pr.number))
        if not landed:
            self.push_ref(repo, branch, current, sha)
        return {"ref": f"refs/heads/{branch}", "object": {"sha": sha, "type": "commit"}}

    def more_routes(self) -> None:
        app = self.app

        @app.put("/repos/{owner}/{name}/pulls/{number}/merge")
        async def merge(owner: str, name: str, number: int, request: Request) -> dict:
            data = await request.json()
            method = data.get("merge_method", "merge")
            if method not in self.REFUSALS:
                raise ApiError(422, f"Validation Failed: merge_method {method!r}")
            if method not in self.merge_methods:
                raise ApiError(405, self.REFUSALS[method])
            sha = self.merge_via_api(f"{owner}/{name}", number, data.get("sha") or "", method)
            return {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}

        @app.patch("/repos/{owner}/{name}/git/refs/heads/{branch:path}")
        async def update_ref(owner: str, name: str, branch: str, request: Request) -> dict:
            data = await request.json()
            return self.update_ref(f"{owner}/{name}", branch, data["sha"], bool(data.get("force")))

        @app.delete("/repos/{owner}/{name}/git/refs/heads/{branch:path}", status_code=204)
        def delete_ref(owner: str, name: str, branch: str) -> None:
            missing = ApiError(422, "Reference does not exist")
            self.delete_via_api(f"{owner}/{name}", branch, missing)

        @app.get("/repos/{owner}/{name}/deployments")
        def list_deployments(owner: str, name: str, request: Request) -> JSONResponse:
            """Newest first, filtered by `sha`, `ref`, `environment` (GitHub's list)."""
            repo, query = f"{owner}/{name}", request.query_params
            self._require_repo(repo)
            found = [
                d
                for d in reversed(self.deployments)
                if d["repo"] == repo
                and all(query.get(k) in (None, d[k]) for k in ("sha", "ref", "environment"))
            ]
            return self.paged(request, [self.deployment_json(d) for d in found], self.size_param)

        @app.post("/repos/{owner}/{name}/deployments", status_code=201)
        async def create_deployment(owner: str, name: str, request: Request) -> dict:
            repo, data = f"{owner}/{name}", await request.json()
            self._require_repo(repo)
            ref = data.get("ref")
            sha = self.store.resolve(repo, ref) if isinstance(ref, str) else None
            if sha is None:
                raise ApiError(422, f"No ref found for: {ref}")
            contexts = data.get("required_contexts")
            if contexts is None:  # GitHub then checks every status context of the ref
                statuses = self.store.list_commit_statuses(repo, sha)
                if any(s.state != "success" for s in statuses):
                    raise ApiError(409, "Conflict: Commit status checks failed for " + ref)
            deployment = {
                "id": len(self.deployments) + 1,
                "repo": repo,
                "sha": sha,
                "ref": ref,
                "task": data.get("task", "deploy"),
                "environment": data.get("environment", "production"),
                "description": data.get("description"),
                "creator": {"login": request.state.user},
            }
            self.deployments.append(deployment)
            return self.deployment_json(deployment)

        @app.post("/repos/{owner}/{name}/deployments/{number}/statuses", status_code=201)
        async def create_deployment_status(
            owner: str, name: str, number: int, request: Request
        ) -> dict:
            repo, data = f"{owner}/{name}", await request.json()
            self._require_repo(repo)
            if not any(d["id"] == number and d["repo"] == repo for d in self.deployments):
                raise ApiError(404, "Not Found")
            if data.get("state") not in self.DEPLOYMENT_STATES:
                raise ApiError(422, f"Validation Failed: state {data.get('state')!r}")
            status = {"id": sum(map(len, self.deployment_statuses.values())) + 1, **data}
            self.deployment_statuses.setdefault(number, []).append(status)
            return status


class FakeGitea(_GitHubShaped):
    """Gitea's (and, with `forgejo=True`, Forgejo's) API v1 and webhooks."""

    kind = "gitea"
    webhook_path = "/webhooks/gitea"
    api_prefix = "/api/v1"
    size_param = "limit"
    exists_status = 409
    review_states = {
        "approved": "APPROVED",
        "changes_requested": "REQUEST_CHANGES",
        "commented": "COMMENT",
    }
    status_field = "status"
    sync_action = "synchronized"
    compare_pages = False
    not_found = "The target couldn't be found."
    commit_path = "git/commits"
    missing_commit = (404, not_found)

    def __init__(self, *args: Any, forgejo: bool = False, **kwargs: Any) -> None:
        self.forgejo = forgejo
        super().__init__(*args, **kwargs)

    @property
    def url(self) -> str:
        return f"{self.origin}/api/v1"

    STYLES: ClassVar[dict[str, str]] = {
        "merge": "merge",
        "squash": "squash",
        "rebase": "rebase",
        "fast-forward": "fast-forward-only",
    }

    SETTINGS = {
        "merge": "allow_merge_commits",
        "squash": "allow_squash_merge",
        "rebase": "allow_rebase",
        "fast-forward": "allow_fast_forward_only_merge",
    }

    def push_people(self) -> dict[str, Any]:
        """Gitea names who pushed as one of its users (`login`, `username`; no `name`)."""
        user = {
            "id": 1,
            "login": "fake-forge",
            "login_name": "",
            "full_name": "Fake Forge",
            "email": "fake-forge@noreply.localhost",
            "username": "fake-forge",
        }
        return {"pusher": user, "sender": user}

    def branch_commit(self, repo: str, sha: str) -> dict[str, Any]:
        """Gitea's branch `commit` is a PayloadCommit: `id`, `message`, `url`, ..."""
        return {"id": sha, "message": "", "url": f"{self.origin}/{repo}/commit/{sha}"}

    def merge_settings(self) -> dict[str, Any]:
        default = self.STYLES[self.merge_methods[0]] if self.merge_methods else "merge"
        return super().merge_settings() | {
            "allow_rebase_explicit": False,
            "default_merge_style": default,
        }

    def more_routes(self) -> None:
        app = self.app

        @app.get("/api/v1/repos/{owner}/{name}/commits/{sha}/pull")
        def commit_pull(owner: str, name: str, sha: str) -> dict:
            """The pull request merged as the commit; 404 when none was."""
            repo = f"{owner}/{name}"
            self._require_repo(repo)
            merged = self.merged_as(repo, sha)
            if not merged:
                raise ApiError(404, "The target couldn't be found.")
            return self.pull_json(merged[0])

        @app.post("/api/v1/repos/{owner}/{name}/pulls/{number}/merge")
        async def merge(owner: str, name: str, number: int, request: Request) -> Response:
            data = await request.json()
            repo, style = f"{owner}/{name}", data.get("Do") or data.get("do")
            method = next((m for m, s in self.STYLES.items() if s == style), None)
            if method is None:
                raise ApiError(422, "[Do]: Required")
            if method not in self.merge_methods:
                raise ApiError(
                    405, f"{style} is not allowed an allowed merge style for this repository"
                )
            if self._pr(repo, number).state == "merged":
                raise ApiError(405, "The PR is already merged")
            self.merge_via_api(repo, number, data.get("head_commit_id") or "", method)
            return Response(status_code=200)

        @app.delete("/api/v1/repos/{owner}/{name}/branches/{branch:path}", status_code=204)
        def delete_branch(owner: str, name: str, branch: str) -> None:
            missing = ApiError(404, "The target couldn't be found.")
            self.delete_via_api(f"{owner}/{name}", branch, missing)

    def reviewed(self, pr: PullRequest, review: Review) -> None:
        kind = {"approved": "approved", "changes_requested": "rejected"}.get(review.state)
        if kind is None:
            self._pr_event(
                "pull_request_comment", "reviewed", pr, review.user, "pull_request_review_comment"
            )
            return
        self._pr_event(
            f"pull_request_{kind}",
            "reviewed",
            pr,
            review.user,
            f"pull_request_review_{kind}",
            review={"type": f"pull_request_review_{kind}", "content": review.body},
        )

    def event_headers(self, event: str, event_type: str, delivery: str) -> dict[str, str]:
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Event-Type": event_type,
            "X-GitHub-Delivery": delivery,
        }
        for name in ("Forgejo", "Gitea") if self.forgejo else ("Gitea", "Gogs"):
            headers |= {
                f"X-{name}-Event": event,
                f"X-{name}-Event-Type": event_type,
                f"X-{name}-Delivery": delivery,
            }
        return headers

    def _sign(self, body: bytes, document: bytes) -> dict[str, str]:
        if not self.webhook_secret:  # Gitea signs the JSON, also when it sends it as a form
            return {}
        hex_digest = hmac.new(self.webhook_secret.encode(), document, hashlib.sha256).hexdigest()
        name = "Forgejo" if self.forgejo else "Gitea"
        return {
            f"X-{name}-Signature": hex_digest,
            "X-Hub-Signature-256": signature_256(self.webhook_secret, document),
        }

    def retargeted(self, pr: PullRequest, old_base: str) -> None:
        self._pr_event("pull_request", "edited", pr, pr.author, changes={"ref": {"from": old_base}})

    def approval_withdrawn(self, pr: PullRequest, user: str) -> None:
        """Gitea has no dismissal webhook: the reviewer requests changes after approving."""
        self.review(pr.repo, pr.number, user, "changes_requested")


class FakeAzureDevOps(FakeForge):
    """Azure DevOps REST 7.1 for organization `fake`, and its service hooks (Basic auth)."""

    kind = "azure-devops"
    webhook_path = "/webhooks/azure-devops"
    STRATEGIES: ClassVar[dict[str, MergeMethod]] = {
        "noFastForward": "merge",
        "squash": "squash",
        "rebase": "rebase",
    }
    _STATUS = {"open": "active", "merged": "completed", "closed": "abandoned"}
    _TO_BATON = {
        "succeeded": "success",
        "failed": "failure",
        "pending": "pending",
        "error": "error",
    }

    def __init__(self, *args: Any, hook_user: str = "baton", **kwargs: Any) -> None:
        self.hook_user = hook_user
        super().__init__(*args, **kwargs)

    @property
    def url(self) -> str:
        return f"{self.origin}/fake"

    def user_of(self, authorization: str) -> str | None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            _, _, token = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        return self.tokens.get(token)

    def pull_json(self, pr: PullRequest) -> dict[str, Any]:
        project, name = pr.repo.split("/")
        status = self._STATUS[pr.state]
        data = {
            "pullRequestId": pr.number,
            "status": status,
            "mergeStatus": "succeeded",
            "title": pr.title,
            "description": pr.body,
            "createdBy": {"uniqueName": pr.author, "displayName": pr.author.title()},
            "sourceRefName": f"refs/heads/{pr.head_branch}",
            "targetRefName": f"refs/heads/{pr.base_branch}",
            "lastMergeSourceCommit": {"commitId": pr.head_sha},
            "repository": self.repo_json(pr.repo),
            "reviewers": self.reviewers(pr),
            "url": f"{self.url}/{project}/_apis/git/repositories/{name}/pullRequests/{pr.number}",
        }
        if status == "completed":
            data["lastMergeCommit"] = {"commitId": pr.merge_commit_sha}
        return data

    def repo_json(self, repo: str) -> dict[str, Any]:
        project, name = repo.split("/")
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, repo)),
            "name": name,
            "project": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, project)), "name": project},
            "remoteUrl": self.store.clone_url(repo),
            "webUrl": f"{self.url}/{project}/_git/{name}",
            "defaultBranch": f"refs/heads/{self.store.default_branch(repo)}",
        }

    def reviewers(self, pr: PullRequest) -> list[dict[str, Any]]:
        votes = {"approved": 10, "changes_requested": -10, "commented": 0}
        return [
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, user)),
                "uniqueName": user,
                "displayName": user.title(),
                "vote": 0 if self._is_withdrawn(pr, r) else votes[r.state],
                "isContainer": False,
            }
            for user, r in self._latest_reviews(pr.repo, pr.number).items()
        ]

    def thread_json(self, comment: Comment) -> dict[str, Any]:
        author = {"uniqueName": comment.user, "displayName": comment.user.title()}
        return {
            "id": comment.id,
            "status": "active",
            "isDeleted": False,
            "comments": [
                {
                    "id": 1,
                    "parentCommentId": 0,
                    "author": author,
                    "content": comment.body,
                    "commentType": "text",
                }
            ],
        }

    def routes(self) -> None:
        app = self.app
        repo_path = "/fake/{project}/_apis/git/repositories/{name}"

        unresolved = (
            "TF401175: The version descriptor <Commit: {sha}> could not be resolved to a "
            "version in the repository"
        )

        def commit_ref(commit: CommitAuthor) -> dict[str, Any]:
            """A GitCommitRef: its author and committer, and no account (Azure links none)."""
            who = {"name": commit.name, "email": commit.email, "date": _now()}
            return {"commitId": commit.sha, "author": who, "committer": who, "comment": ""}

        def repo_of(project: str, name: str, request: Request) -> str:
            if request.query_params.get("api-version") != "7.1":
                raise ApiError(400, "The requested REST API version is not supported: 7.1 wanted")
            self._require_repo(f"{project}/{name}")
            return f"{project}/{name}"

        @app.get(repo_path)
        def get_repo(project: str, name: str, request: Request) -> dict:
            return self.repo_json(repo_of(project, name, request))

        @app.get(repo_path + "/pullrequests")
        def list_pulls(project: str, name: str, request: Request) -> dict:
            repo = repo_of(project, name, request)
            source = request.query_params.get("searchCriteria.sourceRefName")
            status = request.query_params.get("searchCriteria.status", "active")
            pulls = [
                self.pull_json(p)
                for p in self.store.list_pull_requests(repo)
                if (source is None or f"refs/heads/{p.head_branch}" == source)
                and (status == "all" or self._STATUS[p.state] == status)
            ]
            return {"value": pulls, "count": len(pulls)}

        @app.post(repo_path + "/pullrequestquery")
        async def query_pulls(project: str, name: str, request: Request) -> dict:
            """Pull requests by `lastMergeCommit` (the only query type Baton sends): one result
            per query, mapping each commit to the pull requests merged as it."""
            repo, data = repo_of(project, name, request), await request.json()
            queries = data.get("queries") or []
            if any(q.get("type") != "lastMergeCommit" for q in queries):
                raise ApiError(400, "only lastMergeCommit queries are faked")
            results = [
                {sha: [self.pull_json(p) for p in self.merged_as(repo, sha)] for sha in q["items"]}
                for q in queries
            ]
            return {"queries": queries, "results": results}

        @app.post(repo_path + "/pullrequests", status_code=201)
        async def create_pull(project: str, name: str, request: Request) -> dict:
            repo, data = repo_of(project, name, request), await request.json()
            head = data["sourceRefName"].removeprefix("refs/heads/")
            if self.store.find_pull_request(repo, head) is not None:
                raise ApiError(
                    409,
                    "TF401179: An active pull request for the source and target "
                    "branch already exists.",
                )
            if len(data.get("description") or "") > 4000:
                raise ApiError(400, "The description is longer than 4000 characters.")
            pr = self.store.open_pull_request(
                repo,
                head,
                data["targetRefName"].removeprefix("refs/heads/"),
                data["title"],
                data.get("description") or "",
                request.state.user,
            )
            self.opened(pr)
            return self.pull_json(pr)

        @app.get(repo_path + "/pullrequests/{number}")
        def get_pull(project: str, name: str, number: int, request: Request) -> dict:
            return self.pull_json(self._pr(repo_of(project, name, request), number))

        @app.patch(repo_path + "/pullrequests/{number}")
        async def update_pull(project: str, name: str, number: int, request: Request) -> dict:
            repo, data = repo_of(project, name, request), await request.json()
            pr = self._pr(repo, number)
            if data.get("status") == "abandoned" and pr.state == "open":
                self.store.close_pull_request(repo, number)
                self.closed(self.pull_request(repo, number))
            elif data.get("status") == "completed" and pr.state == "open":
                lock = (data.get("lastMergeSourceCommit") or {}).get("commitId")
                if lock != pr.head_sha:
                    raise ApiError(
                        409,
                        "TF401192: The source branch has been updated since the "
                        "pull request was last read.",
                    )
                options = data.get("completionOptions") or {}
                strategy = options.get("mergeStrategy", "noFastForward")
                method = self.STRATEGIES.get(strategy)
                if method is None:
                    raise ApiError(400, f"mergeStrategy {strategy!r} is not supported here")
                try:
                    self.store.merge_pull_request(repo, number, pr.head_sha, method=method)
                except NotMergeable as exc:
                    raise ApiError(409, f"TF401181: the merge failed: {exc.reason}") from None
                self.merged(self.pull_request(repo, number))
                # Completion is asynchronous: the answer still shows it queued.
                return self.pull_json(pr) | {"mergeStatus": "queued"}
            return self.pull_json(self.pull_request(repo, number))

        @app.get(repo_path + "/pullRequests/{number}/reviewers")
        def reviewers(project: str, name: str, number: int, request: Request) -> dict:
            value = self.reviewers(self._pr(repo_of(project, name, request), number))
            return {"value": value, "count": len(value)}

        @app.post(repo_path + "/pullRequests/{number}/threads")
        async def thread(project: str, name: str, number: int, request: Request) -> dict:
            """A thread of one comment is one comment of the store: thread id = its id."""
            repo, data = repo_of(project, name, request), await request.json()
            self._pr(repo, number)
            for comment in data["comments"]:
                self.store.comment(repo, number, comment["content"])
            return self.thread_json(self.store.comments(repo, number)[-1])

        @app.get(repo_path + "/pullRequests/{number}/threads")
        def threads(project: str, name: str, number: int, request: Request) -> dict:
            repo = repo_of(project, name, request)
            self._pr(repo, number)
            value = [self.thread_json(c) for c in self.store.comments(repo, number)]
            return {"value": value, "count": len(value)}

        @app.patch(repo_path + "/pullRequests/{number}/threads/{thread_id}/comments/{comment_id}")
        async def edit_comment(
            project: str, name: str, number: int, thread_id: int, comment_id: int, request: Request
        ) -> dict:
            repo, data = repo_of(project, name, request), await request.json()
            self._pr(repo, number)
            edited = self.store.edit_comment(repo, thread_id, data["content"])
            if edited is None or comment_id != 1:
                raise ApiError(404, f"TF401181: The comment {comment_id} was not found.")
            return self.thread_json(edited)["comments"][0]

        @app.get(repo_path + "/pullRequests/{number}/commits")
        def commits(project: str, name: str, number: int, request: Request) -> Response:
            """Newest first, `$top` per page, the rest behind `x-ms-continuationtoken`."""
            repo = repo_of(project, name, request)
            self._pr(repo, number)
            listed = [
                commit_ref(c) for c in reversed(self.store.list_pull_request_commits(repo, number))
            ]
            top = min(int(request.query_params.get("$top", 100)), self.page_size)
            start = int(request.query_params.get("continuationToken") or 0)
            page = listed[start : start + top]
            headers = {}
            if start + top < len(listed):
                headers["x-ms-continuationtoken"] = str(start + top)
            return JSONResponse({"value": page, "count": len(page)}, headers=headers)

        @app.get(repo_path + "/commits")
        def search_commits(project: str, name: str, request: Request) -> dict:
            """Commits of `itemVersion` not in `compareVersion` (both versionType commit),
            newest first, `searchCriteria.$top` from `searchCriteria.$skip`."""
            repo, query = repo_of(project, name, request), request.query_params
            head, base = (
                query.get(f"searchCriteria.{v}.version", "")
                for v in ("itemVersion", "compareVersion")
            )
            types = {
                query.get(f"searchCriteria.{v}.versionType")
                for v in ("itemVersion", "compareVersion")
            }
            try:
                if types != {"commit"}:  # a sha taken as a branch name (the default type)
                    raise RevisionNotFound(repo, head)
                found = self.store.compare_commits(repo, base, head)
            except RevisionNotFound as exc:
                raise ApiError(404, unresolved.format(sha=exc.revisions[0])) from None
            top = min(int(query.get("searchCriteria.$top", 100)), self.page_size)
            skip = int(query.get("searchCriteria.$skip", 0))
            page = [commit_ref(c) for c in reversed(found)][skip : skip + top]
            return {"count": len(page), "value": page}

        @app.get(repo_path + "/commits/{sha}")
        def get_commit(project: str, name: str, sha: str, request: Request) -> dict:
            repo = repo_of(project, name, request)
            try:
                return commit_ref(self.store.get_commit(repo, sha))
            except RevisionNotFound:
                raise ApiError(404, unresolved.format(sha=sha)) from None

        @app.post(repo_path + "/commits/{sha}/statuses", status_code=201)
        async def create_status(project: str, name: str, sha: str, request: Request) -> dict:
            repo, data = repo_of(project, name, request), await request.json()
            if data["state"] not in self._TO_BATON:
                raise ApiError(400, f"invalid state {data['state']!r}")
            context = data["context"]
            full = (
                f"{context['genre']}/{context['name']}" if context.get("genre") else context["name"]
            )
            self.store.set_commit_status(
                repo,
                sha,
                full,
                self._TO_BATON[data["state"]],
                data.get("description") or "",
                data.get("targetUrl"),
            )
            return data

        @app.get(repo_path + "/commits/{sha}/statuses")
        def list_statuses(project: str, name: str, sha: str, request: Request) -> dict:
            repo = repo_of(project, name, request)
            to_azure = {v: k for k, v in self._TO_BATON.items()}
            value = []
            for s in self.store.list_commit_statuses(repo, sha):
                genre, _, short = s.context.rpartition("/")
                value.append(
                    {
                        "state": to_azure[s.state],
                        "description": s.description,
                        "targetUrl": s.target_url,
                        "context": {"name": short, "genre": genre or None},
                        "creationDate": s.updated_at.isoformat(),
                        "updatedDate": s.updated_at.isoformat(),
                    }
                )
            return {"value": value, "count": len(value)}

        @app.get(repo_path + "/refs")
        def refs(project: str, name: str, request: Request) -> dict:
            repo = repo_of(project, name, request)
            prefix = request.query_params.get("filter", "").removeprefix("heads/")
            value = [
                {"name": f"refs/heads/{b}", "objectId": sha}
                for b, sha in self._branches(repo, prefix).items()
                if b.startswith(prefix)
            ]
            return {"value": value, "count": len(value)}

        @app.post(repo_path + "/refs")
        async def update_refs(project: str, name: str, request: Request) -> dict:
            repo, updates = repo_of(project, name, request), await request.json()
            results = []
            for update in updates:
                branch = update["name"].removeprefix("refs/heads/")
                current = self._branches(repo, branch).get(branch)
                ok = current == update["oldObjectId"] and update["newObjectId"] == ZERO_SHA
                if ok:
                    self.store.delete_branch(repo, branch)
                results.append(
                    {
                        "name": update["name"],
                        "success": ok,
                        "updateStatus": "succeeded" if ok else "staleOldObjectId",
                    }
                )
            return {"value": results, "count": len(results)}

    def opened(self, pr: PullRequest) -> None:
        self._event("git.pullrequest.created", pr, f"{pr.author} created a pull request")

    def synchronized(self, pr: PullRequest) -> None:
        self._event("git.pullrequest.updated", pr, f"{pr.author} updated the source branch")

    def reviewed(self, pr: PullRequest, review: Review) -> None:
        self._event("git.pullrequest.updated", pr, f"{review.user} voted on the pull request")

    def merged(self, pr: PullRequest) -> None:
        self._event("git.pullrequest.merged", pr, "merge commit created")
        self._event("git.pullrequest.updated", pr, "completed the pull request")

    def closed(self, pr: PullRequest) -> None:
        self._event("git.pullrequest.updated", pr, "abandoned the pull request")

    def reopened(self, pr: PullRequest) -> None:
        self._event("git.pullrequest.updated", pr, "reactivated the pull request")

    def retargeted(self, pr: PullRequest, old_base: str) -> None:
        self._event("git.pullrequest.updated", pr, "changed the target branch")

    def approval_withdrawn(self, pr: PullRequest, user: str) -> None:
        """A vote reset (as the "reset votes on new pushes" policy does) leaves the reviewer at 0."""
        self._event("git.pullrequest.updated", pr, f"the vote of {user} was reset")

    def pushed(self, repo: str, branch: str, before: str, after: str) -> None:
        """Send `git.push` as Azure DevOps does (its documented sample's shape): the refs moved in
        `refUpdates`, the commits pushed, newest first, with their `comment`."""
        update = RefUpdate(before, after, f"refs/heads/{branch}")
        commits = self.store._push_payload(repo, update)["commits"]
        project, name = repo.split("/")
        resource = {
            "commits": [
                {
                    "commitId": c["id"],
                    "author": {**c["author"], "date": c["timestamp"]},
                    "committer": {**c["committer"], "date": c["timestamp"]},
                    "comment": c["message"],
                    "url": f"{self.url}/{project}/_git/{name}/commit/{c['id']}",
                }
                for c in reversed(commits)
            ],
            "refUpdates": [{"name": update.ref, "oldObjectId": before, "newObjectId": after}],
            "repository": self.repo_json(repo),
            "pushedBy": {
                "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "fake-forge")),
                "displayName": "Fake Forge",
                "uniqueName": "fake-forge",
            },
            "pushId": len(self.sent) + 1,
            "date": _now(),
            "url": f"{self.url}/{project}/_apis/git/repositories/{name}/pushes/{len(self.sent) + 1}",
        }
        self._envelope("git.push", resource, f"Fake Forge pushed updates to {name}:{branch}.")

    def _event(self, event: str, pr: PullRequest, text: str) -> None:
        self._envelope(event, self.pull_json(pr), text)

    def _envelope(self, event: str, resource: dict[str, Any], text: str) -> None:
        """A service hook's notification of `event` about `resource`."""
        payload = {
            "subscriptionId": "00000000-0000-0000-0000-000000000000",
            "notificationId": len(self.sent) + 1,
            "id": str(uuid.uuid4()),
            "eventType": event,
            "publisherId": "tfs",
            "message": {"text": text},
            "resource": resource,
            "resourceVersion": "1.0",
            "resourceContainers": {"project": {"id": resource["repository"]["project"]["id"]}},
            "createdDate": _now(),
        }
        self._send(event, payload, {})

    def _sign(self, body: bytes, document: bytes) -> dict[str, str]:
        if not self.webhook_secret:
            return {}
        return {"Authorization": basic_auth(self.hook_user, self.webhook_secret)}


FAKES: dict[str, type[FakeForge]] = {
    "github": FakeGitHub,
    "gitea": FakeGitea,
    "azure-devops": FakeAzureDevOps,
}
