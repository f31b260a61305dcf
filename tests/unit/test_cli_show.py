"""`baton changes show`: each decision reads as a record of who, through what, when and on what;
each pipeline step with its own log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from baton.changes import ChangeDetail
from baton.models import ChangeStatus, Decision, Gate, RolloutStatus, Stage
from baton.promotion import Position, PromotionGraph, stages_of
from cli.main import render_change
from cli.watch import Watcher

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
CONTENT = "sha256:" + "ab" * 32


def change_status(**fields: Any) -> ChangeStatus:
    """Change 1 of web by alice, promoting unless `fields` say otherwise."""
    change = {"id": "change/web/1", "app": "web", "repo": "web", "pr_number": 1}
    return ChangeStatus(
        **change, author="alice", head_sha="f" * 40, **({"state": "promoting"} | fields)
    )


def test_show_names_who_decided_through_what_and_on_which_content(
    capsys: pytest.CaptureFixture[str],
) -> None:
    approvals = [
        Decision(
            user="carol",
            via="token",
            issuer="baton",
            subject="0123456789ab",
            at=AT,
            content_hash=CONTENT,
            comment="lgtm",
        ),
        Decision(
            user="frank",
            groups=["release-managers"],
            via="oidc",
            issuer="https://id.example.com",
            subject="sub-frank",
            at=AT,
            content_hash=CONTENT,
        ),
    ]
    rollout = RolloutStatus(
        name="approval",
        started_at=AT,
        environment="prod",
        approvals=approvals[1:],
        voided=approvals[:1],
        content_hash=CONTENT,
        gate=Gate(
            kind="approval",
            environment="prod",
            description="1/2 approvals for prod",
            waiting_on=["dave"],
            required=2,
            approved_by=["frank"],
            content_hash=CONTENT,
            head="d" * 40,
        ),
    )
    change = change_status()

    render_change(ChangeDetail(change=change, rollout=rollout))

    out = capsys.readouterr().out
    assert (
        "approved by frank [release-managers] via OIDC https://id.example.com sub=sub-frank "
        f"at 2026-12-01 09:30:00 on {CONTENT[:19]}"
    ) in out
    assert (
        "approved by carol via Baton token 0123456789ab at 2026-12-01 09:30:00 on "
        f"{CONTENT[:19]}: lgtm (no longer counts: the PR's content changed)"
    ) in out
    assert f"content: {CONTENT} (GitOps PR head {'d' * 40})" in out
    assert "approve with: baton approve change/web/1 --env prod\n" in out


def test_a_pipeline_step_shows_and_watches_with_its_own_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = "sha256:" + "cd" * 32
    seen = "image test failed: GET http://127.0.0.1:8080/healthz did not answer 200 within 60s"
    step = Stage(
        name="image_test",
        started_at=AT,
        ended_at=AT + timedelta(seconds=4),
        outcome="failed",
        detail=seen,
        links={"logs": log},
    )
    change = change_status(state="validating")
    detail = ChangeDetail(change=change, steps=[step])

    render_change(detail)
    (ended,) = [e for e in Watcher(change.id).update(detail) if e.event == "ended"]

    assert f"✘ image_test 4.0s {seen} (logs: {log})" in capsys.readouterr().out
    assert (ended.stage, ended.outcome, ended.logs) == ("image_test", "failed", log)


def test_show_draws_the_promotion_graph_and_where_the_change_stands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    graph = PromotionGraph(stages_of(["dev", ["staging-a", "staging-b"], "prod"]))
    positions: dict[str, Position] = {
        "dev": "deployed",
        "staging-a": "deployed",
        "staging-b": "failed",
        "prod": "blocked",
    }
    details = {"staging-b": "helm template failed", "prod": "a predecessor did not deploy"}
    change = change_status(state="failed", promotion=graph.steps(positions, details))

    render_change(ChangeDetail(change=change))

    out = capsys.readouterr().out
    assert "promotion: dev ✓ → [staging-a ✓ | staging-b ✗] → prod ⊘\n" in out
    assert "  staging-b: failed: helm template failed\n" in out
    assert "  prod: blocked: a predecessor did not deploy\n" in out
