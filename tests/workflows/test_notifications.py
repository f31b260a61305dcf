"""Notifications of a rollout's events, posted by the real `send_notification` activity to
receivers on loopback (a generic webhook that checks Baton's HMAC signature, a Slack-shaped one),
from the real EnvironmentRollout on a real Temporal server (deploy steps stood in for, as in
test_rollout.py). A receiver that fails once makes Temporal retry the activity: nobody gets a
message twice."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client

from activities import context
from activities.notify import send_notification
from baton.config import AppConfig, BatonConfig, NotificationConfig
from baton.models import (
    ChangePlan,
    ChangeStatus,
    Decision,
    PullRequestEvent,
    RolloutInput,
    RolloutResult,
)
from baton.settings import Settings
from baton.temporal import Signals, TaskQueues, change_id, pipeline_id
from tests.conftest import at_gate, serving
from tests.fakes.forges import Served
from tests.workflows import test_change as changes
from tests.workflows import test_pipelines as pipelines
from tests.workflows import test_rollout as rollout
from tests.workflows.test_pipelines import APP, Steps
from tests.workflows.test_rollout import M, rollout_input, start, wait_for_gate
from workflows import WORKFLOWS
from workflows.rollout import EnvironmentRollout

fresh_world, steps = rollout.fresh_world, pipelines.steps
SECRET = "notify-test-signing-secret"
SLACK_TOKEN = "T000/B000/slack-token-in-url"


@dataclass
class Receiver:
    """A webhook receiver on loopback: what it accepted, and how many requests it failed."""

    secret: str | None = None
    fail_first: int = 0
    accepted: list[tuple[dict[str, str], dict]] = field(default_factory=list)
    failed: int = 0
    refused: int = 0

    def app(self) -> Starlette:
        async def receive(request: Request) -> JSONResponse:
            body = await request.body()
            if self.secret is not None:
                expected = (
                    "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
                )
                if not hmac.compare_digest(
                    expected, request.headers.get("x-baton-signature-256", "")
                ):
                    self.refused += 1
                    return JSONResponse({"error": "bad signature"}, status_code=401)
            if self.failed < self.fail_first:
                self.failed += 1
                return JSONResponse({"error": "try later"}, status_code=503)
            self.accepted.append((dict(request.headers), json.loads(body)))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


@pytest.fixture
def receivers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Receiver, Receiver]]:
    """A generic webhook and a Slack-shaped receiver (failing its first request), served on
    loopback; their URLs and the signing secret in the workers' environment."""
    hook, slack = Receiver(secret=SECRET), Receiver(fail_first=1)
    served = [Served(hook.app()).start(), Served(slack.app()).start()]
    monkeypatch.setenv("NOTIFY_HOOK_URL", f"{served[0].url}/hooks/baton")
    monkeypatch.setenv("NOTIFY_HOOK_SECRET", SECRET)
    monkeypatch.setenv("NOTIFY_SLACK_URL", f"{served[1].url}/services/{SLACK_TOKEN}")
    yield hook, slack
    for server in served:
        server.stop()


@pytest.fixture
async def client(
    isolated_client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Client]:
    """EnvironmentRollout with the stand-in deploy steps and the real notification activity."""
    config = BatonConfig(apps=[AppConfig(name="web", repo="web", image="web", chart="chart")])
    # One process, no registry: the sent-log in the store under BATON_HOME.
    settings = Settings(home=tmp_path, store="home")
    monkeypatch.setattr(context, "_current", context.Context(settings, config))
    activities = {
        TaskQueues.WORKFLOWS: [send_notification],
        TaskQueues.DEPLOY: [
            rollout.render_environment,
            rollout.propose,
            rollout.merge,
            rollout.close,
            rollout.revert,
            rollout.is_descendant,
            rollout.request_reconcile,
            rollout.check_sync,
            rollout.verify,
            rollout.verify_running,
        ],
    }
    async with serving(isolated_client, [EnvironmentRollout], activities):
        yield isolated_client


def notified(required: int = 1) -> RolloutInput:
    """A prod rollout posting every event to the webhook, and `deployed` to Slack."""
    return rollout_input(required=required).model_copy(
        update={
            "notifications": [
                NotificationConfig(
                    kind="webhook", url_env="NOTIFY_HOOK_URL", secret_env="NOTIFY_HOOK_SECRET"
                ),
                NotificationConfig(kind="slack", url_env="NOTIFY_SLACK_URL", events=["deployed"]),
            ]
        }
    )


