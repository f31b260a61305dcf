"""Baton's REST API for people (/api/v1) on a real Temporal server, with the real rollout.

The API app runs in-process (httpx ASGI transport; uvicorn on loopback for the CLI), callers
authenticate with Baton API tokens or JWTs of a loopback OIDC issuer, and decisions reach a real
EnvironmentRollout, whose update validator checks the policy again. The change workflow is a
stand-in answering the `status` query by name (its own pipeline is not what is tested here).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from activities.deploy import CloseInput, ProposeInput
from api.app import create_app
from baton.config import (
    AppConfig,
    ApprovalPolicy,
    AuthConfig,
    BatonConfig,
    EnvironmentConfig,
    OidcConfig,
    UserRecord,
)
from baton.models import (
    AbortInput,
    ChangeStatus,
    Decision,
    Gate,
    GitOpsPullRequest,
    Rendered,
    RolloutInput,
    RolloutStatus,
)
from baton.settings import Settings
from baton.temporal import (
    MEMO_GATE,
    Queries,
    SearchAttributes,
    TaskQueues,
    Updates,
    WorkflowTypes,
    change_id,
    rollout_id,
)
from baton.tokens import TokenStore
from cli import main as cli
from tests.conftest import at_gate, gate_shown, serving, until, visible
from tests.fakes.forges import Served
from tests.fakes.oidc import AUDIENCE, Issuer
from tests.fakes.records import fake_artifact, fake_rendered
from workflows.hold import EnvironmentHolds
from workflows.rollout import EnvironmentRollout

HEAD = "d" * 40

PROD = EnvironmentConfig(
    name="prod",
    namespace="prod",
    approvals=ApprovalPolicy(required=2, approvers=["carol", "dave", "group:release-managers"]),
)
WEB = AppConfig(name="web", repo="web", image="web", chart="chart")


@workflow.defn(name=WorkflowTypes.CHANGE, sandboxed=False)  # a stand-in: no I/O in it
class ChangeStandIn:
    """Answers a change's `status` query and takes its abort, as ChangeWorkflow does by name."""

    @workflow.init
    def __init__(self, status: ChangeStatus) -> None:
        self.change = status
        self.aborted: AbortInput | None = None

    @workflow.run
    async def run(self, status: ChangeStatus) -> None:
        await workflow.wait_condition(lambda: self.aborted is not None)

    @workflow.query(name=Queries.STATUS)
    def status(self) -> ChangeStatus:
        return self.change

    @workflow.update(name=Updates.ABORT)
    def abort(self, request: AbortInput) -> str:
        self.aborted = request
        return f"aborting {workflow.info().workflow_id} ({request.user}: {request.reason})"


@activity.defn(name="render_environment")
async def render_environment(input: RolloutInput) -> Rendered:
    return fake_rendered(input)


@activity.defn(name="propose_gitops_change")
async def propose(input: ProposeInput) -> GitOpsPullRequest:
    return GitOpsPullRequest(number=7, url="http://forge/gitops/7", head_branch="b", head_sha=HEAD)


@activity.defn(name="close_gitops_pr")
async def close(input: CloseInput) -> None:
    pass


@dataclass
class Change:
    id: str
    app: str
    pr: int
    rollout: WorkflowHandle

    def path(self, action: str) -> str:
        return f"/api/v1/changes/{self.app}/{self.pr}/rollouts/prod/{action}"


