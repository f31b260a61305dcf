"""The local forge: Baton's embedded stand-in for GitHub.

Layout under the forge root:

    repos/<repo>.git   bare repositories; hooks/post-receive reports pushes (see git_hook.py)
    forge.db           SQLite (WAL): pull requests, reviews, statuses, comments, webhook deliveries
    forge.json         {"webhook_url": ...} so the push hook knows where to deliver

Every change emits the webhook GitHub would send, signed the way GitHub signs it, so Baton's
ingress is exercised exactly as with a hosted forge. Each method opens its own SQLite connection
and write transactions are `BEGIN IMMEDIATE`, so one instance may be shared by threads and several
processes (the CLI, the push hook, Baton's workers) may use the same root at once.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from baton.config import MergeMethod
from baton.forges.base import (
    BranchHead,
    BranchNotFound,
    Comment,
    CommitAuthor,
    CommitStatus,
    ForgeError,
    HeadChanged,
    NoCommitsBetween,
    NotMergeable,
    PullRequest,
    PullRequestClosed,
    PullRequestNotFound,
    PullRequestState,
    RepositoryNotFound,
    RequiredChecksNotPassing,
    Review,
    ReviewState,
    RevisionNotFound,
    StatusState,
    marked,
    upsert_marked,
)

ZERO_SHA = "0" * 40
FORGE_EMAIL_DOMAIN = "baton.local"
USER_AGENT = "GitHub-Hookshot/baton-local"
_REPO_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)?")
_MERGE_ATTEMPTS = 3

_SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS pull_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL,
    number INTEGER NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    author TEXT NOT NULL,
    head_branch TEXT NOT NULL,
    head_sha TEXT NOT NULL,
    base_branch TEXT NOT NULL,
    state TEXT NOT NULL,
    merge_commit_sha TEXT,
    merged_by TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    closed_at TEXT,
    merged_at TEXT,
    UNIQUE (repo, number)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_pull_request_per_head
    ON pull_requests (repo, head_branch) WHERE state = 'open';
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL,
    number INTEGER NOT NULL,
    user TEXT NOT NULL,
    state TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    body TEXT NOT NULL,
    submitted_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS statuses (
    repo TEXT NOT NULL,
    sha TEXT NOT NULL,
    context TEXT NOT NULL,
    state TEXT NOT NULL,
    description TEXT NOT NULL,
    target_url TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (repo, sha, context)
);
CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL,
    number INTEGER NOT NULL,
    user TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pull_request_commits (
    repo TEXT NOT NULL,
    number INTEGER NOT NULL,
    position INTEGER NOT NULL,
    sha TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    PRIMARY KEY (repo, number, position)
);
CREATE TABLE IF NOT EXISTS protections (
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    required_checks TEXT NOT NULL,
    PRIMARY KEY (repo, branch)
);
CREATE TABLE IF NOT EXISTS overrides (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL,
    number INTEGER NOT NULL,
    user TEXT NOT NULL,
    reason TEXT NOT NULL,
    head_sha TEXT NOT NULL,
    failing TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    action TEXT,
    body TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    status_code INTEGER,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    last_attempt_at TEXT
);
"""

_Event = tuple[str, dict[str, Any]]


class InvalidRepositoryName(ForgeError):
    retryable = False

    def __init__(self, repo: str) -> None:
        super().__init__(
            f"invalid repository name {repo!r}: use NAME or OWNER/NAME with letters, digits, . _ -"
        )


class DuplicatePullRequest(ForgeError):
    retryable = False

    def __init__(self, repo: str, head: str, number: int) -> None:
        super().__init__(f"{repo}#{number} is already open for {head!r}: use it or close it first")


class GitFailed(ForgeError):
    def __init__(self, command: str, stderr: str) -> None:
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        super().__init__(f"git {command} failed: {detail}")


class Override(BaseModel):
    """A merge by an admin past branch protection: who, why, and what was not green."""

    user: str
    reason: str
    head_sha: str
    failing: dict[str, str]
    created_at: datetime


class RefUpdate(NamedTuple):
    """One line of a post-receive hook's input."""

    before: str
    after: str
    ref: str


class Delivery(BaseModel):
    """One webhook delivery and how its latest attempt went."""

    id: str
    event: str
    action: str | None
    delivered: bool
    status_code: int | None
    error: str | None
    attempts: int
    created_at: datetime


def signature_256(secret: str, body: bytes) -> str:
    """GitHub's `X-Hub-Signature-256` value: `sha256=` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def read_webhook_url(root: Path) -> str | None:
    """The webhook URL recorded in the forge root, for processes that only know the root."""
    path = root / "forge.json"
    return json.loads(path.read_text()).get("webhook_url") if path.is_file() else None


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str]:
    """POST with http.client: headers go out spelled as GitHub spells them, and the push hook
    stays fast (importing httpx would add ~0.4 s to every push)."""
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    connection_class = http.client.HTTPSConnection if https else http.client.HTTPConnection
    connection = connection_class(parts.netloc, timeout=timeout)
    try:
        path = parts.path or "/"
        connection.request("POST", f"{path}?{parts.query}" if parts.query else path, body, headers)
        response = connection.getresponse()
        return response.status, response.read(200).decode(errors="replace")
    finally:
        connection.close()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _login_of(email: str) -> str | None:
    """The local forge account an email belongs to: `alice@baton.local` is alice's."""
    local, _, domain = email.partition("@")
    return local if domain == FORGE_EMAIL_DOMAIN and local else None


