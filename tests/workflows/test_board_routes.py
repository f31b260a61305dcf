"""The board's pages and decisions on a real Temporal server with the real rollout (the API app
in-process, as in test_decision_api): sign-in, the pages a signed-in approver sees, and decisions
that go through the decision API with its refusals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import httpx

from api.board import oidc
from api.board.routes import COOKIE
from baton import changes
from baton.config import FreezeWindow
from baton.logs import LogStore
from baton.models import ChangeStatus, CheckResult, Decision, RolloutInput, RolloutStatus, Stage
from baton.temporal import Queries, TaskQueues, WorkflowTypes, change_id, rollout_id
from tests.conftest import at_gate, gate_shown, visible
from tests.fakes.records import fake_artifact
from tests.workflows import test_decision_api as decision_api
from tests.workflows.test_decision_api import Api, Change
from workflows.rollout import EnvironmentRollout

# The decision API's in-process app on a real Temporal server, with the real rollout.
api = decision_api.api
issuer = decision_api.issuer

BOARD = "http://baton"  # the in-process app's origin
PARALLEL = ("staging-a", "staging-b")  # the environments of a parallel stage


def signed_in(api: Api, user: str) -> dict[str, str]:
    """What a browser sends once `user` signed in: the board's cookie, and its own origin."""
    token = api.tokens.create(user).token
    return {"Cookie": f"{COOKIE}={token}", "Origin": BOARD, "Accept": "application/json"}


def posting(api: Api, user: str) -> dict[str, str]:
    """A signed-in browser posting the board's form (as its script does)."""
    return signed_in(api, user) | {"Content-Type": "application/x-www-form-urlencoded"}


async def stand_in(api: Api, status: ChangeStatus, commit: str) -> None:
    """Start the change stand-in answering `status`, searchable as promoting `commit`."""
    await api.client.start_workflow(
        WorkflowTypes.CHANGE,
        status,
        id=status.id,
        task_queue=TaskQueues.WORKFLOWS,
        search_attributes=decision_api.attributes(commit, state="promoting", pr=status.pr_number),
    )


def promoting(pr: int, commit: str, environments: tuple[str, ...]) -> ChangeStatus:
    """alice's change promoting `commit` into `environments` at once, a rollout under way each."""
    rollouts = [rollout_id("web", name, commit) for name in environments]
    return ChangeStatus(
        id=change_id("web", pr),
        app="web",
        repo="web",
        pr_number=pr,
        author="alice",
        head_sha=commit,
        state="promoting",
        reason=", ".join(environments),
        artifact=fake_artifact("web", commit),
        current_rollout=rollouts[0],
        running_rollouts=rollouts,
        environments=list(environments),
    )


def approve(change: Change) -> str:
    return f"/board/changes/web/{change.pr}/rollouts/prod/approve"


async def test_pages_send_strangers_to_sign_in_and_a_bad_token_gets_its_reason(api: Api) -> None:
    page = await api.http.get("/board/decisions")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/board/sign-in?next=%2Fboard%2Fdecisions")

    form = {"Origin": BOARD, "Content-Type": "application/x-www-form-urlencoded"}
    bad = await api.http.post(
        "/board/sign-in", content="token=baton_0123456789ab_" + "x" * 43, headers=form
    )
    assert bad.status_code == 401 and "unknown token: ask an administrator for one" in bad.text
    assert "set-cookie" not in bad.headers

    good = await api.http.post(
        "/board/sign-in",
        content=urlencode({"token": api.tokens.create("carol").token, "next": "/board"}),
        headers=form,
    )
    assert good.status_code == 303 and good.headers["location"] == "/board"
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/board" in cookie


async def test_carol_sees_what_waits_on_her_with_its_diff_and_the_grid_shows_the_gate(
    api: Api,
) -> None:
    change = await api.start_change()
    headers = signed_in(api, "carol")
    decisions = await api.http.get("/board/decisions", headers=headers)
    assert decisions.status_code == 200, decisions.text
    assert 'id="waiting-web-prod"' in decisions.text
    assert "changed: Deployment/prod/web" in decisions.text  # the rollout's render result
    assert f"/board/changes/web/{change.pr}/rollouts/prod/reject" in decisions.text

    grid = await api.http.get("/board", headers=headers)
    assert 'id="cell-web-prod"' in grid.text and 'data-state="waiting-approval"' in grid.text
    assert "waiting on carol, dave, group:release-managers" in grid.text

    erin = await api.http.get("/board/decisions", headers=signed_in(api, "erin"))
    assert 'id="nothing-waiting"' in erin.text


async def test_a_decision_on_content_the_pr_no_longer_holds_asks_to_review_again(api: Api) -> None:
    change = await api.start_change()
    headers = posting(api, "carol")
    stale = await api.http.post(
        approve(change), content="content_hash=sha256:0ld&comment=ok", headers=headers
    )
    assert stale.status_code == 403
    assert "look at the change again" in stale.json()["error"]
    assert stale.json()["review_again"] is True

    status = await change.rollout.query(EnvironmentRollout.status)
    fresh = await api.http.post(
        approve(change), content=f"content_hash={status.content_hash}&comment=ok", headers=headers
    )
    assert fresh.status_code == 200, fresh.text
    assert fresh.json() == {"message": "carol approved prod (1/2)"}


