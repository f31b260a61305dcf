"""`baton changes show`: each decision reads as a record of who, through what, when and on what."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from baton.changes import ChangeDetail
from baton.models import Decision, Gate, RolloutStatus
from cli.main import render_change
from tests.fakes.records import fake_change

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
CONTENT = "sha256:" + "ab" * 32


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
    render_change(ChangeDetail(change=fake_change("web", 1), rollout=rollout))

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