def _commit_authors(found: list[tuple[str, str, str]]) -> list[CommitAuthor]:
    """(sha, author name, author email) as commit authors, with the account of the email."""
    return [
        CommitAuthor(sha=sha, name=name, email=email, login=_login_of(email))
        for sha, name, email in found
    ]


def _user(login: str) -> dict[str, Any]:
    return {"login": login, "type": "User"}


class LocalForge:
    """A forge made of bare git repositories and SQLite records under `root`."""

    def __init__(
        self,
        root: Path,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        merge_method: MergeMethod = "merge",
        user: str = "baton",
        timeout: float = 10.0,
    ) -> None:
        """`user` is who acts (merges, closes, comments); `merge_method` is how pull requests are
        merged unless a call says otherwise; `timeout` bounds each webhook delivery."""
        self.root = Path(root)
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.merge_method: MergeMethod = merge_method
        self.user = user
        self.timeout = timeout
        self.root.mkdir(parents=True, exist_ok=True)
        if webhook_url is not None and read_webhook_url(self.root) != webhook_url:
            self._write_config({"webhook_url": webhook_url})
        with closing(self._connect()) as con:
            con.executescript(_SCHEMA)

    # Repositories

    def repo_path(self, repo: str) -> Path:
        """The bare repository's directory."""
        if not _REPO_NAME.fullmatch(repo):
            raise InvalidRepositoryName(repo)
        return self.root / "repos" / f"{repo}.git"

    def clone_url(self, repo: str) -> str:
        """A file:// URL of the bare repository (pushes to it run the forge's hook)."""
        return self.repo_path(repo).as_uri()

    def create_repo(
        self, repo: str, default_branch: str = "main", from_dir: Path | None = None
    ) -> bool:
        """Create the repository if missing (True if it was); `from_dir` seeds an empty one."""
        path = self.repo_path(repo)
        created = not path.is_dir()
        if created:
            path.parent.mkdir(parents=True, exist_ok=True)
            init = ["git", "init", "--quiet", "--bare", f"--initial-branch={default_branch}"]
            self._run([*init, str(path)])
        self._install_hook(repo)
        branch = self.default_branch(repo)
        if from_dir is not None and self._branch_sha(repo, branch) is None:
            self._import_dir(repo, branch, Path(from_dir))
        return created

    def list_repos(self) -> list[str]:
        """Names of all repositories, sorted."""
        repos = self.root / "repos"
        paths = [*repos.glob("*.git"), *repos.glob("*/*.git")]
        return sorted(str(p.relative_to(repos))[: -len(".git")] for p in paths if p.is_dir())

    def default_branch(self, repo: str) -> str:
        """The branch HEAD points to."""
        self._require_repo(repo)
        return self._git(repo, "symbolic-ref", "--short", "HEAD").stdout.strip()

    def branch_head(self, repo: str, branch: str | None = None) -> BranchHead:
        """The commit `branch` (None: the default branch) points at."""
        name = branch or self.default_branch(repo)
        self._require_repo(repo)
        return BranchHead(name=name, sha=self._require_branch(repo, name))

    def delete_branch(self, repo: str, branch: str) -> None:
        """Delete a branch (idempotent); like GitHub, open pull requests from it are closed."""
        self._require_repo(repo)
        sha = self._branch_sha(repo, branch)
        if sha is None:
            return
        self._git(repo, "update-ref", "-d", f"refs/heads/{branch}", sha)
        self.record_push(repo, [RefUpdate(sha, ZERO_SHA, f"refs/heads/{branch}")])

    def protect_branch(self, repo: str, branch: str, required_checks: list[str]) -> None:
        """Branch protection, as GitHub's: pull requests into `branch` merge only when each of
        `required_checks` (commit status contexts) is `success` on their head; [] lifts it."""
        self._require_repo(repo)
        with self._transaction(write=True) as con:
            con.execute("DELETE FROM protections WHERE repo = ? AND branch = ?", (repo, branch))
            if required_checks:
                con.execute(
                    "INSERT INTO protections (repo, branch, required_checks) VALUES (?, ?, ?)",
                    (repo, branch, json.dumps(sorted(set(required_checks)))),
                )

    def required_checks(self, repo: str, branch: str) -> list[str]:
        """The status contexts branch protection requires on `branch` (none when unprotected)."""
        with self._transaction() as con:
            row = con.execute(
                "SELECT required_checks FROM protections WHERE repo = ? AND branch = ?",
                (repo, branch),
            ).fetchone()
        return json.loads(row["required_checks"]) if row else []

    def list_overrides(self, repo: str, number: int) -> list[Override]:
        """Admin merges of the pull request past its branch protection, oldest first."""
        with self._transaction() as con:
            rows = con.execute(
                "SELECT * FROM overrides WHERE repo = ? AND number = ? ORDER BY id", (repo, number)
            ).fetchall()
        return [
            Override.model_validate({**dict(r), "failing": json.loads(r["failing"])}) for r in rows
        ]

    def record_push(self, repo: str, updates: list[RefUpdate]) -> None:
        """Emit `push` for ref updates and sync the pull requests whose head branch moved."""
        events: list[_Event] = []
        for update in updates:
            events.append(("push", self._push_payload(repo, update)))
            if not update.ref.startswith("refs/heads/"):
                continue
            branch = update.ref.removeprefix("refs/heads/")
            with self._transaction(write=True) as con:
                row = self._open_row(con, repo, branch)
                if row is None:
                    continue
                if update.after == ZERO_SHA:
                    events.append(self._close(con, row))
                elif row["head_sha"] != update.after:
                    con.execute(
                        "UPDATE pull_requests SET head_sha = ?, updated_at = ? WHERE id = ?",
                        (update.after, _now(), row["id"]),
                    )
                    extra = {"before": row["head_sha"], "after": update.after}
                    events.append(self._pr_event(con, row["id"], "synchronize", **extra))
        self._deliver(events)

    # Pull requests

    def find_pull_request(self, repo: str, head_branch: str) -> PullRequest | None:
        """The open pull request whose head is `head_branch`, if any."""
        with self._transaction() as con:
            row = self._open_row(con, repo, head_branch)
        return None if row is None else self._model(row)

    def open_pull_request(
        self, repo: str, head: str, base: str, title: str, body: str, author: str
    ) -> PullRequest:
        """Open a pull request, or return the one already open for `head` (idempotent)."""
        self._require_repo(repo)
        head_sha = self._require_branch(repo, head)
        base_sha = self._require_branch(repo, base)
        with self._transaction(write=True) as con:
            if (row := self._open_row(con, repo, head)) is not None:
                return self._model(row)
            if self._is_ancestor(repo, head_sha, base_sha):
                raise NoCommitsBetween(repo, base, head)
            (number,) = con.execute(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM pull_requests WHERE repo = ?", (repo,)
            ).fetchone()
            now = _now()
            con.execute(
                "INSERT INTO pull_requests (repo, number, title, body, author, head_branch,"
                " head_sha, base_branch, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)",
                (repo, number, title, body, author, head, head_sha, base, now, now),
            )
            row = self._row(con, repo, number)
            event = self._pr_event(con, row["id"], "opened", sender=author)
        self._deliver([event])
        return self._model(row)

    def get_pull_request(self, repo: str, number: int) -> PullRequest:
        """The pull request `number`; raises `PullRequestNotFound`."""
        with self._transaction() as con:
            return self._model(self._row(con, repo, number))

    def list_pull_requests(
        self, repo: str | None = None, state: PullRequestState | None = None
    ) -> list[PullRequest]:
        """Pull requests, optionally of one repository and in one state, oldest first."""
        query = "SELECT * FROM pull_requests WHERE 1 = 1"
        args: list[str] = []
        if repo is not None:
            query, args = query + " AND repo = ?", [*args, repo]
        if state is not None:
            query, args = query + " AND state = ?", [*args, state]
        with self._transaction() as con:
            rows = con.execute(query + " ORDER BY repo, number", args).fetchall()
        return [self._model(row) for row in rows]

    def open_pull_requests(self, repo: str) -> list[PullRequest]:
        """Every open pull request of `repo`, by number."""
        self._require_repo(repo)
        return self.list_pull_requests(repo, "open")

    def submit_review(
        self, repo: str, number: int, user: str, state: ReviewState, body: str = ""
    ) -> Review:
        """Review the current head as `user` (authors may approve their own pull requests here)."""
        with self._transaction(write=True) as con:
            row = self._row(con, repo, number)
            if row["state"] != "open":
                raise PullRequestClosed(repo, number, row["state"])
            now = _now()
            cursor = con.execute(
                "INSERT INTO reviews (repo, number, user, state, commit_id, body, submitted_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (repo, number, user, state, row["head_sha"], body, now),
            )
            review = Review(
                user=user,
                state=state,
                commit_id=row["head_sha"],
                submitted_at=datetime.fromisoformat(now),
                body=body,
            )
            payload = self._pr_event(con, row["id"], "submitted", sender=user)[1]
        payload["review"] = {
            "id": cursor.lastrowid,
            "user": _user(user),
            "body": body,
            "commit_id": review.commit_id,
            "submitted_at": now,
            "state": state,
            "html_url": f"{payload['pull_request']['html_url']}#pullrequestreview-{cursor.lastrowid}",
        }
        self._deliver([("pull_request_review", payload)])
        return review

    def merged_pull_request(self, repo: str, sha: str) -> int | None:
        """The merged pull request whose merge commit (as `merge_pull_request` reported it) is
        `sha`."""
        with self._transaction() as con:
            row = con.execute(
                "SELECT number FROM pull_requests WHERE repo = ? AND state = 'merged'"
                " AND merge_commit_sha = ? ORDER BY number LIMIT 1",
                (repo, sha),
            ).fetchone()
        return int(row["number"]) if row else None

    def list_reviews(self, repo: str, number: int) -> list[Review]:
        """Every review of the pull request, oldest first."""
        with self._transaction() as con:
            self._row(con, repo, number)
            rows = con.execute(
                "SELECT * FROM reviews WHERE repo = ? AND number = ? ORDER BY id", (repo, number)
            ).fetchall()
        return [Review.model_validate(dict(r)) for r in rows]

    def merge_pull_request(
        self,
        repo: str,
        number: int,
        head_sha: str,
        message: str | None = None,
        *,
        method: MergeMethod | None = None,
        admin_reason: str | None = None,
    ) -> str:
        """Merge if the head is still `head_sha` by `method` (default: `merge_method`); return the
        commit the base branch then points at (merge, squashed, last rebased commit, or the head).

        Idempotent: an already merged pull request returns that commit. A protected base branch
        refuses (`RequiredChecksNotPassing`) while a required check of the head is not green,
        unless `admin_reason` is given: then the merge goes ahead and the override is recorded
        (`list_overrides`) and commented on the pull request.
        """
        method = method or self.merge_method
        # The write transaction is held across the git work: it serialises concurrent merges.
        with self._transaction(write=True) as con:
            row = self._row(con, repo, number)
            if row["state"] == "merged":
                if row["head_sha"] != head_sha:
                    raise HeadChanged(repo, number, head_sha, row["head_sha"])
                return row["merge_commit_sha"]
            if row["state"] == "closed":
                raise NotMergeable(repo, number, "it is closed")
            current = self._branch_sha(repo, row["head_branch"])
            if current is None:
                raise NotMergeable(repo, number, f"head branch {row['head_branch']!r} is gone")
            if current != head_sha:
                raise HeadChanged(repo, number, head_sha, current)
            failing = self._failing_checks(con, repo, row["base_branch"], head_sha)
            if failing and admin_reason is None:
                override = f"baton forge pr merge {repo} {number} --as USER --admin --reason TEXT"
                raise RequiredChecksNotPassing(repo, number, failing, override)
            base_sha = self._require_branch(repo, row["base_branch"])
            commits = self._commits_between(repo, head_sha, base_sha)
            merged, base_update = self._merge(row, head_sha, message, method)
            con.executemany(
                "INSERT OR REPLACE INTO pull_request_commits (repo, number, position, sha, name,"
                " email) VALUES (?, ?, ?, ?, ?, ?)",
                [(repo, number, i, *commit) for i, commit in enumerate(commits)],
            )
            now = _now()
            if failing:
                assert admin_reason is not None
                self._record_override(con, row, head_sha, failing, admin_reason)
            con.execute(
                "UPDATE pull_requests SET state = 'merged', head_sha = ?, merge_commit_sha = ?,"
                " merged_by = ?, merged_at = ?, closed_at = ?, updated_at = ? WHERE id = ?",
                (head_sha, merged, self.user, now, now, now, row["id"]),
            )
            events = [self._pr_event(con, row["id"], "closed")]
        if base_update is not None:
            events.insert(0, ("push", self._push_payload(repo, base_update)))
        self._deliver(events)
        return merged

    def close_pull_request(self, repo: str, number: int) -> None:
        """Close without merging (idempotent; a merged pull request stays merged)."""
        with self._transaction(write=True) as con:
            row = self._row(con, repo, number)
            if row["state"] != "open":
                return
            event = self._close(con, row)
        self._deliver([event])

    def reopen_pull_request(self, repo: str, number: int) -> PullRequest:
        """Reopen a closed pull request at its branch's current head (idempotent)."""
        with self._transaction(write=True) as con:
            row = self._row(con, repo, number)
            if row["state"] == "open":
                return self._model(row)
            if row["state"] == "merged":
                raise PullRequestClosed(repo, number, "merged")
            if (other := self._open_row(con, repo, row["head_branch"])) is not None:
                raise DuplicatePullRequest(repo, row["head_branch"], other["number"])
            head_sha = self._require_branch(repo, row["head_branch"])
            con.execute(
                "UPDATE pull_requests SET state = 'open', head_sha = ?, closed_at = NULL,"
                " updated_at = ? WHERE id = ?",
                (head_sha, _now(), row["id"]),
            )
            event = self._pr_event(con, row["id"], "reopened")
            row = self._row(con, repo, number)
        self._deliver([event])
        return self._model(row)

    def comment(self, repo: str, number: int, body: str) -> None:
        """Add a comment to the pull request as this forge's user."""
        with self._transaction(write=True) as con:
            self._row(con, repo, number)
            con.execute(
                "INSERT INTO comments (repo, number, user, body, created_at) VALUES (?, ?, ?, ?, ?)",
                (repo, number, self.user, body, _now()),
            )

    def list_comments(self, repo: str, number: int) -> list[tuple[str, str]]:
        """(user, body) of each comment, oldest first."""
        return [(c.user, c.body) for c in self.comments(repo, number)]

    def comments(self, repo: str, number: int) -> list[Comment]:
        """The pull request's comments, oldest first."""
        with self._transaction() as con:
            rows = con.execute(
                "SELECT id, user, body FROM comments WHERE repo = ? AND number = ? ORDER BY id",
                (repo, number),
            ).fetchall()
        return [Comment(id=r["id"], user=r["user"], body=r["body"]) for r in rows]

    def resolve(self, repo: str, ref: str) -> str | None:
        """The commit `ref` (a sha, branch or tag) names in `repo`, or None."""
        found = self._git(
            repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False
        )
        return found.stdout.strip() or None

    def edit_comment(self, repo: str, comment_id: int, body: str) -> Comment | None:
        """Replace a comment's body; the comment, or None when `repo` has no such comment."""
        with self._transaction(write=True) as con:
            con.execute(
                "UPDATE comments SET body = ? WHERE id = ? AND repo = ?", (body, comment_id, repo)
            )
            row = con.execute(
                "SELECT id, user, body FROM comments WHERE id = ? AND repo = ?", (comment_id, repo)
            ).fetchone()
        return Comment(id=row["id"], user=row["user"], body=row["body"]) if row else None

    def upsert_comment(self, repo: str, number: int, marker: str, body: str) -> int:
        """The comment carrying `marker`, edited in place, or posted as this forge's user."""
        with self._transaction(write=True) as con:
            self._row(con, repo, number)
            rows = con.execute(
                "SELECT id, user, body FROM comments WHERE repo = ? AND number = ? ORDER BY id",
                (repo, number),
            ).fetchall()
            comments = [Comment(id=r["id"], user=r["user"], body=r["body"]) for r in rows]

            def edit(comment: Comment, text: str) -> None:
                con.execute("UPDATE comments SET body = ? WHERE id = ?", (text, comment.id))

            def create(text: str) -> int:
                cursor = con.execute(
                    "INSERT INTO comments (repo, number, user, body, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (repo, number, self.user, text, _now()),
                )
                assert cursor.lastrowid is not None
                return cursor.lastrowid

            return upsert_marked(comments, marker, marked(marker, body), edit, create)

    def list_pull_request_commits(self, repo: str, number: int) -> list[CommitAuthor]:
        """The head's commits not on the base branch, oldest first (as recorded at the merge,
        once merged). An email at this forge's domain (`alice@baton.local`) is the account's."""
        with self._transaction() as con:
            row = self._row(con, repo, number)
            recorded = con.execute(
                "SELECT sha, name, email FROM pull_request_commits WHERE repo = ? AND number = ?"
                " ORDER BY position",
                (repo, number),
            ).fetchall()
        if row["state"] == "merged":
            found = [(r["sha"], r["name"], r["email"]) for r in recorded]
        else:
            found = self._commits_between(repo, row["head_sha"], f"refs/heads/{row['base_branch']}")
        return _commit_authors(found)

    def compare_commits(self, repo: str, base: str, head: str) -> list[CommitAuthor]:
        """`git log base..head`, oldest first; `RevisionNotFound` for a commit the repository
        has not (it keeps force-pushed-away commits until git prunes them)."""
        self._require_repo(repo)
        missing = [rev for rev in (base, head) if not self._has_commit(repo, rev)]
        if missing:
            raise RevisionNotFound(repo, *missing)
        return _commit_authors(self._commits_between(repo, head, base))

    def get_commit(self, repo: str, sha: str) -> CommitAuthor:
        """`git log -1 sha`; `RevisionNotFound` for a commit the repository has not."""
        self._require_repo(repo)
        if not self._has_commit(repo, sha):
            raise RevisionNotFound(repo, sha)
        return _commit_authors(self._log(repo, "-1", sha))[0]

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
        """Report a status for `sha`; it replaces the previous one of the same context."""
        self._require_repo(repo)
        with self._transaction(write=True) as con:
            con.execute(
                "INSERT INTO statuses (repo, sha, context, state, description, target_url, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repo, sha, context) DO UPDATE SET"
                " state = excluded.state, description = excluded.description,"
                " target_url = excluded.target_url, updated_at = excluded.updated_at",
                (repo, sha, context, state, description, target_url, _now()),
            )

    def list_commit_statuses(self, repo: str, sha: str) -> list[CommitStatus]:
        """The latest status of each context for `sha`, by context."""
        with self._transaction() as con:
            rows = con.execute(
                "SELECT * FROM statuses WHERE repo = ? AND sha = ? ORDER BY context", (repo, sha)
            ).fetchall()
        return [CommitStatus.model_validate(dict(r)) for r in rows]

    # Webhook deliveries

    def list_deliveries(self, failed_only: bool = False) -> list[Delivery]:
        """Recorded webhook deliveries, oldest first."""
        query = "SELECT * FROM deliveries" + (" WHERE delivered = 0" if failed_only else "")
        with self._transaction() as con:
            rows = con.execute(query + " ORDER BY seq").fetchall()
        return [Delivery.model_validate(dict(r)) for r in rows]

    def redeliver_failed(self) -> int:
        """Send undelivered webhooks again, oldest first, with their original delivery id."""
        with self._transaction() as con:
            rows = con.execute(
                "SELECT id, event, body FROM deliveries WHERE delivered = 0 ORDER BY seq"
            ).fetchall()
        return sum(self._send(r["id"], r["event"], r["body"]) for r in rows)

    # Internals: webhooks

    def _deliver(self, events: list[_Event]) -> None:
        for event, payload in events:
            delivery_id, body = str(uuid.uuid4()), json.dumps(payload)
            with self._transaction(write=True) as con:
                con.execute(
                    "INSERT INTO deliveries (id, event, action, body, created_at) VALUES (?, ?, ?, ?, ?)",
                    (delivery_id, event, payload.get("action"), body, _now()),
                )
            self._send(delivery_id, event, body)

    def _send(self, delivery_id: str, event: str, body: str) -> bool:
        """POST one delivery; record the outcome instead of raising, so no event is lost."""
        status_code, error = None, None
        if self.webhook_url is None:
            error = "no webhook URL configured"
        else:
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery_id,
            }
            if self.webhook_secret:
                headers["X-Hub-Signature-256"] = signature_256(self.webhook_secret, body.encode())
            try:
                status_code, reply = _post(self.webhook_url, body.encode(), headers, self.timeout)
                if not 200 <= status_code < 300:
                    error = f"HTTP {status_code}: {reply}"
            except (OSError, http.client.HTTPException) as e:
                error = f"{type(e).__name__}: {e}"
        with self._transaction(write=True) as con:
            con.execute(
                "UPDATE deliveries SET delivered = ?, status_code = ?, error = ?,"
                " attempts = attempts + 1, last_attempt_at = ? WHERE id = ?",
                (error is None, status_code, error, _now(), delivery_id),
            )
        return error is None

    def _repository(self, repo: str) -> dict[str, Any]:
        owner = repo.split("/")[0] if "/" in repo else "local"
        return {
            "name": repo.rsplit("/", 1)[-1],
            "full_name": repo,
            "owner": _user(owner),
            "private": False,
            "html_url": self.clone_url(repo),
            "clone_url": self.clone_url(repo),
            "default_branch": self.default_branch(repo),
        }

    def _pr_event(
        self,
        con: sqlite3.Connection,
        pr_id: int,
        action: str,
        sender: str | None = None,
        **extra: str,
    ) -> _Event:
        row = con.execute("SELECT * FROM pull_requests WHERE id = ?", (pr_id,)).fetchone()
        repository = self._repository(row["repo"])
        owner = repository["owner"]["login"]

        def ref(branch: str, sha: str | None) -> dict[str, Any]:
            return {
                "label": f"{owner}:{branch}",
                "ref": branch,
                "sha": sha,
                "user": _user(owner),
                "repo": repository,
            }

        pull_request = {
            "id": row["id"],
            "number": row["number"],
            "state": "open" if row["state"] == "open" else "closed",
            "title": row["title"],
            "body": row["body"],
            "user": _user(row["author"]),
            "draft": False,
            "html_url": self._html_url(row["repo"], row["number"]),
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "closed_at": row["closed_at"],
            "merged_at": row["merged_at"],
            "merged": row["state"] == "merged",
            "merged_by": _user(row["merged_by"]) if row["merged_by"] else None,
            "merge_commit_sha": row["merge_commit_sha"],
            "head": ref(row["head_branch"], row["head_sha"]),
            "base": ref(row["base_branch"], self._branch_sha(row["repo"], row["base_branch"])),
        }
        payload = {
            "action": action,
            "number": row["number"],
            **extra,
            "pull_request": pull_request,
            "repository": repository,
            "sender": _user(sender or self.user),
        }
        return "pull_request", payload

    def _push_payload(self, repo: str, update: RefUpdate) -> dict[str, Any]:
        created, deleted = update.before == ZERO_SHA, update.after == ZERO_SHA
        commits = [] if deleted else self._commits(repo, update, created)
        head_commit = None
        if not deleted:
            head_commit = (
                commits[-1]
                if commits and commits[-1]["id"] == update.after
                else self._commits(repo, update, created, single=True)[0]
            )
        return {
            "ref": update.ref,
            "before": update.before,
            "after": update.after,
            "created": created,
            "deleted": deleted,
            "forced": not (
                created or deleted or self._is_ancestor(repo, update.before, update.after)
            ),
            "base_ref": None,
            "commits": commits,
            "head_commit": head_commit,
            "pusher": {"name": self.user, "email": f"{self.user}@{FORGE_EMAIL_DOMAIN}"},
            "repository": self._repository(repo),
            "sender": _user(self.user),
        }

    def _commits(
        self, repo: str, update: RefUpdate, created: bool, single: bool = False
    ) -> list[dict[str, Any]]:
        """Commits a push added (GitHub's `commits[]`), or only `after` when `single`."""
        fields = "%H%x1f%T%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%B%x1f"
        pushed = [update.after] if created else [update.after, f"^{update.before}"]
        # GitHub's `distinct`: the commit is new to the repository, not just to this ref.
        new = [*pushed, "--not", f"--exclude={update.ref}", "--glob=refs/*"]
        distinct = set(self._git(repo, "rev-list", *new).stdout.split())
        if single:
            revs = ["-1", update.after]
        else:
            revs = ["--reverse", "--max-count=2048", *(new if created else pushed)]
        out = self._git(
            repo, "log", "-z", "--name-status", "--no-renames", f"--format=%x1e{fields}", *revs
        ).stdout
        commits = []
        for record in out.split("\x1e")[1:]:
            sha, tree, an, ae, date, cn, ce, message, changes = record.split("\x1f")
            tokens = changes.lstrip("\0\n").split("\0")
            files: dict[str, list[str]] = {"A": [], "D": [], "M": []}
            for status, path in zip(tokens[::2], tokens[1::2], strict=False):
                files.get(status, files["M"]).append(path)
            commits.append(
                {
                    "id": sha,
                    "tree_id": tree,
                    "distinct": sha in distinct,
                    "message": message.rstrip("\n"),
                    "timestamp": date,
                    "url": f"{self.clone_url(repo)}#commit-{sha}",
                    "author": {"name": an, "email": ae},
                    "committer": {"name": cn, "email": ce},
                    "added": files["A"],
                    "removed": files["D"],
                    "modified": files["M"],
                }
            )
        return commits

    # Internals: git

    def _commits_between(self, repo: str, head: str, base: str) -> list[tuple[str, str, str]]:
        """(sha, author name, author email) of the commits of `head` not in `base`, oldest first."""
        return self._log(repo, head, "--not", base)

    def _log(self, repo: str, *revisions: str) -> list[tuple[str, str, str]]:
        """(sha, author name, author email) of each commit `git log revisions` lists, oldest
        first."""
        out = self._git(repo, "log", "--reverse", "--format=%H%x1f%an%x1f%ae", *revisions).stdout
        return [tuple(line.split("\x1f")) for line in out.splitlines() if line]  # type: ignore[misc]

    def _has_commit(self, repo: str, sha: str) -> bool:
        return not self._git(repo, "cat-file", "-e", f"{sha}^{{commit}}", check=False).returncode

    def _git(
        self, repo: str, *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self._run(["git", f"--git-dir={self.repo_path(repo)}", *args], env=env, check=check)

    def _run(
        self, cmd: list[str], env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            env={**os.environ, **(env or {})},
        )
        if check and result.returncode != 0:
            raise GitFailed(next(a for a in cmd[1:] if not a.startswith("-")), result.stderr)
        return result

    def _identity(self) -> dict[str, str]:
        return {
            "GIT_AUTHOR_NAME": self.user,
            "GIT_AUTHOR_EMAIL": f"{self.user}@{FORGE_EMAIL_DOMAIN}",
            "GIT_COMMITTER_NAME": "Baton local forge",
            "GIT_COMMITTER_EMAIL": f"forge@{FORGE_EMAIL_DOMAIN}",
        }

    def _branch_sha(self, repo: str, branch: str) -> str | None:
        result = self._git(
            repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False
        )
        return result.stdout.strip() if result.returncode == 0 else None

    def _is_ancestor(self, repo: str, ancestor: str, descendant: str) -> bool:
        result = self._git(repo, "merge-base", "--is-ancestor", ancestor, descendant, check=False)
        return result.returncode == 0

    def _failing_checks(
        self, con: sqlite3.Connection, repo: str, branch: str, head_sha: str
    ) -> dict[str, str]:
        """Required check → its state on the head, for each required check that is not green."""
        row = con.execute(
            "SELECT required_checks FROM protections WHERE repo = ? AND branch = ?", (repo, branch)
        ).fetchone()
        required = json.loads(row["required_checks"]) if row else []
        states = {
            r["context"]: r["state"]
            for r in con.execute(
                "SELECT context, state FROM statuses WHERE repo = ? AND sha = ?", (repo, head_sha)
            )
        }
        return {c: states.get(c, "missing") for c in required if states.get(c) != "success"}

    def _record_override(
        self,
        con: sqlite3.Connection,
        row: sqlite3.Row,
        head_sha: str,
        failing: dict[str, str],
        reason: str,
    ) -> None:
        now = _now()
        con.execute(
            "INSERT INTO overrides (repo, number, user, reason, head_sha, failing, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row["repo"], row["number"], self.user, reason, head_sha, json.dumps(failing), now),
        )
        checks = ", ".join(f"{c} was {s}" for c, s in sorted(failing.items()))
        con.execute(
            "INSERT INTO comments (repo, number, user, body, created_at) VALUES (?, ?, ?, ?, ?)",
            (
                row["repo"],
                row["number"],
                self.user,
                f"Merged by {self.user} as an admin past branch protection ({checks}): {reason}",
                now,
            ),
        )

    def _merge(
        self, row: sqlite3.Row, head_sha: str, message: str | None, method: MergeMethod
    ) -> tuple[str, RefUpdate | None]:
        """Bring `head_sha` into the base branch by `method`: the commit the base then points
        at, and the base update it took if any."""
        repo, number, base = row["repo"], row["number"], row["base_branch"]
        ref = f"refs/heads/{base}"
        for _ in range(_MERGE_ATTEMPTS):
            base_sha = self._branch_sha(repo, base)
            if base_sha is None:
                raise NotMergeable(repo, number, f"base branch {base!r} is gone")
            if self._is_ancestor(repo, head_sha, base_sha):
                # Merged already: by a push, or by an attempt that died before recording it.
                return self._merge_commit_of(repo, base_sha, head_sha), None
            if method == "fast-forward":
                if not self._is_ancestor(repo, base_sha, head_sha):
                    raise NotMergeable(
                        repo,
                        number,
                        f"cannot fast-forward {base!r}: it has commits the head lacks; update "
                        "the branch, or merge by another method (merge, squash, rebase)",
                    )
                merged = head_sha
            elif method == "squash":
                title = f"{row['title']} (#{number})"
                tree = self._merged_tree(repo, number, base_sha, head_sha)
                author = {
                    "GIT_AUTHOR_NAME": row["author"],
                    "GIT_AUTHOR_EMAIL": f"{row['author']}@{FORGE_EMAIL_DOMAIN}",
                }
                args = ["commit-tree", tree, "-p", base_sha, "-m", message or title]
                merged = self._git(repo, *args, env=self._identity() | author).stdout.strip()
            elif method == "rebase":
                merged = self._rebase(repo, number, base_sha, head_sha)
            else:
                message = (
                    message
                    or f"Merge pull request #{number} from {row['head_branch']}\n\n{row['title']}"
                )
                tree = self._merged_tree(repo, number, base_sha, head_sha)
                args = ["commit-tree", tree, "-p", base_sha, "-p", head_sha, "-m", message]
                merged = self._git(repo, *args, env=self._identity()).stdout.strip()
            # The old value makes update-ref a compare-and-swap, so a concurrent push is not lost.
            if self._git(repo, "update-ref", ref, merged, base_sha, check=False).returncode == 0:
                return merged, RefUpdate(base_sha, merged, ref)
        raise NotMergeable(repo, number, f"{base!r} kept moving while merging; try again")

    def _rebase(self, repo: str, number: int, base_sha: str, head_sha: str) -> str:
        """The head's commits replayed onto `base_sha` (authors kept, the forge as committer),
        in a temporary work tree of the bare repository; the last replayed commit."""
        merges = self._git(repo, "rev-list", "--merges", f"{base_sha}..{head_sha}").stdout.split()
        if merges:  # GitHub refuses these too: a rebase cannot keep merge commits
            raise NotMergeable(
                repo,
                number,
                "the head branch contains merge commits, which a rebase drops; "
                "merge by another method (merge, squash)",
            )
        committer = {k: v for k, v in self._identity().items() if k.startswith("GIT_COMMITTER")}
        with tempfile.TemporaryDirectory(prefix="baton-rebase-") as tmp:
            work = Path(tmp) / "work"
            self._git(repo, "worktree", "add", "--quiet", "--detach", str(work), head_sha)
            try:
                git = ["git", "-C", str(work), "-c", "commit.gpgSign=false"]
                rebased = self._run([*git, "rebase", "--quiet", base_sha], committer, check=False)
                if rebased.returncode != 0:
                    self._run([*git, "rebase", "--abort"], check=False)
                    raise NotMergeable(
                        repo,
                        number,
                        f"conflicts while rebasing onto {base_sha[:12]}; update the branch",
                    )
                return self._run([*git, "rev-parse", "HEAD"]).stdout.strip()
            finally:
                self._git(repo, "worktree", "remove", "--force", str(work), check=False)
                self._git(repo, "worktree", "prune", check=False)

    def _merged_tree(self, repo: str, number: int, base_sha: str, head_sha: str) -> str:
        """The tree of `head_sha` merged into `base_sha`, made without a work tree."""
        result = self._git(
            repo,
            "merge-tree",
            "--write-tree",
            "--name-only",
            "--no-messages",
            base_sha,
            head_sha,
            check=False,
        )
        if result.returncode == 1:
            conflicts = ", ".join(result.stdout.split()[1:])
            raise NotMergeable(repo, number, f"conflicts in {conflicts}; update the branch")
        if result.returncode != 0:
            raise NotMergeable(repo, number, result.stderr.strip() or "git merge-tree failed")
        return result.stdout.split()[0]

    def _merge_commit_of(self, repo: str, base_sha: str, head_sha: str) -> str:
        """The commit on base's first-parent line that brought `head_sha` in (else base itself)."""
        log = self._git(
            repo, "rev-list", "--first-parent", "--parents", "--max-count=1000", base_sha
        ).stdout
        for line in log.splitlines():
            commit, *parents = line.split()
            if commit == head_sha or head_sha in parents[1:]:
                return commit
        return base_sha

    def _import_dir(self, repo: str, branch: str, directory: Path) -> None:
        """Commit `directory`'s files (honouring its .gitignore) as the first commit of `branch`."""
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._git(repo, f"--work-tree={directory.resolve()}", "add", "--all", env=env)
            tree = self._git(repo, "write-tree", env=env).stdout.strip()
        commit = self._git(
            repo, "commit-tree", tree, "-m", "Initial commit", env=self._identity()
        ).stdout.strip()
        ref = f"refs/heads/{branch}"
        self._git(repo, "update-ref", ref, commit, ZERO_SHA)
        self.record_push(repo, [RefUpdate(ZERO_SHA, commit, ref)])

    def _install_hook(self, repo: str) -> None:
        """(Re)write the post-receive hook; rewriting keeps it on the current interpreter."""
        hooks = self.repo_path(repo) / "hooks"
        hooks.mkdir(exist_ok=True)
        hook = hooks / "post-receive"
        command = shlex.join(
            [sys.executable, "-m", "baton.local.git_hook", str(self.root.resolve()), repo]
        )
        hook.write_text(
            f"#!/bin/sh\n# Written by Baton's local forge: reports pushes as webhooks.\nexec {command}\n"
        )
        hook.chmod(0o755)
        # A global core.hooksPath would otherwise silently bypass this hook.
        self._git(repo, "config", "core.hooksPath", str(hooks.resolve()))

    # Internals: records

    def _write_config(self, config: dict[str, Any]) -> None:
        tmp = self.root / f"forge.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        tmp.replace(self.root / "forge.json")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.root / "forge.db", timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        return con

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction on a fresh connection; IMMEDIATE takes the write lock up front."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def _require_repo(self, repo: str) -> None:
        if not self.repo_path(repo).is_dir():
            raise RepositoryNotFound(repo)

    def _require_branch(self, repo: str, branch: str) -> str:
        sha = self._branch_sha(repo, branch)
        if sha is None:
            raise BranchNotFound(repo, branch)
        return sha

    def _row(self, con: sqlite3.Connection, repo: str, number: int) -> sqlite3.Row:
        row = con.execute(
            "SELECT * FROM pull_requests WHERE repo = ? AND number = ?", (repo, number)
        ).fetchone()
        if row is None:
            raise PullRequestNotFound(repo, number)
        return row

    def _open_row(self, con: sqlite3.Connection, repo: str, head_branch: str) -> sqlite3.Row | None:
        return con.execute(
            "SELECT * FROM pull_requests WHERE repo = ? AND head_branch = ? AND state = 'open'",
            (repo, head_branch),
        ).fetchone()

    def _close(self, con: sqlite3.Connection, row: sqlite3.Row) -> _Event:
        now = _now()
        con.execute(
            "UPDATE pull_requests SET state = 'closed', closed_at = ?, updated_at = ? WHERE id = ?",
            (now, now, row["id"]),
        )
        return self._pr_event(con, row["id"], "closed")

    def _html_url(self, repo: str, number: int) -> str:
        return f"{self.clone_url(repo)}#pull-{number}"

    def _model(self, row: sqlite3.Row) -> PullRequest:
        return PullRequest(
            repo=row["repo"],
            number=row["number"],
            title=row["title"],
            body=row["body"],
            author=row["author"],
            head_branch=row["head_branch"],
            head_sha=row["head_sha"],
            base_branch=row["base_branch"],
            state=row["state"],
            merge_commit_sha=row["merge_commit_sha"],
            html_url=self._html_url(row["repo"], row["number"]),
        )
