"""The change's comment on its pull request, written from what its workflows publish."""

from __future__ import annotations

from datetime import UTC, datetime

from baton.changes import ChangeDetail
from baton.models import Gate, GitOpsPullRequest, RolloutResult, RolloutStatus
from baton.pr_comment import marker, render
from tests.fakes.records import fake_change

AT = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
UI = "http://127.0.0.1:8233"


def pr(number: int) -> GitOpsPullRequest:
    return GitOpsPullRequest(
        number=number, url=f"http://forge/gitops/{number}", head_branch="b", head_sha="d" * 40
    )


def test_each_environment_its_outcome_and_the_gate_with_whom_it_waits_on() -> None:
    change = fake_change(
        "web",
        7,
        reason="prod",
        rollouts=[RolloutResult(environment="dev", outcome="deployed", gitops_pr=pr(3))],
        current_rollout="rollout/web/prod/" + "b" * 40,
        environments=["dev", "prod", "dr"],
    )
    waiting = RolloutStatus(
        name="approval",
        started_at=AT,
        environment="prod",
        gitops_pr=pr(4),
        gate=Gate(
            kind="approval",
            environment="prod",
            description="1/2 approvals for prod",
            waiting_on=["dave", "erin"],
        ),
    )

    rollout = f"[rollout]({UI}/namespaces/default/workflows/rollout%2Fweb%2Fprod%2F{'b' * 40})"
    body = render(ChangeDetail(change=change, rollout=waiting), UI, "default")

    assert body.splitlines() == [
        f"### Baton: [change/web/7]({UI}/namespaces/default/workflows/change%2Fweb%2F7)",
        "",
        "**promoting**: prod",
        "",
        "⏳ 1/2 approvals for prod (waiting on dave, erin)",
        "",
        "| environment | outcome | GitOps PR |",
        "|---|---|---|",
        "| dev | ✅ deployed | [#3](http://forge/gitops/3) |",
        "| prod | ⏳ approval | [#4](http://forge/gitops/4) |",
        "| dr | · not yet |  |",
        "",
        f"Temporal UI: [change]({UI}/namespaces/default/workflows/change%2Fweb%2F7) · {rollout}",
        "",
        marker("change/web/7"),
    ]
    assert marker("change/web/7") == "<!-- baton:change/web/7 -->"


def test_with_the_apis_url_the_comment_links_the_changes_page_on_the_board() -> None:
    change = fake_change("web", 7, environments=["dev"])

    body = render(ChangeDetail(change=change), UI, "default", board_url="http://baton.example/")

    lines = body.splitlines()
    assert lines[-3:] == [
        "Board: [change/web/7](http://baton.example/board/changes/web/7)",
        "",
        marker("change/web/7"),
    ]