async def test_each_event_reaches_each_receiver_once_signed_even_after_a_retry(
    client: Client, receivers: tuple[Receiver, Receiver]
) -> None:
    hook, slack = receivers
    rollout.world.polled_synced = {M}
    handle = await start(client, notified())
    await wait_for_gate(handle, "approval")
    assert [body["event"] for _, body in hook.accepted] == ["approval_needed"]
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="carol"))

    result: RolloutResult = await handle.result()

    assert result.outcome == "deployed"
    # Slack failed the first post of `deployed`: Temporal retried the activity, and the webhook,
    # which had taken it already, did not get it again.
    assert slack.failed == 1 and hook.refused == 0
    assert [body["event"] for _, body in hook.accepted] == ["approval_needed", "deployed"]
    headers, deployed = hook.accepted[1]
    assert deployed["rollout_id"] == handle.id and deployed["environment"] == "prod"
    assert deployed["change_id"] == "change/web/1" and deployed["commit"] == rollout.COMMIT
    assert headers["idempotency-key"] == headers["x-baton-delivery"] == deployed["id"]
    assert headers["x-baton-event"] == "deployed"
    assert len({body["id"] for _, body in hook.accepted}) == 2
    assert [body for _, body in slack.accepted] == [
        {
            "text": f"web {rollout.COMMIT[:12]} in prod deployed: {result.reason} <"
            f"http://127.0.0.1:8233/namespaces/default/workflows/{handle.id.replace('/', '%2F')}"
            "|details>"
        }
    ]
    # The history names targets by their variables only: no URL, token or secret.
    history = "\n".join(str(event) for event in (await handle.fetch_history()).events)
    assert "NOTIFY_SLACK_URL" in history and "x-baton-event" not in history
    for secret in (SECRET, SLACK_TOKEN, "/services/", "/hooks/"):
        assert secret not in history


async def test_where_the_board_is_known_notifications_link_the_changes_page_there(
    client: Client, receivers: tuple[Receiver, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """BATON_API_BASE on the workers: Slack's "details" and the webhook's `url` open the
    change on Baton's board (the Temporal UI is the fallback, as above)."""
    hook, slack = receivers
    workers = context.current()
    settings = workers.settings.model_copy(update={"api_base": "https://baton.shop.example/"})
    monkeypatch.setattr(context, "_current", replace(workers, settings=settings))
    rollout.world.polled_synced = {M}
    handle = await start(client, notified(required=0))

    result: RolloutResult = await handle.result()

    page = "https://baton.shop.example/board/changes/web/1"
    assert [(body["event"], body["url"]) for _, body in hook.accepted] == [("deployed", page)]
    assert [body["text"] for _, body in slack.accepted] == [
        f"web {rollout.COMMIT[:12]} in prod deployed: {result.reason} <{page}|details>"
    ]


async def test_a_rollback_posts_rolled_back_then_failed(
    client: Client, receivers: tuple[Receiver, Receiver]
) -> None:
    hook, slack = receivers
    rollout.world.polled_synced = {M, rollout.REVERT}
    rollout.world.bad_versions = {rollout.COMMIT}
    handle = await start(client, notified(required=0))

    result: RolloutResult = await handle.result()

    assert result.outcome == "failed" and result.rollback.outcome == "rolled back"
    assert [(body["event"], body["detail"]) for _, body in hook.accepted] == [
        ("rolled_back", result.reason),
        ("failed", result.reason),
    ]
    assert slack.accepted == []  # it wants `deployed` only


async def test_a_refused_notification_is_a_note_and_the_rollout_goes_on(
    client: Client, receivers: tuple[Receiver, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    hook, _ = receivers
    monkeypatch.setenv("NOTIFY_HOOK_SECRET", "not-the-receivers-secret")
    rollout.world.polled_synced = {M}
    handle = await start(client, notified(required=0))

    result: RolloutResult = await handle.result()

    assert result.outcome == "deployed" and hook.accepted == [] and hook.refused == 1
    status = await handle.query(EnvironmentRollout.status)
    assert [stage.detail for stage in status.timeline if stage.name == "note"] == [
        (
            "deployed notification not sent: webhook notification (NOTIFY_HOOK_URL) refused with "
            "HTTP 401: check the URL in NOTIFY_HOOK_URL and the secret in NOTIFY_HOOK_SECRET"
        )
    ]


@pytest.fixture
async def change_client(
    isolated_client: Client, steps: Steps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Client]:
    """ChangeWorkflow with test_change.py's stand-ins and the real notification activity."""
    config = BatonConfig(apps=[APP])
    monkeypatch.setattr(context, "_current", context.Context(Settings(home=tmp_path), config))
    activities = changes.change_activities(steps)
    activities[TaskQueues.WORKFLOWS].append(send_notification)
    async with serving(isolated_client, WORKFLOWS, activities):
        yield isolated_client


async def test_ci_failing_on_the_merged_commit_is_notified_once(
    change_client: Client, steps: Steps, receivers: tuple[Receiver, Receiver]
) -> None:
    hook, slack = receivers
    steps.failing = {"long_test": "2 failed, 118 passed: test_checkout_total"}
    targets = notified().notifications
    plan = ChangePlan(app=APP, environments=[changes.environment("prod")], notifications=targets)
    change = await changes.open_change(change_client, 1, plan=plan)
    await at_gate(change, "merge", ChangeStatus)
    await change.signal(
        Signals.PULL_REQUEST_EVENT,
        PullRequestEvent(action="merged", merge_commit_sha=changes.merge_commit(1)),
    )

    assert (await change.result()).state == "failed"

    [(headers, body)] = hook.accepted
    assert headers["x-baton-event"] == "failed"
    assert (body["environment"], body["change_id"], body["commit"]) == (
        "",
        change_id(APP.name, 1),
        changes.merge_commit(1),
    )
    assert body["rollout_id"] == pipeline_id(change_id(APP.name, 1), "ci")
    assert body["detail"] == "CI failed: long_test: 2 failed, 118 passed: test_checkout_total"
    assert slack.accepted == []  # it takes `deployed` only
