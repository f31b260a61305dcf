"""What each kind of notification receiver is sent (the delivery itself, retries and signatures
run against loopback receivers in tests/workflows/test_notifications.py)."""

from __future__ import annotations

from baton.config import NotificationConfig
from baton.notify import Notification, payload

NOTE = Notification(
    id="rollout/web/prod/abc/run-1/1",
    event="approval_needed",
    app="web",
    environment="prod",
    change_id="change/web/7",
    rollout_id="rollout/web/prod/" + "f" * 40,
    commit="f" * 40,
    detail="GitOps PR #12 needs 2 approval(s)",
    url="http://127.0.0.1:8233/namespaces/default/workflows/rollout%2Fweb",
)
LINE = "web ffffffffffff in prod waits for approval: GitOps PR #12 needs 2 approval(s)"


def test_slack_gets_one_mrkdwn_line_with_a_link() -> None:
    target = NotificationConfig(kind="slack", url_env="SLACK_URL")
    assert payload(target, NOTE) == {"text": f"{LINE} <{NOTE.url}|details>"}


def test_teams_gets_an_adaptive_card_message_with_an_open_url_action() -> None:
    target = NotificationConfig(kind="teams", url_env="TEAMS_URL")
    message = payload(target, NOTE)
    assert message["type"] == "message"
    [attachment] = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"] == [{"type": "TextBlock", "text": LINE, "wrap": True}]
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Details", "url": NOTE.url}]


def test_a_generic_webhook_gets_the_whole_event() -> None:
    target = NotificationConfig(kind="webhook", url_env="HOOK_URL", secret_env="HOOK_SECRET")
    assert payload(target, NOTE) == NOTE.model_dump()
    assert set(NOTE.model_dump()) == {
        "id",
        "event",
        "app",
        "environment",
        "change_id",
        "rollout_id",
        "commit",
        "detail",
        "url",
    }