async def test_the_author_is_refused_with_the_policys_reason(api: Api) -> None:
    change = await api.start_change()
    refused = await api.http.post(
        approve(change), content="comment=mine", headers=posting(api, "alice")
    )
    assert refused.status_code == 403
    assert refused.json()["error"].startswith(
        "alice is the change's author and prod's policy forbids self-approval"
    )
    assert refused.json()["review_again"] is False


async def test_a_decision_posted_from_another_origin_is_refused(api: Api) -> None:
    change = await api.start_change()
    headers = posting(api, "carol") | {"Origin": "http://elsewhere.example"}
    answer = await api.http.post(approve(change), content="comment=ok", headers=headers)
    assert answer.status_code == 403
    assert "did not come from the board" in answer.json()["error"]
    assert (await change.rollout.query(EnvironmentRollout.status)).approvals == []


def set_cookie(answer: httpx.Response, name: str) -> str:
    """The value the response sets for cookie `name`."""
    for header in answer.headers.get_list("set-cookie"):
        key, _, rest = header.partition("=")
        if key == name:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no {name} cookie in {answer.headers}")


async def test_carol_signs_in_at_the_oidc_issuer_with_pkce(api: Api) -> None:
    api.issuer.signed_in = "carol"
    start = await api.http.get("/board/sign-in/oidc", params={"next": "/board/decisions"})
    assert start.status_code == 303
    authorize = start.headers["location"]
    assert authorize.startswith(f"{api.issuer.url}/authorize?")
    assert "code_challenge_method=S256" in authorize and "client_id=baton" in authorize
    pending = {"Cookie": f"{oidc.PENDING_COOKIE}={set_cookie(start, oidc.PENDING_COOKIE)}"}

    async with httpx.AsyncClient() as browser:  # carol at the issuer's own page
        back = (await browser.get(authorize)).headers["location"]
    assert back.startswith(f"{BOARD}/board/sign-in/callback?code=")
    callback = back.removeprefix(BOARD)

    forged = await api.http.get(callback.replace("state=", "state=x"), headers=pending)
    assert forged.status_code == 401 and "is not for this browser" in forged.text

    done = await api.http.get(callback, headers=pending)
    assert done.status_code == 200, done.text
    assert 'content="0;url=/board/decisions"' in done.text
    credential = set_cookie(done, COOKIE)
    page = await api.http.get("/board/decisions", headers={"Cookie": f"{COOKIE}={credential}"})
    assert page.status_code == 200 and '<strong id="signed-in-user">carol</strong>' in page.text

    replayed = await api.http.get(callback, headers=pending)  # a code is redeemed once
    assert (
        replayed.status_code == 401
        and "the issuer refused the sign-in: code or code_verifier mismatch" in replayed.text
    )


async def test_a_change_page_shows_its_timeline_failed_logs_and_each_environments_diff(
    api: Api,
) -> None:
    rollout = await api.start_change()  # its rollout into prod waits for approval
    commit = rollout.rollout.id.rsplit("/", 1)[1]
    log = "collected 3 items\ntests/test_app.py F\nFAILED tests/test_app.py::test_greeting\n"
    ref = LogStore(api.settings.home / "logs" / "steps").put(log)
    started = datetime.now(UTC) - timedelta(minutes=10)
    check = CheckResult(
        name="test",
        passed=False,
        exit_code=1,
        duration_s=12,
        summary="1 failed",
        excerpt="FAILED tests/test_app.py::test_greeting",
        log_ref=ref,
    )
    validation = Stage(
        name="validate 0123456789ab",
        started_at=started,
        ended_at=started + timedelta(minutes=3, seconds=5),
        outcome="failed",
        checks=[check],
    )
    pr = rollout.pr + 1
    first = await api.client.get_workflow_handle(rollout.id).query(
        Queries.STATUS, result_type=ChangeStatus
    )
    status = first.model_copy(
        update={
            "id": change_id("web", pr),
            "pr_number": pr,
            "timeline": [validation],
            "environments": ["prod"],
        }
    )
    await stand_in(api, status, commit)

    page = await api.http.get(f"/board/changes/web/{pr}", headers=signed_in(api, "carol"))
    assert page.status_code == 200, page.text
    assert "validate 0123456789ab" in page.text and "3m 05s" in page.text
    assert "FAILED tests/test_app.py::test_greeting" in page.text
    assert f'href="/board/logs/{ref}"' in page.text
    assert 'id="env-prod"' in page.text and "changed: Deployment/prod/web" in page.text
    assert f"/board/changes/web/{pr}/rollouts/prod/approve" in page.text
    assert quote(rollout.rollout.id, safe="") in page.text  # its Temporal UI link
    # The local forge's pull requests have no web page: the page says how to read this one.
    assert f"PR #{pr} (<code>baton forge pr show web {pr}</code>)" in page.text

    full = await api.http.get(f"/board/logs/{ref}", headers=signed_in(api, "carol"))
    assert full.status_code == 200 and full.text == log
    bad = await api.http.get("/board/logs/nope", headers=signed_in(api, "carol"))
    assert bad.status_code == 400 and "is not a log reference" in bad.json()["error"]


