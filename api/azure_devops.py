"""Azure DevOps service hooks: authentication and turning pull-request and push events into
Ingress calls.

Service hooks are not signed. The subscription sends HTTP Basic credentials (over HTTPS), which
are checked in constant time before the body is read further. The payload is then only a pointer:
whatever it says, the pull request is re-read through the REST API and acted on as it is now.
That also makes `git.pullrequest.merged` ("merge commit created", sent for speculative merges
too) safe: a pull request counts as merged only when the API says it is completed. A `git.push`
names the refs it moved and their new commits, which the push's change then checks out and asks
the forge about (a pull request merged as the commit) before building anything.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api.github import WebhookRejected, commit_authors, repo_id, required
from baton.forge_events import PullRequestHook, PushHook, ReviewHook
from baton.forges.base import (
    Forge,
    ForgeError,
    PullRequest,
    PullRequestNotFound,
    RepositoryNotFound,
)
from baton.ingress import Ingress, Reply
from baton.models import UNKNOWN_PUSHER

PULL_REQUEST_EVENTS = (
    "git.pullrequest.created",
    "git.pullrequest.updated",
    "git.pullrequest.merged",
)


def basic_auth(username: str, password: str) -> str:
    """The Authorization header value a subscription with these credentials sends."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def verify_basic_auth(username: str, password: str | None, header: str | None) -> None:
    """Raise 401 unless `header` carries exactly these Basic credentials (constant time)."""
    if not password:
        raise WebhookRejected(401, "no webhook secret is configured: set BATON_WEBHOOK_SECRET")
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise WebhookRejected(401, "missing Basic credentials: set them on the service hook")
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected(401, "malformed Basic credentials") from None
    expected = f"{username}:{password}".encode()
    if not hmac.compare_digest(given, expected):
        raise WebhookRejected(401, "Basic credentials do not match")


def event_and_delivery(payload: Mapping[str, Any]) -> tuple[str, str]:
    """The envelope's event type and id (the id is the same on a redelivery)."""
    return required(payload, "eventType", str), required(payload, "id", str)


def pull_request_of(payload: dict[str, Any]) -> tuple[str, int]:
    """The PROJECT/REPOSITORY and number the event is about."""
    project = required(payload, "resource.repository.project.name", str)
    name = required(payload, "resource.repository.name", str)
    return f"{project}/{name}", required(payload, "resource.pullRequestId", int)


async def handle(
    ingress: Ingress, forge: Forge, event: str, delivery_id: str, payload: dict[str, Any]
) -> Reply:
    """Act on a pull-request event as the pull request is now, read back through the API; on a
    `git.push`, on each branch it moved."""
    if event == "git.push":
        outcomes = [await ingress.push(hook) for hook in pushes(payload)]
        if not outcomes:
            return Reply(202, "ignored: the push updated no ref")
        started = next((o.workflow_id for o in outcomes if o.workflow_id), None)
        return Reply(202, "; ".join(o.message for o in outcomes), started)
    if event not in PULL_REQUEST_EVENTS:
        return Reply(202, f"ignored: event {event!r}")
    repo, number = pull_request_of(payload)
    try:
        pr = await asyncio.to_thread(forge.get_pull_request, repo, number)
    except (PullRequestNotFound, RepositoryNotFound) as exc:
        return Reply(202, f"ignored: {exc}")
    except ForgeError as exc:
        raise WebhookRejected(503, f"cannot re-read {repo}#{number}: {exc}") from None
    repository = payload["resource"]["repository"]
    known = _Repository(repo_id(repository), _default_branch(repository))
    if pr.state != "open":  # completed (merged) or abandoned
        return await ingress.pull_request(_hook(pr, "closed", known), delivery_id)
    if event == "git.pullrequest.created":
        return await ingress.pull_request(_hook(pr, "opened", known), delivery_id)
    if event == "git.pullrequest.merged":
        return Reply(202, f"ignored: {repo}#{number} has a merge commit but is not completed")
    if ingress.config.is_gitops_repo(repo):
        return await _reviews(ingress, forge, pr, _unapproving(payload))
    # A push, a vote, a title edit, a reactivation or a new target branch: "updated" says only
    # that something changed; a head the change already has is a no-op for it.
    return await ingress.pull_request(_hook(pr, "updated", known), delivery_id)


ZERO_SHA = "0" * 40


