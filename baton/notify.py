"""Chat and webhook notifications of a rollout's events, each posted at most once per target.

Formats, from the receivers' documentation:
- Slack incoming webhooks take `{"text": ...}` (mrkdwn links `<url|label>`);
  https://api.slack.com/messaging/webhooks
- Microsoft Teams incoming webhooks (Workflows) take a message with an Adaptive Card attachment;
  https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
- generic webhooks get Baton's JSON (`Notification` below), signed like GitHub's webhooks:
  `X-Baton-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, with `X-Baton-Event` and the
  idempotency key in `Idempotency-Key` and `X-Baton-Delivery`, so a receiver can drop a repeat.

Exactly once, as far as a sender can: each target's delivery is recorded under its idempotency
key in `SentLog` once the receiver accepted it, and a retried activity skips what is recorded;
a worker that dies between the receiver's answer and the record sends again, with the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import httpx
from pydantic import BaseModel

from baton import shared_http
from baton.config import NotificationConfig, NotificationEvent
from baton.errors import ConfigurationError, InfrastructureError
from baton.settings import read_secret
from baton.store import FileRecordStore, RecordStore

SENT = "notifications/sent"

TIMEOUT_S = 10
HEADLINES: dict[NotificationEvent, str] = {
    "approval_needed": "waits for approval",
    "deployed": "deployed",
    "failed": "failed",
    "rolled_back": "rolled back",
}


class Notification(BaseModel):
    """One event of one rollout, as a generic webhook receives it (JSON); a `failed` of CI on a
    merged commit has no `environment` and the CI pipeline's id as `rollout_id`."""

    id: str
    """The idempotency key: the same for every attempt to post this event."""
    event: NotificationEvent
    app: str
    environment: str
    change_id: str
    rollout_id: str
    commit: str
    detail: str = ""
    url: str = ""
    """The change's page on the board when the workers know its URL (BATON_API_BASE), else the
    rollout (CI's `failed`: the change) in the Temporal UI."""

    def text(self) -> str:
        """One line for people."""
        where = f"in {self.environment}" if self.environment else "CI"
        line = f"{self.app} {self.commit[:12]} {where} {HEADLINES[self.event]}"
        return f"{line}: {self.detail}" if self.detail else line


class NotificationConfigError(ConfigurationError):
    """A notification target cannot be posted to as configured."""


class NotificationUnavailable(InfrastructureError):
    """The receiver did not take the notification now; a later attempt may."""


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex>`, the HMAC-SHA256 of `body` keyed with `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(target: NotificationConfig, note: Notification) -> dict:
    """The JSON a target of `target.kind` takes."""
    if target.kind == "slack":
        link = f" <{note.url}|details>" if note.url else ""
        return {"text": f"{note.text()}{link}"}
    if target.kind == "teams":
        body: list[dict] = [{"type": "TextBlock", "text": note.text(), "wrap": True}]
        actions = [{"type": "Action.OpenUrl", "title": "Details", "url": note.url}]
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": body,
            **({"actions": actions} if note.url else {}),
        }
        return {
            "type": "message",
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
            ],
        }
    return note.model_dump()


class SentLog:
    """Which (target, idempotency key) pairs a receiver accepted: one empty record each in a
    `baton.store.RecordStore` (kind `notifications/sent`, keyed by a hash: the key names the
    rollout, the target only by its variable), so a retry on another worker sees them too; a
    directory (`<root>/notifications/sent/<hash>.json`) when given a path."""

    def __init__(self, records: RecordStore | Path) -> None:
        self.records = FileRecordStore(records) if isinstance(records, Path) else records

    @staticmethod
    def _key(target: NotificationConfig, key: str) -> str:
        return hashlib.sha256(f"{target.kind}|{target.url_env}|{key}".encode()).hexdigest()

    def sent(self, target: NotificationConfig, key: str) -> bool:
        return self.records.load(SENT, self._key(target, key)) is not None

    def record(self, target: NotificationConfig, key: str) -> None:
        self.records.save(SENT, self._key(target, key), b"{}")


def deliver(
    targets: list[NotificationConfig], note: Notification, log: SentLog
) -> list[NotificationConfig]:
    """Post `note` to each target that wants its event and has not taken it yet; the targets
    posted to now. Raises NotificationConfigError (a missing variable, a URL the receiver
    refuses) or NotificationUnavailable (no answer, 5xx, 429), after posting to the others."""
    posted: list[NotificationConfig] = []
    errors: list[Exception] = []
    for target in targets:
        if note.event not in target.events or log.sent(target, note.id):
            continue
        try:
            post(target, note)
        except (NotificationConfigError, NotificationUnavailable) as exc:
            errors.append(exc)
            continue
        log.record(target, note.id)
        posted.append(target)
    config_errors = [e for e in errors if isinstance(e, NotificationConfigError)]
    if config_errors:
        raise config_errors[0]
    if errors:
        raise errors[0]
    return posted


def post(target: NotificationConfig, note: Notification) -> None:
    """POST `note` to `target`. Errors name the variable, never the URL (it embeds a token)."""
    url = read_secret(target.url_env)
    if not url:
        raise NotificationConfigError(
            f"{target.kind} notification URL is not set: set {target.url_env} on the workers"
        )
    body = json.dumps(payload(target, note)).encode()
    headers = {"content-type": "application/json", "user-agent": "baton"}
    if target.kind == "webhook":
        secret = read_secret(target.secret_env or "")
        if not secret:
            raise NotificationConfigError(
                f"webhook notification secret is not set: set {target.secret_env} on the workers"
            )
        headers |= {
            "x-baton-event": note.event,
            "x-baton-delivery": note.id,
            "idempotency-key": note.id,
            "x-baton-signature-256": sign(secret, body),
        }
    try:
        response = shared_http.client().post(url, content=body, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise NotificationUnavailable(
            f"{target.kind} notification ({target.url_env}) not delivered: {type(exc).__name__}"
        ) from None
    if response.status_code >= 500 or response.status_code == 429:
        raise NotificationUnavailable(
            f"{target.kind} notification ({target.url_env}) not taken now: HTTP "
            f"{response.status_code}"
        )
    if response.status_code >= 400:
        raise NotificationConfigError(
            f"{target.kind} notification ({target.url_env}) refused with HTTP "
            f"{response.status_code}: check the URL in {target.url_env}"
            + (f" and the secret in {target.secret_env}" if target.secret_env else "")
        )