async def test_a_rejection_from_the_board_ends_the_rollout_and_the_grid_says_so(api: Api) -> None:
    change = await api.start_change()
    reject = approve(change).replace("/approve", "/reject")
    answer = await api.http.post(
        reject, content="comment=not+on+a+Friday", headers=posting(api, "dave")
    )
    assert answer.status_code == 200, answer.text
    await change.rollout.result()
    await visible(api.client, change.rollout.id, lambda e: e.close_time is not None, "its end")

    grid = await api.http.get("/board", headers=signed_in(api, "carol"))
    assert 'id="cell-web-prod"' in grid.text and 'data-state="rejected"' in grid.text
    assert "last rollout rejected: rejected by dave" in grid.text


async def test_a_change_page_shows_each_rollout_of_a_parallel_stage_at_its_own_gate(
    api: Api,
) -> None:
    pr, commit = 4242, uuid.uuid4().hex + "0" * 8
    staging = {n: decision_api.PROD.model_copy(update={"name": n}) for n in PARALLEL}
    status = promoting(pr, commit, PARALLEL)
    rollouts = status.running_rollouts
    await stand_in(api, status, commit)
    for name, workflow_id in zip(PARALLEL, rollouts, strict=True):
        handle = await api.client.start_workflow(
            EnvironmentRollout.run,
            RolloutInput(
                change_id=status.id,
                app=decision_api.WEB,
                environment=staging[name],
                artifact=fake_artifact("web", commit),
                author="alice",
            ),
            id=workflow_id,
            task_queue=TaskQueues.WORKFLOWS,
        )
        await at_gate(handle, "approval", RolloutStatus)

    page = await api.http.get(f"/board/changes/web/{pr}", headers=signed_in(api, "carol"))
    assert page.status_code == 200, page.text
    sections = page.text.split('<section class="environment"')[1:]
    assert len(sections) == 2
    for name, section in zip(PARALLEL, sections, strict=True):
        assert f'id="env-{name}"' in section
        assert f"0/2 approvals for {name}: 0 of 2 given" in section  # its own gate
        assert '<span class="name">approval</span>' in section  # its own steps
        assert f"/board/changes/web/{pr}/rollouts/{name}/approve" in section

    # Either one takes its decision, not only the first (the API's config here knows only prod).
    approved = await changes.decide(
        api.client, status.id, "staging-b", Decision(user="carol"), approve=True
    )
    assert approved == "carol approved staging-b (1/2)"


async def test_a_frozen_rollout_gets_a_break_glass_form_that_overrides_the_freeze(
    api: Api,
) -> None:
    pr, commit = uuid.uuid4().int % 100_000, uuid.uuid4().hex + "0" * 8
    now = datetime.now(UTC)
    frozen = decision_api.PROD.model_copy(
        update={
            "freeze": [
                FreezeWindow(
                    name="year end", start=now - timedelta(hours=1), end=now + timedelta(days=1)
                )
            ]
        }
    )
    status = promoting(pr, commit, ("prod",))
    (rollout,) = status.running_rollouts
    await stand_in(api, status, commit)
    handle = await api.client.start_workflow(
        EnvironmentRollout.run,
        RolloutInput(
            change_id=status.id,
            app=decision_api.WEB,
            environment=frozen,
            artifact=fake_artifact("web", commit),
            author="alice",
        ),
        id=rollout,
        task_queue=TaskQueues.WORKFLOWS,
        search_attributes=decision_api.attributes(commit),
    )
    await at_gate(handle, "freeze", RolloutStatus)
    await visible(api.client, rollout, lambda e: gate_shown(e) == "freeze", "the freeze listed")
    action = f"/board/changes/web/{pr}/rollouts/prod/override-freeze"

    for page in (f"/board/changes/web/{pr}", "/board/decisions"):
        shown = await api.http.get(page, headers=signed_in(api, "carol"))
        assert shown.status_code == 200, shown.text
        # The board's script posts to the button's formaction (absent, the page's own URL).
        assert f'formaction="{action}"' in shown.text
        assert "Override the freeze of prod" in shown.text
        assert "prod is frozen (year end) until " in shown.text
        assert "UTC; until " not in shown.text  # the freeze's end is said once

    answer = await api.http.post(
        action, content="comment=hotfix+for+the+outage", headers=posting(api, "carol")
    )

    assert answer.status_code == 200, answer.text
    assert "carol" in answer.json()["message"]
    await at_gate(handle, "approval", RolloutStatus)  # past the freeze, at its next gate