@dataclass
class Api:
    http: httpx.AsyncClient
    client: Client
    tokens: TokenStore
    issuer: Issuer
    settings: Settings
    config: BatonConfig

    def token(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.create(user).token}"}

    def jwt(self, user: str, groups: list[str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.token(user, groups)}"}

    async def start_change(
        self, authors: list[str] | None = None, environments: list[str] | None = None
    ) -> Change:
        """A change by alice (and `authors`, its commits') whose rollout into prod waits at the
        approval gate; `environments`: those it publishes that it is promoted to."""
        pr = uuid.uuid4().int % 100_000
        commit = uuid.uuid4().hex + "0" * 8
        change, rollout = change_id("web", pr), rollout_id("web", "prod", commit)
        status = ChangeStatus(
            id=change,
            app="web",
            repo="web",
            pr_number=pr,
            author="alice",
            authors=["alice", *(authors or [])],
            head_sha=commit,
            state="promoting",
            artifact=fake_artifact("web", commit),
            current_rollout=rollout,
            environments=environments or [],
        )
        await self.client.start_workflow(
            WorkflowTypes.CHANGE,
            status,
            id=change,
            task_queue=TaskQueues.WORKFLOWS,
            search_attributes=attributes(commit, state="promoting", pr=pr),
        )
        handle = await self.client.start_workflow(
            EnvironmentRollout.run,
            RolloutInput(
                change_id=change,
                app=WEB,
                environment=PROD,
                artifact=fake_artifact("web", commit),
                author="alice",
                authors=["alice", *(authors or [])],
            ),
            id=rollout,
            task_queue=TaskQueues.WORKFLOWS,
            search_attributes=attributes(commit),
        )
        await at_gate(handle, "approval", RolloutStatus)
        await visible(
            self.client, rollout, lambda e: gate_shown(e) == "approval", "the gate listed"
        )
        return Change(change, "web", pr, handle)


def attributes(commit: str, state: str | None = None, pr: int | None = None) -> Any:
    pairs = [
        SearchAttributePair(SearchAttributes.APP, "web"),
        SearchAttributePair(SearchAttributes.ENVIRONMENT, "prod"),
        SearchAttributePair(SearchAttributes.COMMIT, commit),
    ]
    if state:
        pairs.append(SearchAttributePair(SearchAttributes.STATE, state))
    if pr:
        pairs.append(SearchAttributePair(SearchAttributes.PR, str(pr)))
    return TypedSearchAttributes(pairs)


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with Issuer() as served:
        yield served


def baton_config(issuer: Issuer) -> BatonConfig:
    return BatonConfig(
        apps=[WEB],
        environments=[PROD],
        auth=AuthConfig(
            oidc=OidcConfig(issuer=issuer.url, audience=AUDIENCE),
            users={"dave": UserRecord(groups=["oncall"]), "al": UserRecord(forge_users=["alice"])},
        ),
    )


@pytest.fixture
async def api(isolated_client: Client, issuer: Issuer, tmp_path: Path) -> AsyncIterator[Api]:
    # The API and these activities on one host, without a registry: the store under BATON_HOME.
    settings = Settings(home=tmp_path / "home", store="home")
    config = baton_config(issuer)
    app = create_app(settings, config, isolated_client)
    activities = {TaskQueues.DEPLOY: [render_environment, propose, close]}
    async with (
        serving(isolated_client, [EnvironmentRollout, ChangeStandIn, EnvironmentHolds], activities),
        app.router.lifespan_context(app),
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
            yield Api(
                http, isolated_client, TokenStore(settings.tokens_file), issuer, settings, config
            )


async def test_decisions_and_reads_refuse_callers_without_a_valid_credential(api: Api) -> None:
    change = await api.start_change()
    none = await api.http.post(change.path("approve"), json={})
    assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
    assert none.json()["error"].startswith("no credential: send `Authorization: Bearer <token>`")
    forged = await api.http.get(
        "/api/v1/changes", headers={"Authorization": "Bearer baton_0123456789ab_" + "x" * 43}
    )
    assert forged.status_code == 401 and forged.json() == {
        "error": "unknown token: ask an administrator for one"
    }
    assert (await change.rollout.query(EnvironmentRollout.status)).approvals == []


async def test_every_decision_endpoint_refuses_an_unauthenticated_call(api: Api) -> None:
    schema = (await api.http.get("/api/v1/openapi.json")).json()
    posts = [path for path, ops in schema["paths"].items() if "post" in ops]
    decide = schema["paths"]["/api/v1/changes/{app}/{pr}/rollouts/{environment}/{action}"]
    (action,) = [p for p in decide["post"]["parameters"] if p["name"] == "action"]
    assert action["schema"]["enum"] == ["approve", "reject", "override-freeze"]
    calls = [
        path.format(app="web", pr=1, environment="prod", action=verb)
        for path in posts
        for verb in action["schema"]["enum"]
    ]
    assert (
        len(set(calls)) == 8
    )  # approve, reject, override-freeze, abort, hold, unhold, promote, retry
    for call in set(calls):
        answer = await api.http.post(call, json={"reason": "x", "comment": "x"})
        assert answer.status_code == 401, (call, answer.text)


async def test_carol_approves_with_her_token_and_the_record_names_her_and_the_content(
    api: Api,
) -> None:
    change = await api.start_change()
    headers = api.token("carol")
    answer = await api.http.post(change.path("approve"), json={"comment": "lgtm"}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == "carol approved prod (1/2)"

    view = (await api.http.get(f"/api/v1/changes/web/{change.pr}", headers=headers)).json()
    approval = view["detail"]["rollout"]["approvals"][0]
    token_id = api.tokens.list()[0].id
    assert (approval["user"], approval["via"], approval["issuer"], approval["subject"]) == (
        "carol",
        "token",
        "baton",
        token_id,
    )
    rendered = view["detail"]["rollout"]["content_hash"]
    assert (approval["content_hash"], approval["head"], approval["comment"]) == (
        rendered,
        HEAD,
        "lgtm",
    )
    assert approval["at"] is not None
    assert [g["gate"]["approved_by"] for g in view["gates"]] == [["carol"]]


async def test_a_decision_on_an_environment_the_apis_configuration_lacks_says_so(
    api: Api,
) -> None:
    """The change is promoted to prod, but the API runs a configuration without prod: it has no
    policy to check, and says that rather than that the change has no prod."""
    change = await api.start_change(environments=["prod"])
    qa = PROD.model_copy(update={"name": "qa", "namespace": "qa"})
    app = create_app(api.settings, api.config.model_copy(update={"environments": [qa]}), api.client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://baton") as http,
    ):
        answer = await http.post(change.path("approve"), json={}, headers=api.token("carol"))
        typo = await http.post(
            change.path("approve").replace("/prod/", "/stage/"), json={}, headers=api.token("carol")
        )
    assert answer.status_code == 409
    assert answer.json()["error"] == (
        f"the API's configuration has no environment 'prod', which {change.id} is promoted to, "
        "so it cannot check prod's approval policy: give the API the configuration the workers "
        "run (BATON_CONFIG) and restart it"
    )
    assert typo.status_code == 404
    assert typo.json()["error"] == f"{change.id} has no environment 'stage': it is promoted to prod"
    assert (await change.rollout.query(EnvironmentRollout.status)).approvals == []


async def test_the_author_is_refused_naming_the_self_approval_rule(api: Api) -> None:
    change = await api.start_change()
    answer = await api.http.post(change.path("approve"), json={}, headers=api.token("alice"))
    assert answer.status_code == 403
    assert answer.json()["error"].startswith(
        "alice is the change's author and prod's policy forbids self-approval"
    )
    # Baton's user records say that `al` is alice on the forge.
    alias = await api.http.post(change.path("approve"), json={}, headers=api.token("al"))
    assert alias.status_code == 403
    assert alias.json()["error"].startswith("al is the change's author (alice on the forge)")
    # The rollout's validator knows it too, from the decision, when the API is bypassed.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await change.rollout.execute_update(
            EnvironmentRollout.approve, Decision(user="al", forge_users=["alice"])
        )
    assert "al is the change's author (alice on the forge)" in refused.value.cause.message


async def test_a_commit_author_is_refused_by_the_api_and_by_the_rollout(api: Api) -> None:
    change = await api.start_change(authors=["dave"])
    answer = await api.http.post(change.path("approve"), json={}, headers=api.token("dave"))
    assert answer.status_code == 403
    assert answer.json()["error"] == (
        "dave is an author of the change's commits and prod's policy forbids self-approval: "
        "ask one of carol, group:release-managers"
    )
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await change.rollout.execute_update(EnvironmentRollout.approve, Decision(user="dave"))
    assert refused.value.cause.message.startswith("dave is an author of the change's commits")
    gate = (await change.rollout.query(EnvironmentRollout.status)).gate
    assert gate is not None and gate.waiting_on == ["carol", "group:release-managers"]


async def test_a_group_member_approves_with_an_oidc_token_and_others_are_refused(
    api: Api,
) -> None:
    change = await api.start_change()
    outsider = await api.http.post(change.path("approve"), json={}, headers=api.jwt("frank"))
    assert outsider.status_code == 403
    assert outsider.json()["error"] == (
        "frank may not approve prod: allowed approvers are carol, dave, group:release-managers"
    )
    member = await api.http.post(
        change.path("approve"), json={}, headers=api.jwt("frank", ["release-managers"])
    )
    assert member.status_code == 200, member.text
    decision = member.json()["decision"]
    assert (decision["via"], decision["issuer"], decision["subject"]) == (
        "oidc",
        api.issuer.url,
        "sub-frank",
    )
    status = await change.rollout.query(EnvironmentRollout.status)
    assert [(a.user, a.groups) for a in status.approvals] == [("frank", ["release-managers"])]


async def test_an_approval_of_content_the_pr_no_longer_holds_is_refused(api: Api) -> None:
    change = await api.start_change()
    stale = await api.http.post(
        change.path("approve"),
        json={"content_hash": "sha256:what-i-saw-yesterday"},
        headers=api.token("carol"),
    )
    assert stale.status_code == 403
    assert "was made on rendered content sha256:what-i-saw" in stale.json()["error"]
    moved = await api.http.post(
        change.path("approve"), json={"head": "0" * 40}, headers=api.token("carol")
    )
    assert moved.status_code == 403 and f"the PR now holds {HEAD[:12]}" in moved.json()["error"]
    assert (await change.rollout.query(EnvironmentRollout.status)).approvals == []


async def test_reject_and_abort_are_decisions_of_allowed_people(api: Api) -> None:
    change = await api.start_change()
    stranger = await api.http.post(
        f"/api/v1/changes/web/{change.pr}/abort",
        json={"reason": "mine now"},
        headers=api.token("mallory"),
    )
    assert stranger.status_code == 403
    assert "mallory may not abort" in stranger.json()["error"]
    not_frozen = await api.http.post(
        change.path("override-freeze"), json={"comment": "hotfix"}, headers=api.token("dave")
    )
    assert not_frozen.status_code == 409
    assert not_frozen.json()["error"] == "prod is not frozen for this rollout: nothing to override"

    rejected = await api.http.post(
        change.path("reject"), json={"comment": "not today"}, headers=api.token("dave")
    )
    assert rejected.status_code == 200 and rejected.json()["message"] == "dave rejected prod"
    assert (await change.rollout.result()).outcome == "rejected"
    aborted = await api.http.post(
        f"/api/v1/changes/web/{change.pr}/abort",
        json={"reason": "superseded by a fix"},
        headers=api.token("alice"),
    )
    assert aborted.status_code == 200, aborted.text
    assert aborted.json()["message"].endswith("(alice: superseded by a fix)")


async def test_lists_filter_and_say_what_waits_on_the_caller(api: Api) -> None:
    change = await api.start_change()
    carol, alice = api.token("carol"), api.token("alice")

    async def waiting(headers: dict[str, str]) -> list[dict]:
        return (await api.http.get("/api/v1/waiting", headers=headers)).json()

    mine = await until(lambda: waiting(carol), bool, "carol's waiting list")
    assert [(w["workflow_id"], w["gate"]["kind"]) for w in mine] == [
        (change.rollout.id, "approval")
    ]
    assert await waiting(alice) == []  # the author is no approver here

    listed = await until(
        lambda: api.http.get("/api/v1/changes", params={"app": "web"}, headers=carol),
        lambda answer: answer.json() != [],
        "the change in the list",
    )
    assert [(c["id"], c["state"], c["pr"]) for c in listed.json()] == [
        (change.id, "promoting", change.pr)
    ]
    empty = await api.http.get("/api/v1/changes", params={"state": "failed"}, headers=carol)
    assert empty.json() == []
    injected = await api.http.get(
        "/api/v1/changes", params={"app": "web' OR WorkflowType != 'x"}, headers=carol
    )
    assert injected.status_code == 422 and "query.app" in injected.json()["error"]


async def test_one_change_is_read_from_what_it_published_without_a_worker(api: Api) -> None:
    """A change and rollout on a task queue no worker polls: the gate comes from the memo."""
    commit = "c" * 40
    nobody = f"nobody-{uuid.uuid4()}"
    gate = Gate(
        kind="approval",
        environment="prod",
        description="0/2 approvals for prod",
        waiting_on=["carol", "dave"],
        required=2,
    )
    await api.client.start_workflow(
        WorkflowTypes.CHANGE,
        id=change_id("web", 99),
        task_queue=nobody,
        search_attributes=attributes(commit, state="promoting", pr=99),
    )
    await api.client.start_workflow(
        WorkflowTypes.ROLLOUT,
        id=rollout_id("web", "prod", commit),
        task_queue=nobody,
        search_attributes=attributes(commit),
        memo={MEMO_GATE: gate},
    )
    answer = await until(
        lambda: api.http.get("/api/v1/changes/web/99", headers=api.token("carol")),
        lambda seen: seen.status_code == 200 and seen.json()["gates"] != [],
        "the published change",
    )
    view = answer.json()
    assert view["summary"]["state"] == "promoting" and view["detail"] is None
    assert "no Baton worker answered" in view["detail_unavailable"]
    assert [(g["workflow_id"], g["gate"]["waiting_on"]) for g in view["gates"]] == [
        (rollout_id("web", "prod", commit), ["carol", "dave"])
    ]
    missing = await api.http.get("/api/v1/changes/web/98", headers=api.token("carol"))
    assert missing.status_code == 404


async def test_the_schema_and_its_docs_page_are_served_offline(api: Api) -> None:
    schema = (await api.http.get("/api/v1/openapi.json")).json()
    decide = schema["paths"]["/api/v1/changes/{app}/{pr}/rollouts/{environment}/{action}"]
    assert decide["post"]["security"] == [{"bearer": []}]
    assert set(decide["post"]["responses"]) >= {"200", "401", "403", "409", "422"}
    # What the API answers before a route runs is documented too: an unparsable body (400), a
    # body over the limit (413).
    posts = [ops["post"] for ops in schema["paths"].values() if "post" in ops]
    assert all({"400", "413"} <= set(post["responses"]) for post in posts)
    assert not any(path.startswith("/webhooks") for path in schema["paths"])
    page = (await api.http.get("/api/v1/docs")).text
    assert "/api/v1/docs-assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    bundle = await api.http.get("/api/v1/docs-assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000


async def test_oversized_decisions_are_refused_before_they_are_read(api: Api) -> None:
    change = await api.start_change()
    answer = await api.http.post(
        change.path("approve"),
        content=b"{" + b" " * 100_000 + b"}",
        headers={**api.token("carol"), "content-type": "application/json"},
    )
    assert answer.status_code == 413


# The CLI, through the API served on loopback


def baton(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["baton", *args])
    return cli.run()


async def test_the_cli_decides_through_the_api_with_the_token_an_admin_created(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    change = await api.start_change()
    target = api.client.service_client.config.target_host
    for name, value in {
        "BATON_HOME": str(api.settings.home),
        "TEMPORAL_ADDRESS": target,
        "TEMPORAL_NAMESPACE": api.client.namespace,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BATON_TOKEN", raising=False)
    served = Served(create_app(api.settings, api.config)).start()
    monkeypatch.setenv("BATON_API_BASE", served.url)
    try:
        assert baton(monkeypatch, "approve", change.id, "--env", "prod") == 2
        assert capsys.readouterr().err.startswith("error: no credential: set BATON_TOKEN")

        assert baton(monkeypatch, "token", "create", "--user", "carol", "--expires", "30d") == 0
        shown = capsys.readouterr().out
        token = next(line for line in shown.splitlines() if line.startswith("baton_"))
        assert baton(monkeypatch, "token", "create", "--user", "alice", "-q") == 0
        alice = capsys.readouterr().out.strip()

        monkeypatch.setenv("BATON_TOKEN", alice)
        code = await asyncio.to_thread(baton, monkeypatch, "approve", change.id, "--env", "prod")
        assert code == 3  # refused by policy (README: Exit codes)
        assert "forbids self-approval" in capsys.readouterr().err
        code = await asyncio.to_thread(baton, monkeypatch, "approve", change.id, "--env", "qa")
        assert code == 4  # not found
        assert capsys.readouterr().err.strip() == (
            f"error: {change.id} has no environment 'qa': it is promoted to prod"
        )

        monkeypatch.delenv("BATON_TOKEN")
        monkeypatch.setattr(sys, "stdin", _Lines(token))
        assert await asyncio.to_thread(baton, monkeypatch, "login", "--token-stdin") == 0
        kept = tmp_path / "config" / "baton" / "token"
        assert "logged in as carol (via token)" in capsys.readouterr().out
        assert oct(kept.stat().st_mode & 0o777) == "0o600"
        code = await asyncio.to_thread(
            baton, monkeypatch, "approve", change.id, "--env", "prod", "--comment", "ok"
        )
        out = capsys.readouterr().out
        assert code == 0, out
        assert "carol approved prod (1/2)" in out

        assert baton(monkeypatch, "token", "ls") == 0
        listing = capsys.readouterr().out
        assert listing.count("active") == 2 and token not in listing
        carol_id = token.split("_")[1]
        assert baton(monkeypatch, "token", "revoke", carol_id) == 0
        assert f"revoked token {carol_id} of carol" in capsys.readouterr().out
        code = await asyncio.to_thread(baton, monkeypatch, "reject", change.id, "--env", "prod")
        assert code == 2
        assert f"token {carol_id} is revoked" in capsys.readouterr().err
    finally:
        served.stop()
    status = await change.rollout.query(EnvironmentRollout.status)
    assert [(a.user, a.via, a.subject) for a in status.approvals] == [("carol", "token", carol_id)]


class _Lines:
    def __init__(self, text: str) -> None:
        self.text = text

    def readline(self) -> str:
        return self.text + "\n"
