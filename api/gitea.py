"""Gitea and Forgejo webhooks: authentication and normalization to Baton's forge events.

Gitea signs the raw body with HMAC-SHA256 and sends the bare hex digest in `X-Gitea-Signature`
(Forgejo: `X-Forgejo-Signature`, same value). Pull-request payloads are GitHub-shaped, except that
a new head is the action `synchronized`; reviews arrive as their own events
(`pull_request_approved`, `pull_request_rejected`) whose reviewer is the sender.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from api import github
from api.github import WebhookRejected, required
from baton.forge_events import PullRequestHook, ReviewHook

REVIEW_EVENTS = {
    "pull_request_approved": "approved",
    "pull_request_rejected": "changes_requested",
}
_ACTIONS = {"synchronized": "synchronize"}


def sign(secret: str, body: bytes) -> str:
    """The X-Gitea-Signature value Gitea sends for `body`."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Gitea's header, else Forgejo's spelling of it."""
    return headers.get(f"x-gitea-{name}") or headers.get(f"x-forgejo-{name}")


def verify_signature(secret: str | None, body: bytes, headers: Mapping[str, str]) -> None:
    """Raise 401 unless the signature header is the HMAC of the raw body (constant time)."""
    if not secret:
        raise WebhookRejected(401, "no webhook secret is configured: set BATON_WEBHOOK_SECRET")
    signature = _header(headers, "signature")
    if not signature:
        raise WebhookRejected(401, "missing X-Gitea-Signature (or X-Forgejo-Signature) header")
    if not hmac.compare_digest(sign(secret, body).encode(), signature.strip().lower().encode()):
        raise WebhookRejected(401, "X-Gitea-Signature does not match the body")


def event_and_delivery(headers: Mapping[str, str]) -> tuple[str, str]:
    """The event name and delivery id from the headers; 400 when either is missing."""
    event, delivery = _header(headers, "event"), _header(headers, "delivery")
    if not event or not delivery:
        raise WebhookRejected(400, "missing X-Gitea-Event or X-Gitea-Delivery header")
    return event, delivery


def pull_request(payload: dict[str, Any]) -> PullRequestHook:
    hook = github.pull_request(payload)
    return hook.model_copy(update={"action": _ACTIONS.get(hook.action, hook.action)})


def review(event: str, payload: dict[str, Any]) -> ReviewHook:
    """A review event; Gitea reviews the head at the time, so that is the reviewed commit."""
    pr = github.pull_request(payload)
    commit = payload.get("commit_id")
    return ReviewHook.of(
        pr,
        reviewer=required(payload, "sender.login", str),
        state=REVIEW_EVENTS[event],
        commit_id=commit if isinstance(commit, str) and commit else pr.head_sha,
    )
