"""Deliveries as forges send them, and pull-request life as it happens, per forge.

Each fake forge sends its own webhooks (signed its way, in the content type its webhook form
offers) to Baton's API on a port; Temporal (the session's dev server) shows what was started or
signalled. No worker runs the changes here: tests/workflows/test_pull_request_life.py runs them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus

from baton.config import ApprovalPolicy, BatonConfig
from baton.models import RolloutStatus, Stage
from tests.fakes.forges import Sent
from tests.unit import test_ingress_forges as forges
from tests.unit.test_ingress_forges import (
    World,
    awaiting_review,
    executions,
    open_app_pr,
    rollout_input,
    signals,
    until,
)

# test_ingress_forges' fixtures: a fake forge per `kind`, Baton's API serving its webhooks.
kind, world = forges.kind, forges.world

FORM = "application/x-www-form-urlencoded"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "deliveries"


async def deliver(world: World, event: str, payload: dict[str, Any]) -> Sent:
    """Send `payload` as the fake forge's webhook `event` (its headers, signature and encoding)."""
    fake = world.fake
    if fake.kind == "azure-devops":
        fake._send(event, {**payload, "id": str(uuid.uuid4())}, {})
    else:
        fake._send(event, payload, fake.event_headers(event, event, str(uuid.uuid4())))  # type: ignore[attr-defined]
    return await world.delivered()


async def started(world: World) -> list[str]:
    """The workflow ids of the changes started for the world's app."""
    query = f"BatonApp = '{world.app}'"
    return [e.id async for e in world.client.list_workflows(query)]


def approval(status: RolloutStatus) -> Stage:
    """The rollout's approval stage."""
    return next(stage for stage in status.timeline if stage.name == "approval")


def actions(events: list[dict]) -> list[str]:
    return [e["action"] for e in events]


# Deliveries as forges send them


@pytest.mark.parametrize("kind", ["github", "gitea"])
@pytest.mark.parametrize(
    "content_type", [FORM, f"{FORM}; charset=utf-8", "application/json; charset=utf-8"]
)
async def test_a_delivery_in_either_content_type_starts_the_change(
    world: World, content_type: str
) -> None:
    """GitHub preselects the form encoding in its webhook form, Gitea offers it too."""
    world.fake.content_type = content_type
    number, opened = await open_app_pr(world)
    assert opened.headers["Content-Type"] == content_type
    assert opened.status == 202, opened.answer
    assert json.loads(opened.answer)["result"] == f"started {world.change_id(number)}"
    assert await executions(world.client, world.change_id(number), at_least=1) == 1


@pytest.mark.parametrize("kind", ["github"])
async def test_case_02_a_form_encoded_github_delivery_starts_the_change(world: World) -> None:
    """Case 02: GitHub's own pull_request.opened payload, sent form-encoded, starts the change."""
    payload = json.loads((FIXTURES / "github" / "pull_request.opened.json").read_text())
    repo = payload["repository"]["full_name"]  # ExampleOrg/Hello-World, default branch master
    app = world.config.apps[0].model_copy(update={"repo": repo})
    api = await asyncio.to_thread(world.serve, world.config.model_copy(update={"apps": [app]}))
    world.fake.deliver_to(api)
    world.fake.content_type = FORM

    answer = await deliver(world, "pull_request", payload)

    result = json.loads(answer.answer)["result"]
    assert (answer.status, result) == (202, f"started change/{app.name}/2")
    assert await executions(world.client, f"change/{app.name}/2", at_least=1) == 1


@pytest.mark.parametrize("kind", ["github", "gitea"])
async def test_a_content_type_baton_cannot_read_is_refused_naming_the_one_to_set(
    world: World,
) -> None:
    world.fake.content_type = "text/plain"
    number, opened = await open_app_pr(world)
    assert opened.status == 415
    assert "set the webhook's content type to application/json" in opened.answer
    assert await executions(world.client, world.change_id(number)) == 0


