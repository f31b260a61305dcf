"""GitHub-format webhooks (GitHub itself and Baton's local forge): authentication and normalization."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from pydantic import BaseModel

from baton.errors import RequestError
from baton.forges.base import PullRequest


class WebhookRejected(RequestError):
    """A delivery that cannot be acted on; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sign(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | None, body: bytes, header: str | None) -> None:
    """Raise 401 unless `header` is the HMAC of the raw body; compared in constant time."""
    if not secret:
        raise WebhookRejected(401, "no webhook secret is configured: set BATON_WEBHOOK_SECRET")
    if not header:
        raise WebhookRejected(401, "missing X-Hub-Signature-256 header")
    if not hmac.compare_digest(sign(secret, body).encode(), header.strip().encode()):
        raise WebhookRejected(401, "X-Hub-Signature-256 does not match the body")


class PullRequestHook(BaseModel):
    """A normalized pull-request event: what Baton needs, whichever forge sent it."""

    action: str
    repo: str
    number: int
    title: str = ""
    body: str = ""
    author: str
    head_branch: str
    head_sha: str
    base_branch: str
    merged: bool = False
    merge_commit_sha: str | None = None


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


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRejected(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body must be a JSON object")
    return payload


def required(payload: Any, path: str, kind: type) -> Any:
    """The value at dotted `path`, of type `kind`; a 400 naming the field otherwise."""
    value = payload
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise WebhookRejected(400, f"payload lacks {path}")
        value = value[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise WebhookRejected(400, f"payload field {path} must be a {kind.__name__}")
    return value


def _optional_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _repo(payload: dict[str, Any]) -> str:
    repository = required(payload, "repository", dict)
    name = repository.get("full_name") or repository.get("name")
    if not isinstance(name, str) or not name:
        raise WebhookRejected(400, "payload lacks repository.full_name")
    return name


def pull_request(payload: dict[str, Any]) -> PullRequestHook:
    pr = required(payload, "pull_request", dict)
    merge_commit = pr.get("merge_commit_sha")
    return PullRequestHook(
        action=required(payload, "action", str),
        repo=_repo(payload),
        number=required(pr, "number", int),
        title=_optional_str(pr, "title"),
        body=_optional_str(pr, "body"),
        author=required(pr, "user.login", str),
        head_branch=required(pr, "head.ref", str),
        head_sha=required(pr, "head.sha", str),
        base_branch=required(pr, "base.ref", str),
        merged=pr.get("merged") is True,
        merge_commit_sha=merge_commit if isinstance(merge_commit, str) else None,
    )


def review(payload: dict[str, Any]) -> ReviewHook:
    return ReviewHook(
        repo=_repo(payload),
        number=required(payload, "pull_request.number", int),
        body=_optional_str(required(payload, "pull_request", dict), "body"),
        reviewer=required(payload, "review.user.login", str),
        state=required(payload, "review.state", str).lower(),
        commit_id=required(payload, "review.commit_id", str),
        head_sha=required(payload, "pull_request.head.sha", str),
    )
