"""GitHub-format webhooks (GitHub itself and Baton's local forge): authentication and normalization."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from email.message import Message
from itertools import accumulate
from typing import Any
from urllib.parse import parse_qs

from baton.errors import RequestError
from baton.forge_events import PullRequestHook, PushHook, ReviewHook
from baton.models import UNKNOWN_PUSHER, CommitAuthor


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


FORM = "application/x-www-form-urlencoded"


def payload_bytes(body: bytes, content_type: str | None) -> bytes:
    """The delivery's JSON document, as UTF-8 bytes, from a body of either content type GitHub's
    and Gitea's webhook forms offer: `application/json`, or `application/x-www-form-urlencoded`
    with the JSON in the `payload` field (GitHub preselects that one). A `charset` parameter is
    honoured (default UTF-8); any other content type is refused with 415 naming the one to set.
    """
    header = Message()
    header["content-type"] = content_type or "application/json"
    mime, charset = header.get_content_type(), header.get_content_charset() or "utf-8"
    if mime != FORM and mime != "application/json" and not mime.endswith("+json"):
        raise WebhookRejected(
            415,
            f"content type {mime} is not supported: set the webhook's content type to "
            f"application/json (or {FORM})",
        )
    try:
        if mime != FORM:
            return body if charset in ("utf-8", "utf8") else body.decode(charset).encode()
        fields = parse_qs(body.decode("ascii"), encoding=charset, errors="strict")
    except LookupError:
        raise WebhookRejected(415, f"unknown charset {charset!r} in Content-Type") from None
    except UnicodeDecodeError as exc:
        raise WebhookRejected(400, f"body is not valid {charset}: {exc.reason}") from None
    payload = fields.get("payload")
    if not payload:
        raise WebhookRejected(400, f"{FORM} delivery lacks the payload field")
    return payload[0].encode()


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The delivery's JSON object, whichever content type carried it (see `payload_bytes`)."""
    return parse_json(payload_bytes(body, content_type))


MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a delivery may have; forges' payloads stay under 10."""
MAX_NUMBER_LENGTH = 64
"""Longest number literal, in characters; 64-bit ids and floats take at most 24."""
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_LONG_NUMBER = re.compile(rb"[-+.eE0-9]{%d,}" % (MAX_NUMBER_LENGTH + 1))
_NESTING = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _NESTING)


def check_json_limits(body: bytes) -> None:
    """Refuse (400) a JSON document nested deeper than `MAX_JSON_DEPTH` or with a number longer
    than `MAX_NUMBER_LENGTH` characters, before any parser sees it: Python's parser recurses
    once per level and converts integers of over 4,300 digits only by raising."""
    skeleton = _STRING.sub(b'""', body)
    long = _LONG_NUMBER.search(skeleton)
    if long is not None:
        raise WebhookRejected(
            400,
            f"body holds a number of {len(long.group())} characters: "
            f"at most {MAX_NUMBER_LENGTH} are accepted",
        )
    brackets = skeleton.translate(None, _NOT_BRACKETS)
    depth = max(accumulate(_NESTING[b] for b in brackets), default=0)
    if depth > MAX_JSON_DEPTH:
        raise WebhookRejected(
            400, f"body nests {depth} levels deep: at most {MAX_JSON_DEPTH} are accepted"
        )


def parse_json(body: bytes) -> dict[str, Any]:
    """The delivery's JSON object, within the limits of `check_json_limits`; else a 400."""
    check_json_limits(body)
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