async def test_ping_and_test_deliveries_are_answered_without_acting(world: World) -> None:
    fake = world.fake
    repository = fake.repo_json(world.app_repo)  # type: ignore[attr-defined]
    if fake.kind == "github":  # sent when the webhook is created
        answer = await deliver(world, "ping", {"zen": "Design for failure.", "hook_id": 1})
        assert (answer.status, json.loads(answer.answer)) == (200, {"result": "pong"})
    elif fake.kind == "gitea":  # "Test Delivery" sends a push of the default branch's head
        head = fake._branches(world.app_repo)["main"]
        push = {"ref": "refs/heads/main", "before": head, "after": head, "commits": []}
        answer = await deliver(world, "push", {**push, "repository": repository})
        assert answer.status == 202 and "ignored" in answer.answer
    else:  # "Test" sends the documentation's sample, about the Fabrikam project
        sample = {
            "eventType": "git.pullrequest.created",
            "resource": {
                "repository": {"name": "Fabrikam", "project": {"name": "Fabrikam"}},
                "pullRequestId": 1,
            },
        }
        answer = await deliver(world, "git.pullrequest.created", sample)
        assert answer.status == 202 and "ignored" in answer.answer
    assert await started(world) == []


async def test_the_repository_is_matched_as_the_forge_matches_names(world: World) -> None:
    """GitHub, Gitea and Azure DevOps ignore case in owner (project) and repository names."""
    app = world.config.apps[0].model_copy(update={"repo": world.app_repo.upper()})
    api = await asyncio.to_thread(world.serve, world.config.model_copy(update={"apps": [app]}))
    world.fake.deliver_to(api)
    number, opened = await open_app_pr(world)
    assert opened.status == 202 and "started" in opened.answer, opened.answer
    assert await executions(world.client, world.change_id(number), at_least=1) == 1


@pytest.mark.parametrize("kind", ["github", "gitea"])
async def test_a_renamed_repository_still_reaches_its_change_by_repository_id(
    world: World,
) -> None:
    number, opened = await open_app_pr(world)
    renamed = copy.deepcopy(opened.payload)
    renamed["action"] = "synchronize" if world.fake.kind == "github" else "synchronized"
    renamed["repository"]["full_name"] = f"acme/{world.app}-renamed"
    renamed["pull_request"]["head"]["sha"] = "e" * 40

    answer = await deliver(world, "pull_request", renamed)

    assert answer.status == 202 and "signalled" in answer.answer, answer.answer
    events = await signals(world.client.get_workflow_handle(world.change_id(number)))
    assert [(e["action"], e["head_sha"]) for e in events] == [("synchronize", "e" * 40)]


@pytest.mark.parametrize("kind", ["github"])
async def test_github_rename_event_is_noted_and_later_deliveries_follow_it(world: World) -> None:
    repository = world.fake.repo_json(world.app_repo) | {  # type: ignore[attr-defined]
        "id": 4242,
        "full_name": f"acme/{world.app}-new",
    }
    changes = {"repository": {"name": {"from": world.app}}}
    answer = await deliver(
        world, "repository", {"action": "renamed", "changes": changes, "repository": repository}
    )
    assert answer.status == 202
    assert json.loads(answer.answer)["result"].startswith(f"noted: {world.app_repo} is now")


# Pull-request life as it happens


async def test_case_04_pull_requests_not_into_the_release_branch_are_not_integrated(
    world: World,
) -> None:
    """Case 04: a stacked PR (feature-b into feature-a) merged there, and a PR retargeted from
    main to release-1.x then merged there: neither is signalled `merged`, the retargeted PR's
    change is told to stop, and retargeting it back into main resumes it."""
    fake, repo = world.fake, world.app_repo
    await asyncio.to_thread(fake.push, repo, "feature-a", {"a.txt": "a"})
    stacked, opened = await open_app_pr(world, "feature-b", base="feature-a")
    assert json.loads(opened.answer)["result"] == (
        f"ignored: #{stacked} is into 'feature-a', not the release branch 'main'"
    )
    await asyncio.to_thread(fake.merge, repo, stacked)
    assert all("ignored" in sent.answer for sent in await asyncio.to_thread(fake.flush))
    assert await executions(world.client, world.change_id(stacked)) == 0

    number, _ = await open_app_pr(world, "feature-c")
    await asyncio.to_thread(fake.retarget, repo, number, "release-1.x")
    retargeted = await world.delivered()
    assert retargeted.status == 202 and "signalled" in retargeted.answer, retargeted.answer
    await asyncio.to_thread(fake.merge, repo, number)
    await world.delivered()

    events = await signals(world.client.get_workflow_handle(world.change_id(number)))
    assert "merged" not in actions(events)
    assert {"action": "retargeted", "base_branch": "release-1.x"}.items() <= events[0].items()


