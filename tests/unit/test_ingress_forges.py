"""Webhook ingress per forge: a fake forge sends its own webhooks to Baton's API (served on a port,
as in production), and Temporal (the session's dev server) shows what was started or signalled."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.deploy import ProposeInput
from api.app import create_app
from api.azure_devops import basic_auth
from baton.config import (
    AppConfig,
    ApprovalPolicy,
    BatonConfig,
    Credentials,
    EnvironmentConfig,
    ForgeConfig,
    GitOpsConfig,
)
from baton.forges.base import PullRequest
from baton.models import GitOpsPullRequest, Rendered, RolloutInput
from baton.settings import Settings
from baton.temporal import TaskQueues
from tests.conftest import eventually_async
from tests.fakes.forges import FakeAzureDevOps, FakeForge, FakeGitea, FakeGitHub, Sent, Served
from tests.fakes.records import fake_artifact, fake_rendered
from workflows.rollout import EnvironmentRollout

SECRET = "ingress-test-secret"
TOKEN = "ingress-test-token"
FAKES: dict[str, Callable[..., FakeForge]] = {
    "github": FakeGitHub,
    "gitea": FakeGitea,
    "forgejo": lambda *a, **kw: FakeGitea(*a, forgejo=True, **kw),
    "azure-devops": FakeAzureDevOps,
}
SIGNATURE_HEADERS = ("x-hub-signature-256", "x-gitea-signature", "x-forgejo-signature")


@dataclass
class World:
    """A fake forge with an app and a GitOps repository, and Baton's API serving its webhooks."""

    fake: FakeForge
    config: BatonConfig
    client: Client
    api: str
    serve: Callable[..., str]

    @property
    def app(self) -> str:
        return self.config.apps[0].name

    @property
    def app_repo(self) -> str:
        return self.config.apps[0].repo

    @property
    def gitops_repo(self) -> str:
        return self.config.gitops.repo

    def change_id(self, number: int) -> str:
        return f"change/{self.app}/{number}"

    async def delivered(self) -> Sent:
        """The last webhook, once sent (Baton's answer included)."""
        return (await asyncio.to_thread(self.fake.flush))[-1]

    async def post(
        self, sent: Sent, url: str | None = None, **headers: str | None
    ) -> httpx.Response:
        """Send `sent` again, with `headers` replaced (None removes one)."""
        merged = {k.lower(): v for k, v in sent.headers.items()}
        for name, value in headers.items():
            merged.pop(name.replace("_", "-"), None)
            if value is not None:
                merged[name.replace("_", "-")] = value
        async with httpx.AsyncClient() as http:
            return await http.post(
                (url or self.api) + self.fake.webhook_path, content=sent.body, headers=merged
            )