def repo_id(repository: Any) -> str | None:
    """The forge's id of a repository object (GitHub and Gitea: a number), when it has one."""
    value = repository.get("id") if isinstance(repository, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        return None
    return str(value)


def pull_request(payload: dict[str, Any]) -> PullRequestHook:
    """A `pull_request` delivery. A retarget is `edited` with the old base in `changes.base.ref`
    (GitHub) or `changes.ref` (Gitea)."""
    pr = required(payload, "pull_request", dict)
    merge_commit = pr.get("merge_commit_sha")
    repository = required(payload, "repository", dict)
    default = repository.get("default_branch")
    changes = payload.get("changes")
    return PullRequestHook(
        action=required(payload, "action", str),
        repo=_repo(payload),
        repo_id=repo_id(repository),
        default_branch=default if isinstance(default, str) and default else None,
        base_changed=isinstance(changes, dict) and ("base" in changes or "ref" in changes),
        number=required(pr, "number", int),
        title=_optional_str(pr, "title"),
        body=_optional_str(pr, "body"),
        author=required(pr, "user.login", str),
        head_branch=required(pr, "head.ref", str),
        head_sha=required(pr, "head.sha", str),
        base_branch=required(pr, "base.ref", str),
        merged=pr.get("merged") is True,
        merge_commit_sha=merge_commit if isinstance(merge_commit, str) else None,
        updated_at=_timestamp(pr.get("updated_at")),
    )


def push(payload: dict[str, Any]) -> PushHook:
    """A `push` delivery (GitHub's shape, which Gitea and the local forge send too; Gitea names
    the pusher in `pusher.login`). A created branch has `created` or an all-zero `before`, a
    deleted one `deleted` or an all-zero `after`."""
    repository = required(payload, "repository", dict)
    default = repository.get("default_branch")
    pusher = _at(payload, "pusher.login") or _at(payload, "pusher.name")
    pusher = pusher or _at(payload, "pusher.username") or _at(payload, "sender.login")
    message = _at(payload, "head_commit.message")
    before, after = required(payload, "before", str), required(payload, "after", str)
    return PushHook(
        repo=_repo(payload),
        repo_id=repo_id(repository),
        default_branch=default if isinstance(default, str) and default else None,
        ref=required(payload, "ref", str),
        before=before,
        after=after,
        created=payload.get("created") is True or set(before) == {"0"},
        deleted=payload.get("deleted") is True or set(after) == {"0"},
        pusher=pusher if isinstance(pusher, str) and pusher else UNKNOWN_PUSHER,
        commits=commit_authors(payload.get("commits") or [payload.get("head_commit")]),
        title=message.splitlines()[0] if isinstance(message, str) and message else "",
    )


def commit_authors(commits: Any, id_key: str = "id") -> list[CommitAuthor]:
    """The authors of a push's `commits[]` (each commit's sha in `id_key`): `author.name`,
    `author.email` and (GitHub, Gitea) `author.username`, the account the forge links to that
    email."""
    found = []
    for commit in commits if isinstance(commits, list) else []:
        sha, author = _at(commit, id_key), _at(commit, "author")
        if not isinstance(sha, str) or not isinstance(author, dict):
            continue
        name, email, login = (author.get(k) for k in ("name", "email", "username"))
        found.append(
            CommitAuthor(
                sha=sha,
                name=name if isinstance(name, str) else "",
                email=email if isinstance(email, str) else "",
                login=login if isinstance(login, str) and login else None,
            )
        )
    return found


def _timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (GitHub: `2019-05-15T15:20:33Z`, Gitea: with an offset)."""
    try:
        stamp = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return stamp if stamp is None or stamp.tzinfo else stamp.replace(tzinfo=UTC)


def review(payload: dict[str, Any]) -> ReviewHook:
    """A `pull_request_review` delivery; a dismissed review (action `dismissed`, review state
    `dismissed`) has the state `dismissed`, whatever it was before."""
    dismissed = payload.get("action") == "dismissed"
    return ReviewHook(
        repo=_repo(payload),
        number=required(payload, "pull_request.number", int),
        body=_optional_str(required(payload, "pull_request", dict), "body"),
        reviewer=required(payload, "review.user.login", str),
        state="dismissed" if dismissed else required(payload, "review.state", str).lower(),
        commit_id=required(payload, "review.commit_id", str),
        head_sha=required(payload, "pull_request.head.sha", str),
    )


def _at(value: Any, path: str) -> Any:
    """The value at dotted `path`, or None where the payload has no such object."""
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def renamed(payload: dict[str, Any]) -> tuple[str, str, str | None]:
    """A `repository` delivery with action `renamed` or `transferred`: the old full name, the new
    one and the repository id. GitHub gives the old name in `changes.repository.name.from` and
    the old owner in `changes.owner.from.user` or `.organization`."""
    new = _repo(payload)
    owner, _, name = new.partition("/")
    old_name = _at(payload, "changes.repository.name.from")
    old_owner = _at(payload, "changes.owner.from.user.login") or _at(
        payload, "changes.owner.from.organization.login"
    )
    old_owner = old_owner if isinstance(old_owner, str) else owner
    old_name = old_name if isinstance(old_name, str) else name
    return f"{old_owner}/{old_name}", new, repo_id(payload.get("repository"))
