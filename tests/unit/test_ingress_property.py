"""Every webhook endpoint under random and mutated bodies, headers and signatures.

Properties: no answer is ever a 5xx; nothing reaches Temporal without valid credentials; a signed
delivery changed in any way is refused. The API runs in-process (httpx ASGITransport) against the
session's Temporal dev server, with its Ingress wrapped to record every call.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from api import gitea, github
from api.app import MAX_BODY_BYTES, create_app
from api.azure_devops import basic_auth
from baton import flux
from baton.config import AppConfig, BatonConfig, ForgeConfig, GitOpsConfig
from baton.forges.base import PullRequest, PullRequestNotFound, Review
from baton.ingress import Ingress
from baton.settings import Settings

APP = f"fuzz-{uuid.uuid4().hex[:8]}"
REPO = f"acme/{APP}"
SHA = "a" * 40
ENDPOINTS = ("github", "gitea", "azure-devops", "flux")
HEADER_NAMES = (
    "x-hub-signature-256",
    "x-github-event",
    "x-github-delivery",
    "x-gitea-signature",
    "x-forgejo-signature",
    "x-gitea-event",
    "x-gitea-delivery",
    "x-forgejo-event",
    "x-forgejo-delivery",
    "authorization",
    "x-signature",
    "content-type",
    "content-length",
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class RecordingIngress(Ingress):
    """The real Ingress, noting each call that would reach Temporal."""

    calls: list[str]

    async def pull_request(self, hook, delivery_id):
        self.calls.append(f"pull_request {hook.action}")
        return await super().pull_request(hook, delivery_id)

    async def review(self, hook):
        self.calls.append("review")
        return await super().review(hook)

    async def sync(self, event):
        self.calls.append("sync")
        return await super().sync(event)


class StubAzure:
    """What the Azure route re-reads: PR `n` exists unless n % 4 == 0; its state cycles."""

    def get_pull_request(self, repo: str, number: int) -> PullRequest:
        if number % 4 == 0:
            raise PullRequestNotFound(repo, number)
        state = ("open", "merged", "closed")[number % 3]
        return PullRequest(
            repo=repo,
            number=number,
            title="t",
            body="Baton-Rollout: rollout/x",
            author="alice",
            head_branch="f",
            head_sha=SHA,
            base_branch="main",
            state=state,
            merge_commit_sha=SHA if state == "merged" else None,
            html_url="",
        )

    def list_reviews(self, repo: str, number: int) -> list[Review]:
        return []


@dataclass
class Api:
    http: httpx.AsyncClient
    ingress: RecordingIngress
    secret: str

    async def post(self, endpoint: str, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
        self.ingress.calls.clear()
        answer = await self.http.post(f"/webhooks/{endpoint}", content=body, headers=headers)
        assert answer.status_code < 500, answer.text
        return answer


@pytest.fixture(scope="module")
async def api(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    saved = os.environ.pop("BATON_WEBHOOK_SECRET", None)
    home: Path = tmp_path_factory.mktemp("ingress-fuzz")
    settings_ = Settings(home=home)
    config = BatonConfig(
        forge=ForgeConfig(kind="azure-devops", url="http://azure.invalid/org"),
        gitops=GitOpsConfig(repo="acme/gitops"),
        apps=[AppConfig(name=APP, repo=REPO, image=APP, chart="chart")],
    )
    app = create_app(settings_, config, temporal_env.client, forge=StubAzure())
    async with app.router.lifespan_context(app):
        ingress = RecordingIngress(temporal_env.client, config, settings_)
        ingress.calls = []
        app.state.ingress = ingress
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
            yield Api(http, ingress, settings_.webhook_secret)
    async for execution in temporal_env.client.list_workflows(f"BatonApp = '{APP}'"):
        if execution.status == WorkflowExecutionStatus.RUNNING:
            await temporal_env.client.get_workflow_handle(execution.id).terminate("fuzz over")
    if saved is not None:
        os.environ["BATON_WEBHOOK_SECRET"] = saved


def pull_request_payload(number: int = 1) -> dict[str, Any]:
    """A pull_request "opened" payload as GitHub and Gitea publish it."""
    return {
        "action": "opened",
        "number": number,
        "pull_request": {
            "number": number,
            "title": "Add a",
            "body": "",
            "user": {"login": "alice"},
            "head": {"ref": "feature", "sha": SHA},
            "base": {"ref": "main", "sha": SHA},
            "merged": False,
            "merge_commit_sha": None,
        },
        "repository": {"full_name": REPO, "name": APP},
        "sender": {"login": "alice"},
    }


def azure_payload(number: int = 1) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "eventType": "git.pullrequest.created",
        "publisherId": "tfs",
        "resource": {
            "pullRequestId": number,
            "status": "active",
            "repository": {"name": APP, "project": {"name": "acme"}},
        },
        "resourceVersion": "1.0",
    }


def flux_payload() -> dict[str, Any]:
    return {
        "involvedObject": {
            "kind": "Kustomization",
            "name": f"{APP}-dev",
            "namespace": "flux-system",
        },
        "severity": "info",
        "reason": "ReconciliationSucceeded",
        "message": "applied",
        "metadata": {"revision": f"main@sha1:{SHA}"},
        "reportingController": "kustomize-controller",
    }


def signed(endpoint: str, secret: str, body: bytes) -> dict[str, str]:
    """The headers a genuine delivery of `body` to `endpoint` carries."""
    delivery = str(uuid.uuid4())
    if endpoint == "github":
        return {
            "x-github-event": "pull_request",
            "x-github-delivery": delivery,
            "x-hub-signature-256": github.sign(secret, body),
        }
    if endpoint == "gitea":
        return {
            "x-gitea-event": "pull_request",
            "x-gitea-delivery": delivery,
            "x-gitea-signature": gitea.sign(secret, body),
        }
    if endpoint == "azure-devops":
        return {"authorization": basic_auth("baton", secret)}
    return {"x-signature": flux.sign_generic_hmac(secret, body)}


def genuine(endpoint: str) -> bytes:
    payload = {"azure-devops": azure_payload(), "flux": flux_payload()}.get(
        endpoint, pull_request_payload()
    )
    return json.dumps(payload).encode()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80
)  # printable ASCII: what HTTP carries


@FUZZ
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    body=st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=6),
)
async def test_random_requests_never_fail_and_reach_nothing(
    api: Api, endpoint: str, body: bytes, headers: dict[str, str]
) -> None:
    headers.pop("content-length", None)  # a wrong one would break the HTTP framing, not Baton
    answer = await api.post(endpoint, body, headers)
    assert answer.status_code in (400, 401, 413), answer.text
    assert api.ingress.calls == []


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), data=st.data())
async def test_a_changed_signed_delivery_is_refused(api: Api, endpoint: str, data) -> None:
    body = genuine(endpoint)
    headers = signed(endpoint, api.secret, body)
    if endpoint == "azure-devops":  # unsigned body: the credentials are what must be exact
        user, password = data.draw(st.tuples(header_values, header_values))
        if (user, password) == ("baton", api.secret):
            password += "x"
        headers["authorization"] = basic_auth(user, password)
    else:
        mutated = data.draw(mutations(body))
        body = mutated if mutated != body else body + b" "
    answer = await api.post(endpoint, body, headers)
    assert answer.status_code == 401, answer.text
    assert api.ingress.calls == []


def mutations(body: bytes) -> st.SearchStrategy[bytes]:
    """Bodies one edit away from `body`: a byte flipped, cut, inserted or the tail replaced."""
    index = st.integers(0, len(body) - 1)
    return st.one_of(
        st.tuples(index, st.integers(1, 255)).map(
            lambda t: body[: t[0]] + bytes([body[t[0]] ^ t[1]]) + body[t[0] + 1 :]
        ),
        index.map(lambda i: body[:i]),
        st.tuples(index, st.binary(min_size=1, max_size=8)).map(
            lambda t: body[: t[0]] + t[1] + body[t[0] :]
        ),
    )


def replace_at(payload: Any, path: list[int], value: Any) -> Any:
    """`payload` with the node reached by `path` (indices into each level's keys) replaced."""
    if not path or not isinstance(payload, dict) or not payload:
        return value
    key = list(payload)[path[0] % len(payload)]
    return {**payload, key: replace_at(payload[key], path[1:], value)}


@FUZZ
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    path=st.lists(st.integers(0, 20), max_size=4),
    value=json_values,
    event=st.sampled_from(
        [
            "pull_request",
            "pull_request_review",
            "pull_request_approved",
            "pull_request_rejected",
            "push",
            "ping",
        ]
    ),
)
async def test_signed_but_malformed_payloads_get_a_reason_not_an_error(
    api: Api, endpoint: str, path: list[int], value: Any, event: str
) -> None:
    payload = replace_at(json.loads(genuine(endpoint)), path, value)
    body = json.dumps(payload).encode()
    headers = signed(endpoint, api.secret, body)
    for name in ("x-github-event", "x-gitea-event"):
        if name in headers:
            headers[name] = event
    answer = await api.post(endpoint, body, headers)
    assert answer.status_code in (200, 202, 400), answer.text
    assert "error" in answer.json() or "result" in answer.json()


