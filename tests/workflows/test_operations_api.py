"""Operations through Baton's API (/api/v1) and the CLI, on a real Temporal server with the real
EnvironmentHolds workflow: who may hold, unhold, promote and retry in an environment (its
operators, else its approvers), refusals as 403/404/409 with the reason, and the holds listed
without a worker. (Promotions and retries carried out: test_promotion_graph.py.)

Fixtures and callers are test_decision_api.py's: prod's approvers are carol, dave and
group:release-managers; mallory is nobody's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml
from temporalio.client import Client

from api.app import create_app
from baton import operations
from baton.config import BatonConfig, EnvironmentConfig, VerifyConfig
from baton.holds import HoldState
from baton.models import ChangePlan
from baton.settings import Settings
from baton.temporal import holds_id
from baton.tokens import TokenStore
from tests.fakes.forges import Served
from tests.fakes.oidc import Issuer
from tests.workflows.test_decision_api import Api, api, baton, baton_config, issuer

__all__ = ["api", "issuer"]  # the fixtures this module shares

HOLD, UNHOLD = "/api/v1/environments/prod/hold", "/api/v1/environments/prod/unhold"


async def test_an_approver_holds_prod_and_the_hold_is_listed_with_its_reason(api: Api) -> None:
    answer = await api.http.post(HOLD, json={"reason": "incident 42"}, headers=api.token("carol"))
    assert answer.status_code == 200, answer.text
    assert (answer.json()["environment"], answer.json()["app"]) == ("prod", None)

    listed = await api.http.get("/api/v1/holds", headers=api.token("mallory"))
    assert [(h["environment"], h["reason"], h["by"]) for h in listed.json()] == [
        ("prod", "incident 42", "carol")
    ]
    state = await api.client.get_workflow_handle(holds_id("prod")).query(
        "status", result_type=HoldState
    )
    assert [h.reason for h in state.holds] == ["incident 42"]


async def test_holding_is_refused_to_callers_the_policy_does_not_name(api: Api) -> None:
    none = await api.http.post(HOLD, json={"reason": "x"})
    assert none.status_code == 401
    stranger = await api.http.post(HOLD, json={"reason": "x"}, headers=api.token("mallory"))
    assert stranger.status_code == 403
    assert stranger.json()["error"] == (
        "mallory may not hold prod: allowed are carol, dave, group:release-managers "
        "(environments[prod].approvals.approvers)"
    )
    member = await api.http.post(
        HOLD, json={"reason": "release freeze"}, headers=api.jwt("frank", ["release-managers"])
    )
    assert member.status_code == 200, member.text


async def test_operators_when_named_decide_who_may_hold(api: Api) -> None:
    prod = api.config.environments[0]
    api.config.environments[0] = EnvironmentConfig(
        **{**prod.model_dump(), "operators": ["group:oncall"]}
    )
    carol = await api.http.post(HOLD, json={"reason": "x"}, headers=api.token("carol"))
    assert carol.status_code == 403
    assert "allowed are group:oncall (environments[prod].operators)" in carol.json()["error"]
    dave = await api.http.post(HOLD, json={"reason": "x"}, headers=api.token("dave"))  # in oncall
    assert dave.status_code == 200, dave.text


async def test_unknown_names_and_unholding_what_is_not_held_say_what_to_do(api: Api) -> None:
    carol = api.token("carol")
    qa = await api.http.post("/api/v1/environments/qa/hold", json={"reason": "x"}, headers=carol)
    assert qa.status_code == 404
    assert qa.json()["error"] == "no environment 'qa': the configuration has prod"
    shop = await api.http.post(HOLD, json={"reason": "x", "app": "shop"}, headers=carol)
    assert (shop.status_code, shop.json()["error"]) == (
        404,
        "no app 'shop': the configuration has web",
    )

    never = await api.http.post(UNHOLD, json={}, headers=carol)
    assert never.status_code == 409
    assert never.json()["error"].startswith("prod is not on hold (on hold: nothing)")
    await api.http.post(HOLD, json={"reason": "x", "app": "web"}, headers=carol)
    other = await api.http.post(UNHOLD, json={}, headers=carol)
    assert other.status_code == 409
    assert other.json()["error"].startswith("prod is not on hold (on hold: prod for web)")
    lifted = await api.http.post(UNHOLD, json={"app": "web"}, headers=carol)
    assert lifted.status_code == 200, lifted.text
    assert (await api.http.get("/api/v1/holds", headers=carol)).json() == []


async def test_the_cli_holds_and_unholds_through_the_api(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    served = Served(create_app(api.settings, api.config, api.client)).start()
    monkeypatch.setenv("BATON_API_BASE", served.url)
    try:
        monkeypatch.setenv("BATON_TOKEN", api.tokens.create("mallory").token)
        code = await asyncio.to_thread(baton, monkeypatch, "hold", "prod", "--reason", "x")
        assert code == 3  # refused (cli/exits.py)
        assert "mallory may not hold prod" in capsys.readouterr().err

        monkeypatch.setenv("BATON_TOKEN", api.tokens.create("carol").token)
        code = await asyncio.to_thread(
            baton, monkeypatch, "hold", "prod", "--reason", "incident 42"
        )
        assert code == 0
        assert capsys.readouterr().out.strip() == "prod is on hold: incident 42 (by carol)"
        assert await asyncio.to_thread(baton, monkeypatch, "holds") == 0
        assert "prod       every app      incident 42 (by carol since" in capsys.readouterr().out

        assert await asyncio.to_thread(baton, monkeypatch, "unhold", "prod", "--app", "web") == 3
        assert "prod for web is not on hold" in capsys.readouterr().err
        assert await asyncio.to_thread(baton, monkeypatch, "unhold", "prod") == 0
        assert "prod is no longer on hold (incident 42)" in capsys.readouterr().out

        promote = ["promote", "web", "--commit", "0123456", "--to", "prod"]
        assert await asyncio.to_thread(baton, monkeypatch, *promote) == 4  # not found
        assert "no artifact of web at 0123456" in capsys.readouterr().err
    finally:
        served.stop()


async def test_promote_and_retry_are_refused_with_the_reason(api: Api) -> None:
    carol, mallory = api.token("carol"), api.token("mallory")
    promote = "/api/v1/apps/web/promote"
    body = {"commit": "0123456", "environment": "prod"}
    stranger = await api.http.post(promote, json=body, headers=mallory)
    assert stranger.status_code == 403
    assert stranger.json()["error"].startswith("mallory may not promote into prod: allowed are")
    unknown = await api.http.post(promote, json=body, headers=carol)
    assert unknown.status_code == 404
    assert unknown.json()["error"].startswith("no artifact of web at 0123456: CI builds one")
    bad = await api.http.post(promote, json={**body, "commit": "HEAD~1"}, headers=carol)
    assert bad.status_code == 422 and "commit" in bad.json()["error"]

    change = await api.start_change()
    retry = f"/api/v1/changes/web/{change.pr}/retry"
    refused = await api.http.post(retry, json={"environment": "prod"}, headers=mallory)
    assert refused.status_code == 403
    running = await api.http.post(retry, json={"environment": "prod"}, headers=carol)
    assert running.status_code == 409
    assert running.json()["error"] == (
        f"{change.id} is still promoting: a rollout is retried once its change has ended"
    )
    missing = await api.http.post(
        "/api/v1/changes/web/999/retry", json={"environment": "prod"}, headers=carol
    )
    assert missing.status_code == 404


async def test_a_hold_without_a_worker_is_a_503_not_a_hang(
    isolated_client: Client, issuer: Issuer, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    app = create_app(settings, baton_config(issuer), isolated_client)
    headers = {"Authorization": f"Bearer {TokenStore(settings.tokens_file).create('carol').token}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
            answer = await http.post(HOLD, json={"reason": "x"}, headers=headers)
    assert answer.status_code == 503
    assert answer.json()["error"].startswith("no Baton worker answered for hold/prod within 10s")


async def test_a_retry_runs_under_the_configuration_file_read_again(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The API started from a file; prod's verify.url was wrong and the operator fixes it there.
    path = tmp_path / "baton.yaml"

    def write(config: BatonConfig) -> None:
        path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_unset=True)))

    write(api.config)
    app = create_app(api.settings.model_copy(update={"config": path}), None, api.client)
    planned: list[ChangePlan] = []

    async def retry(client: Client, plan: ChangePlan, change: str, env: str, user: str) -> str:
        planned.append(plan)  # carried out: test_promotion_graph.py
        return change

    monkeypatch.setattr(operations, "retry", retry)
    verified = VerifyConfig(url="https://prod.example.com/version")
    prod = api.config.environments[0].model_copy(update={"verify": verified})
    fixed = api.config.model_copy(update={"environments": [prod]})
    write(fixed)
    retrying = "/api/v1/changes/web/7/retry"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
            answer = await http.post(
                retrying, json={"environment": "prod"}, headers=api.token("carol")
            )
            assert answer.status_code == 200, answer.text
            [plan] = planned
            verify = plan.environments[0].verify
            assert verify is not None and verify.url == "https://prod.example.com/version"

            path.write_text("apps: [\n")  # broken meanwhile: nothing is retried under it
            broken = await http.post(
                retrying, json={"environment": "prod"}, headers=api.token("carol")
            )
    assert broken.status_code == 409
    assert broken.json()["error"].startswith(
        f"cannot retry under an invalid configuration: {path}: "
    )
    assert broken.json()["error"].endswith(": fix it, then retry")
    assert len(planned) == 1