async def test_a_pull_request_retargeted_into_the_release_branch_gets_a_change(
    world: World,
) -> None:
    fake, repo = world.fake, world.app_repo
    await asyncio.to_thread(fake.push, repo, "develop", {"d.txt": "d"})
    number, opened = await open_app_pr(world, "feature", base="develop")
    assert "ignored" in opened.answer

    await asyncio.to_thread(fake.retarget, repo, number, "main")

    answer = await world.delivered()
    assert answer.status == 202 and "reopened" in answer.answer, answer.answer
    handle = world.client.get_workflow_handle(world.change_id(number))
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    assert actions(await signals(handle)) == ["reopened"]


async def test_apps_branch_names_the_release_branch(world: World) -> None:
    app = world.config.apps[0].model_copy(update={"branch": "release"})
    config: BatonConfig = world.config.model_copy(update={"apps": [app]})
    world.fake.deliver_to(await asyncio.to_thread(world.serve, config))
    await asyncio.to_thread(world.fake.push, world.app_repo, "release", {"r.txt": "r"})
    into_main, to_main = await open_app_pr(world, "to-main")
    into_release, to_release = await open_app_pr(world, "to-release", base="release")
    assert "not the release branch 'release'" in to_main.answer
    assert "started" in to_release.answer
    assert await executions(world.client, world.change_id(into_main)) == 0
    assert await executions(world.client, world.change_id(into_release), at_least=1) == 1


@pytest.mark.parametrize("kind", ["github", "gitea"])
async def test_a_reopened_pull_request_is_signalled_or_started_with_reopened(
    world: World,
) -> None:
    """Signal-with-start: the change gets `reopened` whether its run still runs (here: no worker
    runs it, so it never finishes closing) or a new run starts."""
    number, _ = await open_app_pr(world)
    await asyncio.to_thread(world.fake.close, world.app_repo, number)
    await asyncio.to_thread(world.fake.reopen, world.app_repo, number)
    answers = [sent.answer for sent in (await asyncio.to_thread(world.fake.flush))[-2:]]
    assert [json.loads(a)["result"] for a in answers] == [
        f"signalled {world.change_id(number)}",
        f"reopened {world.change_id(number)}",
    ]
    handle = world.client.get_workflow_handle(world.change_id(number))
    assert actions(await signals(handle)) == ["closed", "reopened"]
    assert await executions(world.client, world.change_id(number), at_least=1) == 1


# Reviews withdrawn on the forge


async def test_a_withdrawn_approval_stops_counting_for_the_rollout(world: World) -> None:
    """GitHub: the review is dismissed; Gitea: the reviewer requests changes after approving;
    Azure DevOps: the vote is reset. Two approvals are needed, so the round is still open."""
    fake = world.fake
    two = ApprovalPolicy(required=2, approvers=["carol", "dave"])
    input = rollout_input(world)
    input = input.model_copy(
        update={"environment": input.environment.model_copy(update={"approvals": two})}
    )
    async with awaiting_review(world, input) as (handle, pr):
        await asyncio.to_thread(fake.review, world.gitops_repo, pr.number, "carol", "approved")
        await until(handle, lambda s: [a.user for a in s.approvals] == ["carol"])

        await asyncio.to_thread(fake.withdraw_approval, world.gitops_repo, pr.number, "carol")

        status = await until(handle, lambda s: s.approvals == [])
        notes = [s.detail for s in status.timeline if s.name == "note"]
        assert "carol's approval was dismissed or withdrawn on the forge" in notes[-1]
        if fake.kind == "gitea":  # requesting changes is a rejection besides
            status = await until(handle, lambda s: approval(s).outcome == "failed")
            assert approval(status).detail.startswith("rejected by carol")
        else:
            assert status.gate is not None and status.gate.approved_by == []
            assert status.gate.description.startswith("0/2 approvals")