def nested(depth: int, leaf: bytes, kinds: list[bool]) -> bytes:
    """`leaf` inside `depth` arrays and objects, `kinds` choosing which at each level."""
    opening = b"".join(b"[" if kinds[i % len(kinds)] else b'{"a":' for i in range(depth))
    closing = b"".join(b"]" if kinds[i % len(kinds)] else b"}" for i in reversed(range(depth)))
    return opening + leaf + closing


huge_numbers = st.tuples(
    st.sampled_from([b"", b"-"]),
    st.integers(github.MAX_NUMBER_LENGTH + 1, 60_000),
    st.sampled_from([b"", b".5", b"e10", b"E-99999"]),
).map(lambda t: t[0] + b"7" * t[1] + t[2])


@FUZZ
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    depth=st.integers(1, 200_000),
    kinds=st.lists(st.booleans(), min_size=1, max_size=5),
    leaf=st.sampled_from([b"1", b'"x"', b"null", b"[]"]) | huge_numbers,
    inside=st.booleans(),
)
async def test_signed_nested_and_huge_bodies_are_refused_with_a_reason(
    api: Api, endpoint: str, depth: int, kinds: list[bool], leaf: bytes, inside: bool
) -> None:
    value = nested(depth, leaf, kinds)
    if inside:  # in a field of a genuine delivery, where a parser meets it halfway through
        base = genuine(endpoint)
        body = base.replace(b'"sender"', b'"extra": ' + value + b', "sender"', 1)
        body = body if body != base else value
    else:
        body = value
    answer = await api.post(endpoint, body, signed(endpoint, api.secret, body))
    too_deep = depth + int(leaf == b"[]") + int(body is not value) > github.MAX_JSON_DEPTH
    if too_deep or len(leaf) > github.MAX_NUMBER_LENGTH:
        assert answer.status_code == 400, answer.text
        assert "at most" in answer.json()["error"], answer.text
    else:
        assert answer.status_code in (200, 202, 400), answer.text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "body nests 100000 levels deep: at most 64 are accepted"),
        (
            b'{"number": ' + b"9" * 4301 + b"}",
            "body holds a number of 4301 characters: at most 64 are accepted",
        ),
    ],
)
async def test_deeply_nested_and_huge_number_bodies_are_400_naming_the_limit(
    api: Api, body: bytes, reason: str
) -> None:
    for endpoint in ENDPOINTS:
        answer = await api.post(endpoint, body, signed(endpoint, api.secret, body))
        assert (answer.status_code, answer.json()["error"]) == (400, reason), endpoint


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_oversized_bodies_are_413_before_anything_else(api: Api, endpoint: str) -> None:
    answer = await api.post(endpoint, b"x" * (MAX_BODY_BYTES + 1), {})
    assert answer.status_code == 413 and api.ingress.calls == []


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_genuine_deliveries_are_accepted(api: Api, endpoint: str) -> None:
    """The baseline the properties above mutate really is accepted."""
    body = genuine(endpoint)
    answer = await api.post(endpoint, body, signed(endpoint, api.secret, body))
    assert answer.status_code in (200, 202), answer.text
    assert api.ingress.calls