@pytest.fixture(params=["github", "gitea", "azure-devops"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def world(
    kind: str, temporal_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    client = temporal_env.client
    monkeypatch.setenv("TEMPORAL_ADDRESS", client.service_client.config.target_host)
    monkeypatch.setenv("BATON_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FORGE_TOKEN", TOKEN)
    fake = FAKES[kind](tmp_path / "forge", {TOKEN: "baton"}, webhook_secret=SECRET)
    owner = "shop" if fake.kind == "azure-devops" else "acme"
    app = f"web-{uuid.uuid4().hex[:8]}"  # workflow ids of its own on the session's server
    config = BatonConfig(
        forge=ForgeConfig(
            kind=fake.kind, url=fake.url, credentials=Credentials(token_env="FORGE_TOKEN")
        ),
        gitops=GitOpsConfig(repo=f"{owner}/gitops"),
        apps=[AppConfig(name=app, repo=f"{owner}/{app}", image=app, chart="chart")],
        environments=[
            EnvironmentConfig(
                name="staging",
                namespace="staging",
                approvals=ApprovalPolicy(required=1, approvers=["carol"]),
            )
        ],
    )
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "README.md").write_text("seed\n")
    servers: list[Served] = []

    def serve(other: BatonConfig | None = None) -> str:
        served = Served(create_app(Settings(home=tmp_path / "home"), other or config)).start()
        servers.append(served)
        return served.url

    with fake:
        fake.create_repo(config.apps[0].repo, from_dir=seed)
        fake.create_repo(config.gitops.repo, from_dir=seed)
        api = await asyncio.to_thread(serve)
        fake.deliver_to(api)
        yield World(fake, config, client, api, serve)
        for served in servers:
            served.stop()
    async for execution in client.list_workflows(f"BatonApp = '{app}'"):
        if execution.status == WorkflowExecutionStatus.RUNNING:
            await client.get_workflow_handle(execution.id).terminate("test over")


async def open_app_pr(
    world: World, branch: str = "feature", base: str = "main"
) -> tuple[int, Sent]:
    """Push a branch and open its PR into `base` on the fake as alice; the PR number and its
    webhook."""
    await asyncio.to_thread(world.fake.push, world.app_repo, branch, {"a.txt": branch}, base)
    pr = await asyncio.to_thread(
        world.fake.open_pull_request, world.app_repo, branch, base, "Add a", "", "alice"
    )
    return pr.number, await world.delivered()


async def executions(client: Client, workflow_id: str, *, at_least: int = 0) -> int:
    """How many executions of `workflow_id` visibility lists, once it lists `at_least` of them:
    it records a start a moment after the start itself."""

    async def listed() -> int:
        return len([e async for e in client.list_workflows(f"WorkflowId = '{workflow_id}'")])

    return await eventually_async(
        listed, lambda count: count >= at_least, what=f"visibility to list {workflow_id}"
    )


async def running(client: Client, workflow_id: str) -> WorkflowExecutionDescription:
    """The workflow's description once it has started: the API answers a delivery that starts a
    change once the start is journaled, and makes it a moment later (`baton.start_journal`)."""

    async def described() -> WorkflowExecutionDescription | None:
        try:
            return await client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return None

    description = await eventually_async(described, what=f"{workflow_id} to start")
    assert description is not None
    return description


async def signals(handle: WorkflowHandle) -> list[dict]:
    """The arguments of every signal in the workflow's history."""
    history = await handle.fetch_history()
    return [
        json.loads(event.workflow_execution_signaled_event_attributes.input.payloads[0].data)
        for event in history.events
        if event.HasField("workflow_execution_signaled_event_attributes")
    ]


async def test_opened_pull_request_starts_one_change_also_when_redelivered(world: World) -> None:
    number, opened = await open_app_pr(world)
    assert opened.status == 202, opened.answer
    change = world.change_id(number)
    description = await running(world.client, change)
    assert description.status == WorkflowExecutionStatus.RUNNING

    again = await world.post(opened)
    assert again.status_code == 200 and "duplicate" in again.text
    # A second API instance has not seen the delivery: Temporal's workflow id still dedupes.
    fresh = await asyncio.to_thread(world.serve)
    elsewhere = await world.post(opened, url=fresh)
    assert elsewhere.status_code == 202 and elsewhere.json()["workflow_id"] == change
    assert await executions(world.client, change, at_least=1) == 1
    assert (await world.client.get_workflow_handle(change).describe()).run_id == description.run_id


async def test_tampered_or_unauthenticated_delivery_is_401_and_starts_nothing(
    world: World,
) -> None:
    world.fake.deliver_to(None)
    number, opened = await open_app_pr(world)
    if world.fake.kind == "azure-devops":  # unsigned: the credentials are what is checked
        attempts = [
            await world.post(opened, authorization=None),
            await world.post(opened, authorization=basic_auth("baton", "not-the-secret")),
            await world.post(opened, authorization=basic_auth("mallory", SECRET)),
        ]
    else:
        tampered = Sent(**{**opened.__dict__, "body": opened.body.replace(b"Add a", b"Add b")})
        attempts = [
            await world.post(tampered),
            await world.post(opened, **dict.fromkeys(SIGNATURE_HEADERS)),
            await world.post(
                opened,
                x_gitea_signature="0" * 64,
                x_forgejo_signature="0" * 64,
                x_hub_signature_256="sha256=" + "0" * 64,
            ),
        ]
    assert [a.status_code for a in attempts] == [401] * len(attempts)
    with pytest.raises(RPCError):
        await world.client.get_workflow_handle(world.change_id(number)).describe()
    # The untouched delivery was valid all along.
    assert (await world.post(opened)).status_code == 202


async def test_merge_on_the_forge_signals_the_change_with_the_merge_commit(world: World) -> None:
    number, _ = await open_app_pr(world)
    merge = await asyncio.to_thread(world.fake.merge, world.app_repo, number)
    merged = await world.delivered()
    assert merged.status == 202, merged.answer
    events = await signals(world.client.get_workflow_handle(world.change_id(number)))
    assert {"action": "merged", "merge_commit_sha": merge} in [
        {k: e[k] for k in ("action", "merge_commit_sha")} for e in events
    ]


async def test_new_head_signals_the_change_with_it(world: World) -> None:
    number, _ = await open_app_pr(world)
    head = await asyncio.to_thread(
        world.fake.push, world.app_repo, "feature", {"b.txt": "b"}, "feature"
    )
    await asyncio.to_thread(world.fake.announce_push, world.app_repo, number)
    assert (await world.delivered()).status == 202
    events = await signals(world.client.get_workflow_handle(world.change_id(number)))
    assert [e["head_sha"] for e in events if e["action"] == "synchronize"] == [head]


@activity.defn(name="render_environment")
async def render_environment(input: RolloutInput) -> Rendered:
    return fake_rendered(input)


def rollout_input(world: World) -> RolloutInput:
    app = world.config.apps[0]
    return RolloutInput(
        change_id=world.change_id(1),
        app=app,
        environment=world.config.environments[0],
        artifact=fake_artifact(app.name, "f" * 40),
        author="alice",
    )


@asynccontextmanager
async def awaiting_review(
    world: World, input: RolloutInput | None = None
) -> AsyncIterator[tuple[WorkflowHandle, PullRequest]]:
    """A rollout of the world's app at its approval gate, its GitOps PR opened on the fake as
    Baton opens it; the rollout runs on workers of the test's own, and is terminated after."""
    rollout = f"rollout/{world.app}/staging/{'f' * 40}"
    fake = world.fake
    await asyncio.to_thread(fake.push, world.gitops_repo, "baton/web", {"m.yaml": "kind: x\n"})
    pr = await asyncio.to_thread(
        fake.open_pull_request,
        world.gitops_repo,
        "baton/web",
        "main",
        "Deploy",
        f"Deploys web.\n\nBaton-Rollout: {rollout}",
        "baton",
    )
    await world.delivered()

    @activity.defn(name="propose_gitops_change")
    async def propose(input: ProposeInput) -> GitOpsPullRequest:
        return GitOpsPullRequest(
            number=pr.number, url=pr.html_url, head_branch=pr.head_branch, head_sha=pr.head_sha
        )

    deploy = Worker(
        world.client, task_queue=TaskQueues.DEPLOY, activities=[render_environment, propose]
    )
    flows = Worker(world.client, task_queue=TaskQueues.WORKFLOWS, workflows=[EnvironmentRollout])
    async with deploy, flows:
        handle = await world.client.start_workflow(
            EnvironmentRollout.run,
            input or rollout_input(world),
            id=rollout,
            task_queue=TaskQueues.WORKFLOWS,
        )
        try:
            await until(handle, lambda s: s.gate is not None and s.gate.kind == "approval")
            yield handle, pr
        finally:
            await handle.terminate("test over")


async def test_approving_review_of_the_gitops_pr_counts_under_the_policy(world: World) -> None:
    fake = world.fake
    async with awaiting_review(world) as (handle, pr):
        await asyncio.to_thread(fake.review, world.gitops_repo, pr.number, "mallory", "approved")
        await asyncio.to_thread(fake.review, world.gitops_repo, pr.number, "carol", "approved")
        assert (await world.delivered()).status == 202
        status = await until(handle, lambda s: s.approvals)
        assert [(a.user, a.source) for a in status.approvals] == [("carol", "forge")]
        notes = [s.detail for s in status.timeline if s.name == "note"]
        assert "review by mallory not counted: mallory may not approve staging" in notes[0]


async def until(handle: WorkflowHandle, done: Callable):
    """Query the rollout's status until `done(status)`."""
    return await eventually_async(
        lambda: handle.query(EnvironmentRollout.status), done, what="the rollout to get there"
    )


@pytest.mark.parametrize("kind", ["forgejo"])
async def test_forgejo_headers_are_accepted_too(world: World) -> None:
    number, opened = await open_app_pr(world)
    assert "X-Forgejo-Signature" in opened.headers and "X-Gitea-Signature" not in opened.headers
    assert opened.status == 202, opened.answer
    assert await executions(world.client, world.change_id(number), at_least=1) == 1


@pytest.mark.parametrize("kind", ["azure-devops"])
async def test_azure_payload_is_only_a_pointer_to_the_pull_request(world: World) -> None:
    """Unsigned bodies cannot be trusted: a PR the forge does not have starts nothing."""
    world.fake.deliver_to(None)
    _, opened = await open_app_pr(world)
    forged = json.loads(opened.body)
    forged["resource"]["pullRequestId"] = 999
    forged["id"] = str(uuid.uuid4())
    answer = await world.post(Sent(**{**opened.__dict__, "body": json.dumps(forged).encode()}))
    assert answer.status_code == 202 and "not found" in answer.text
    assert await executions(world.client, world.change_id(999)) == 0


@pytest.mark.parametrize("kind", ["azure-devops"])
async def test_azure_merge_commit_of_an_active_pr_is_not_a_merge(world: World) -> None:
    """`git.pullrequest.merged` also fires for speculative merges: the PR's status decides."""
    number, _ = await open_app_pr(world)
    pr = world.fake.store.get_pull_request(world.app_repo, number)
    world.fake._event("git.pullrequest.merged", pr, "merge commit created")
    answer = await world.delivered()
    assert answer.status == 202 and "not completed" in answer.answer
    events = await signals(world.client.get_workflow_handle(world.change_id(number)))
    assert [e for e in events if e["action"] == "merged"] == []
