"""Deliveries as forges send them, and pull-request life as it happens, per forge.

Each fake forge sends its own webhooks (signed its way, in the content type its webhook form
offers) to Baton's API on a port; Temporal (the session's dev server) shows what was started or
signalled. No worker runs the changes here: tests/workflows/test_pull_request_life.py runs them.
"""

from __future__ import annotations

import asyncio
import copy
import getpass
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus

from baton.config import ApprovalPolicy, AuthConfig, BatonConfig, CIConfig, UserRecord
from baton.forges import create_forge
from baton.local.forge import LocalForge
from baton.models import RolloutStatus, Stage
from baton.settings import Settings
from baton.temporal import push_change_id
from tests.conftest import eventually_async
from tests.fakes.forges import Sent
from tests.unit import test_ingress_forges as forges
from tests.unit.test_ingress_forges import (
    World,
    awaiting_review,
    executions,
    open_app_pr,
    rollout_input,
    running,
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
    assert json.loads(opened.answer)["result"] == f"accepted: starting {world.change_id(number)}"
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
    assert (answer.status, result) == (202, f"accepted: starting change/{app.name}/2")
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
    assert opened.status == 202 and "accepted: starting" in opened.answer, opened.answer
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
    assert "accepted: starting" in to_release.answer
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


# Every commit to the release branch gets CI


PUSH = {"github": "push", "gitea": "push", "azure-devops": "git.push"}
"""Each forge's name of the delivery of a push."""


def push_change(world: World, sha: str) -> str:
    return push_change_id(world.app, sha)


async def listed(world: World, count: int) -> list[str]:
    """The changes started for the world's app, once visibility lists `count` of them (it
    records a start a moment after the start itself)."""
    return await eventually_async(
        lambda: started(world), lambda ids: len(ids) >= count, what=f"{count} changes listed"
    )


def main_head(world: World) -> str:
    repo = world.fake.store.repo_path(world.app_repo)
    return subprocess.run(
        ["git", f"--git-dir={repo}", "rev-parse", "refs/heads/main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


async def test_a_direct_push_to_the_release_branch_starts_one_change_also_when_redelivered(
    world: World,
) -> None:
    """GitHub's and Gitea's `push`, Azure DevOps' `git.push` (its `refUpdates`)."""
    sha = await asyncio.to_thread(
        world.fake.push_directly, world.app_repo, "main", {"hotfix.txt": "fix"}
    )
    sent = await world.delivered()
    assert (sent.event, sent.status) == (PUSH[world.fake.kind], 202), sent.answer
    change = push_change(world, sha)
    assert json.loads(sent.answer)["workflow_id"] == change
    handle = world.client.get_workflow_handle(change)
    description = await running(world.client, change)
    assert description.status == WorkflowExecutionStatus.RUNNING
    start = (await handle.fetch_history()).events[0]
    input = json.loads(start.workflow_execution_started_event_attributes.input.payloads[0].data)
    assert {k: input[k] for k in ("trigger", "pr_number", "head_sha", "base_branch")} == {
        "trigger": "push",
        "pr_number": None,
        "head_sha": sha,
        "base_branch": "main",
    }
    assert (input["title"], input["author"]) == ("Change main", "fake-forge")

    again = await world.post(sent)
    assert again.status_code == 200 and "duplicate" in again.text
    # Another API instance has not seen the delivery id: the workflow id still dedupes.
    elsewhere = await world.post(sent, url=await asyncio.to_thread(world.serve))
    assert elsewhere.status_code == 202 and elsewhere.json()["workflow_id"] == change
    assert await executions(world.client, change, at_least=1) == 1
    assert (await handle.describe()).run_id == description.run_id
    # What the change asks the forge first: no pull request merged as this commit.
    forge = create_forge(world.config.forge, Settings())
    assert await asyncio.to_thread(forge.merged_pull_request, world.app_repo, sha) is None


PUSH_FIXTURE = {"github": "push.json", "gitea": "push.json", "azure-devops": "git.push.json"}
"""Each forge's delivery of a push of two commits to main by pat-ops (Azure: pat@shop.example),
one written by Dana (forge login dana-r), one by Sam (an email only `auth.users` knows)."""


async def test_a_pushed_change_names_its_pusher_and_its_commits_authors_as_baton_users(
    world: World,
) -> None:
    """Not the OS user or the forge account alone: the pusher as the delivery names them, and
    who wrote the commits, mapped to Baton users by login and email (`policy.authors_of`)."""
    payload = json.loads((FIXTURES / world.fake.kind / PUSH_FIXTURE[world.fake.kind]).read_text())
    if world.fake.kind == "azure-devops":
        repository = payload["resource"]["repository"]
        repo = f"{repository['project']['name']}/{repository['name']}"
        head = payload["resource"]["refUpdates"][0]["newObjectId"]
    else:
        repo, head = payload["repository"]["full_name"], payload["after"]
    users = {
        "dana": UserRecord(forge_users=["dana-r"], emails=["dana@shop.example"]),
        "sam": UserRecord(emails=["sam@laptop.local"]),
    }
    config = world.config.model_copy(
        update={
            "apps": [world.config.apps[0].model_copy(update={"repo": repo})],
            "auth": AuthConfig(users=users),
        }
    )
    world.fake.deliver_to(await asyncio.to_thread(world.serve, config))

    sent = await deliver(world, PUSH[world.fake.kind], payload)

    assert sent.status == 202, sent.answer
    change = json.loads(sent.answer)["workflow_id"]
    assert change == push_change_id(world.app, head)
    await running(world.client, change)
    start = (await world.client.get_workflow_handle(change).fetch_history()).events[0]
    input = json.loads(start.workflow_execution_started_event_attributes.input.payloads[0].data)
    assert (input["author"], input["commit_authors"]) == {
        "github": ("pat-ops", ["dana", "dana-r", "sam"]),
        "gitea": ("pat-ops", ["dana", "dana-r", "sam"]),
        "azure-devops": ("pat@shop.example", ["sam", "dana"]),  # newest first, no logins
    }[world.fake.kind]


@pytest.mark.parametrize("kind", ["azure-devops"])
async def test_an_azure_push_is_acted_on_ref_by_ref_and_one_naming_no_refs_is_refused(
    world: World,
) -> None:
    """One `git.push` can move several refs (`git push origin main feature`): each is a push of
    its own; a resource without `refUpdates` (the hook sends no resource details) is a 400."""
    fake, repo = world.fake, world.app_repo
    before = main_head(world)
    feature = await asyncio.to_thread(fake.push, repo, "feature", {"f.txt": "f"}, "main")
    after = await asyncio.to_thread(fake.push, repo, "main", {"m.txt": "m"}, "main")
    project, name = repo.split("/")
    resource = {
        "commits": [{"commitId": after, "comment": "Fix the total\n\nDetails."}],
        "refUpdates": [
            {"name": "refs/heads/feature", "oldObjectId": "0" * 40, "newObjectId": feature},
            {"name": "refs/heads/main", "oldObjectId": before, "newObjectId": after},
        ],
        "repository": fake.repo_json(repo),  # type: ignore[attr-defined]
        "pushedBy": {"displayName": "Maya Lin", "uniqueName": "maya@shop.example"},
        "pushId": 7,
    }

    sent = await deliver(world, "git.push", {"eventType": "git.push", "resource": resource})

    assert sent.status == 202
    answer = json.loads(sent.answer)
    assert answer["result"] == (
        "ignored: refs/heads/feature is not the release branch 'main'; "
        f"accepted: starting {push_change(world, after)}"
    )
    await running(world.client, answer["workflow_id"])
    start = (await world.client.get_workflow_handle(answer["workflow_id"]).fetch_history()).events[
        0
    ]
    input = json.loads(start.workflow_execution_started_event_attributes.input.payloads[0].data)
    assert (input["title"], input["author"], input["repo"]) == (
        "Fix the total",
        "maya@shop.example",
        f"{project}/{name}",
    )
    minimal = {"eventType": "git.push", "resource": {"repository": resource["repository"]}}
    refused = await deliver(world, "git.push", minimal)
    assert (refused.status, json.loads(refused.answer)) == (
        400,
        {
            "error": "payload lacks resource.refUpdates: set the service hook's "
            '"Resource details to send" to All'
        },
    )


@pytest.mark.parametrize("kind", ["github", "azure-devops"])
async def test_a_push_to_a_release_branch_integrated_on_a_schedule_waits_for_its_batch(
    world: World,
) -> None:
    """With `apps[].ci.schedule` the push starts nothing: the next scheduled batch carries it
    (tests/workflows/test_ci_batch.py)."""
    app = world.config.apps[0].model_copy(update={"ci": CIConfig(schedule="0 * * * *")})
    config: BatonConfig = world.config.model_copy(update={"apps": [app]})
    world.fake.deliver_to(await asyncio.to_thread(world.serve, config))

    sha = await asyncio.to_thread(world.fake.push_directly, world.app_repo, "main", {"a.txt": "a"})

    sent = await world.delivered()
    assert sent.status == 202
    assert json.loads(sent.answer)["result"] == (
        f"batched: main of {world.app} is integrated on the CI schedule '0 * * * *' (UTC), "
        f"{sha[:12]} with the next batch"
    )
    assert await executions(world.client, push_change(world, sha)) == 0


async def test_a_push_to_another_branch_or_a_deleted_branch_starts_nothing(world: World) -> None:
    fake, repo = world.fake, world.app_repo
    sha = await asyncio.to_thread(fake.push, repo, "feature", {"a.txt": "a"}, "main")
    await asyncio.to_thread(fake.pushed, repo, "feature", "0" * 40, sha)  # branch created
    sent = await world.delivered()
    assert sent.status == 202 and "not the release branch 'main'" in sent.answer
    await asyncio.to_thread(fake.pushed, repo, "main", main_head(world), "0" * 40)
    deleted = await world.delivered()
    assert deleted.status == 202 and "refs/heads/main was deleted" in deleted.answer
    assert await started(world) == []


@pytest.mark.parametrize("push_first", [True, False], ids=["push-first", "merged-first"])
async def test_a_merge_push_is_left_to_the_pull_requests_change_in_either_order(
    world: World, push_first: bool
) -> None:
    """The forge sends the merge's push and the PR's "closed" delivery in either order; either
    way the PR's change gets the merge, and the forge tells the push's change that a PR merged
    as the commit (test_push_change.py: that change then ends `superseded`, nothing built)."""
    number, _ = await open_app_pr(world)
    fake, repo = world.fake, world.app_repo
    before = main_head(world)
    pr = await asyncio.to_thread(fake.pull_request, repo, number)
    merge = await asyncio.to_thread(fake.store.merge_pull_request, repo, number, pr.head_sha)
    deliveries = [
        lambda: fake.pushed(repo, "main", before, merge),
        lambda: fake.merged(fake.pull_request(repo, number)),
    ]
    for send in deliveries if push_first else deliveries[::-1]:
        await asyncio.to_thread(send)
        assert (await world.delivered()).status == 202

    events = await signals(world.client.get_workflow_handle(world.change_id(number)))
    # (Azure DevOps sends two events for a merge, each read back as completed: merged twice.)
    assert {e["merge_commit_sha"] for e in events if e["action"] == "merged"} == {merge}
    forge = create_forge(world.config.forge, Settings())
    assert await asyncio.to_thread(forge.merged_pull_request, repo, merge) == number
    expected = [world.change_id(number), push_change(world, merge)]
    assert sorted(await listed(world, len(expected))) == sorted(expected)


@pytest.mark.parametrize("kind", ["github"])
async def test_the_local_forges_pushes_start_a_change_per_direct_commit_only(
    world: World, tmp_path: Path
) -> None:
    """Baton's local forge sends GitHub-format deliveries: a `git push` to its repository reports
    the push from its post-receive hook; a merge sends the merge's push before "closed"."""
    repo = world.app_repo
    hook = f"{world.api}/webhooks/github"
    forge = LocalForge(tmp_path / "local", webhook_url=hook, webhook_secret=forges.SECRET)
    seed = tmp_path / "seed"  # the world's seed: README.md
    forge.create_repo(repo, from_dir=seed)
    work = tmp_path / "work"

    def git(*args: str) -> str:
        command = ["git", "-c", "user.name=Alice", "-c", "user.email=alice@example.invalid"]
        run = subprocess.run(
            [*command, *args], cwd=work, capture_output=True, text=True, check=True
        )
        return run.stdout.strip()

    def commit_and_push(branch: str, name: str) -> str:
        (work / name).write_text(name)
        git("add", "-A")
        git("commit", "-q", "-m", f"Add {name}")
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return git("rev-parse", "HEAD")

    await asyncio.to_thread(
        subprocess.run, ["git", "clone", "-q", forge.clone_url(repo), str(work)], check=True
    )
    seeded = git("rev-parse", "HEAD")  # the first push, creating main: no change
    direct = await asyncio.to_thread(commit_and_push, "main", "hotfix.txt")
    git("checkout", "-q", "-b", "feature")
    await asyncio.to_thread(commit_and_push, "feature", "feature.txt")
    pr = await asyncio.to_thread(
        forge.open_pull_request, repo, "feature", "main", "Add", "", "alice"
    )
    merge = await asyncio.to_thread(forge.merge_pull_request, repo, pr.number, pr.head_sha)

    sent = [(d.event, d.action, d.status_code) for d in forge.list_deliveries()]
    assert sent[-2:] == [("push", None, 202), ("pull_request", "closed", 202)]
    assert sent[0] == ("push", None, 202)  # the seed, answered "ignored: ... was created"
    assert all(status == 202 for _, _, status in sent), sent
    expected = [
        push_change_id(world.app, direct),
        world.change_id(pr.number),
        push_change_id(world.app, merge),
    ]
    assert sorted(await listed(world, len(expected))) == sorted(expected)
    assert push_change_id(world.app, seeded) not in await started(world)
    # The direct push's change names who wrote its commit, not only the account that pushed.
    handle = world.client.get_workflow_handle(push_change_id(world.app, direct))
    start = (await handle.fetch_history()).events[0]
    input = json.loads(start.workflow_execution_started_event_attributes.input.payloads[0].data)
    pusher = getpass.getuser()  # the local forge knows who pushed as the OS user who ran git
    assert (input["author"], input["commit_authors"]) == (pusher, ["alice@example.invalid"])
    # What each push's change asks the forge first.
    assert forge.merged_pull_request(repo, direct) is None
    assert forge.merged_pull_request(repo, merge) == pr.number