def pushes(payload: dict[str, Any]) -> list[PushHook]:
    """A `git.push` event as one normalized push per ref it updated: `resource.refUpdates[]`
    (`name`, `oldObjectId`, `newObjectId`; all zeros: created or deleted), in the repository
    `resource.repository` (`project.name`/`name`, `id`, `defaultBranch`), by
    `resource.pushedBy` (`uniqueName`), the title from the head's entry in `resource.commits[]`
    (`commitId`, `comment`), whose `author`s wrote the push (the event does not say which ref
    got which commit: a push of several refs names only each head's author). The service hook
    must send the resource ("Resource details to send": All), which is what names the refs."""
    resource = required(payload, "resource", dict)
    if "refUpdates" not in resource:
        raise WebhookRejected(
            400,
            "payload lacks resource.refUpdates: set the service hook's "
            '"Resource details to send" to All',
        )
    updates = required(payload, "resource.refUpdates", list)
    project = required(payload, "resource.repository.project.name", str)
    name = required(payload, "resource.repository.name", str)
    repository = resource["repository"]
    pusher = resource.get("pushedBy")
    pusher = pusher if isinstance(pusher, dict) else {}
    by = pusher.get("uniqueName") or pusher.get("displayName")
    commits = resource.get("commits")
    comments = {
        c["commitId"]: c["comment"]
        for c in (commits if isinstance(commits, list) else [])
        if isinstance(c, dict)
        and isinstance(c.get("commitId"), str)
        and isinstance(c.get("comment"), str)
    }
    authors = commit_authors(commits, id_key="commitId")
    hooks = []
    for index, update in enumerate(updates):
        where = f"resource.refUpdates[{index}]"
        if not isinstance(update, dict):
            raise WebhookRejected(400, f"payload field {where} must be an object")
        ref, before, after = (
            _ref_field(update, where, key) for key in ("name", "oldObjectId", "newObjectId")
        )
        comment = comments.get(after, "")
        hooks.append(
            PushHook(
                repo=f"{project}/{name}",
                repo_id=repo_id(repository),
                default_branch=_default_branch(repository),
                ref=ref,
                before=before,
                after=after,
                created=before == ZERO_SHA,
                deleted=after == ZERO_SHA,
                pusher=by if isinstance(by, str) and by else UNKNOWN_PUSHER,
                commits=[a for a in authors if len(updates) == 1 or a.sha == after],
                title=comment.splitlines()[0] if comment else "",
            )
        )
    return hooks


def _ref_field(update: dict[str, Any], where: str, key: str) -> str:
    value = update.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookRejected(400, f"payload lacks {where}.{key}")
    return value


@dataclass
class _Repository:
    """What the event says of the repository: its id (stable across renames) and default branch."""

    id: str | None
    default_branch: str | None


def _default_branch(repository: dict[str, Any]) -> str | None:
    value = repository.get("defaultBranch")
    return value.removeprefix("refs/heads/") if isinstance(value, str) and value else None


def _unapproving(payload: dict[str, Any]) -> list[str]:
    """Reviewers the event lists with no vote (0, as after "reset votes on new pushes") or
    "waiting for the author" (-5): an approval of theirs stops counting. Read from the payload,
    which only ever takes an approval away (the votes that count are re-read through the API)."""
    reviewers = payload["resource"].get("reviewers")
    return [
        r["uniqueName"]
        for r in (reviewers if isinstance(reviewers, list) else [])
        if isinstance(r, dict)
        and isinstance(r.get("uniqueName"), str)
        and not r.get("isContainer")
        and isinstance(r.get("vote"), int)
        and -10 < r["vote"] < 5
    ]


async def _reviews(
    ingress: Ingress, forge: Forge, pr: PullRequest, unapproving: list[str]
) -> Reply:
    """Each current vote on a GitOps PR goes to its rollout, judged there by the policy; a
    reviewer whose vote was reset or withdrawn goes there as a dismissed review."""
    try:
        reviews = await asyncio.to_thread(forge.list_reviews, pr.repo, pr.number)
    except ForgeError as exc:
        raise WebhookRejected(
            503, f"cannot read the votes on {pr.repo}#{pr.number}: {exc}"
        ) from exc
    outcomes = [
        await ingress.review(
            ReviewHook.of(pr, reviewer=review.user, state=review.state, commit_id=review.commit_id)
        )
        for review in reviews
        if review.state != "commented"
    ]
    voted = {review.user for review in reviews if review.state != "commented"}
    outcomes += [
        await ingress.review(
            ReviewHook.of(pr, reviewer=user, state="dismissed", commit_id=pr.head_sha)
        )
        for user in unapproving
        if user not in voted
    ]
    if not outcomes:
        return Reply(202, f"ignored: no votes on {pr.repo}#{pr.number}")
    return Reply(202, "; ".join(o.message for o in outcomes), outcomes[0].workflow_id)


def _hook(pr: PullRequest, action: str, repository: _Repository) -> PullRequestHook:
    return PullRequestHook.of(
        pr, action, repo_id=repository.id, default_branch=repository.default_branch
    )
