"""Following a change: `baton changes watch/wait/show/ls` read what the workflows publish (memo,
search attributes, a running build's heartbeat), live and with no worker; their errors are one
line with an exit code that says what kind of problem it is.

The change runs its real workflows on a real Temporal dev server with test_change.py's stand-in
activities; the command line runs in-process (`cli.main.run`) against the test's namespace.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    QueryWorkflowInput,
    WorkflowHandle,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.pipeline import BuildInput, CheckInput
from baton import changes
from baton.errors import ToolNotFound
from baton.models import ChangeStatus, CheckResult, Decision, RolloutStatus
from baton.temporal import Queries, SearchAttributes, TaskQueues
from cli.watch import WatchEvent, follow
from tests.conftest import Baton, serving, until
from tests.workflows import test_change as change_tests
from tests.workflows import test_rollout as rollout
from tests.workflows.test_change import (
    abort,
    change_activities,
    environment,
    head,
    merge_commit,
    merged,
    open_change,
    promoting,
    rollout_of,
)
from tests.workflows.test_pipelines import Steps
from tests.workflows.test_rollout import M
from workflows import WORKFLOWS

# test_change.py's fixtures: stand-in activities, served on the test's namespace (`serving_client`).
steps, fresh_world, closing = change_tests.steps, change_tests.fresh_world, change_tests.closing
serving_client = change_tests.client

BUILD_STEP = "Step 2/5 : RUN pip install -r requirements.txt"


class Build:
    """A stand-in image build; the CI's (of the merge commit) reports a Dockerfile step and
    holds there until released."""

    def __init__(self) -> None:
        self.released = asyncio.Event()

    def activity(self) -> Any:
        @activity.defn(name="build_image")
        async def build_image(input: BuildInput) -> CheckResult:
            while input.commit == merge_commit(1) and not self.released.is_set():
                activity.heartbeat(BUILD_STEP)
                await asyncio.sleep(0.1)
            return CheckResult(
                name="image", passed=True, exit_code=0, duration_s=1, summary="built", excerpt=""
            )

        return build_image


def with_build(activities: dict[str, list], build: Build) -> dict[str, list]:
    """`activities`, with `build`'s stand-in image build."""
    others = [a for a in activities[TaskQueues.BUILD] if a.__name__ != "build_image"]
    return {**activities, TaskQueues.BUILD: [*others, build.activity()]}


def with_missing_tool(activities: dict[str, list], missing: set[str]) -> dict[str, list]:
    """`activities`, with a check whose tool is missing on the worker while its kind is in
    `missing`: it fails as `find_tool` does, with a retryable ToolNotFound."""
    (check,) = [a for a in activities[TaskQueues.BUILD] if a.__name__ == "run_check"]

    @activity.defn(name="run_check")
    async def run_check(input: CheckInput) -> CheckResult:
        if input.kind in missing:
            raise ApplicationError(str(ToolNotFound("hadolint", "/opt/tools")), type="ToolNotFound")
        return await check(input)

    others = [a for a in activities[TaskQueues.BUILD] if a is not check]
    return {**activities, TaskQueues.BUILD: [*others, run_check]}


@pytest.fixture
async def cli_env(
    isolated_client: Client, temporal_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    """`baton` commands reach the test's namespace on the dev server."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", isolated_client.namespace)
    yield


async def run(baton: Baton, *args: str) -> tuple[int, str, str]:
    """`baton ARGS` in a thread: a command runs its own event loop."""
    return await asyncio.to_thread(baton, *args)


class NoQueries(Interceptor):
    """Fails any query: what answers while it is in place needs no worker."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        class Refuse(OutboundInterceptor):
            async def query_workflow(self, input: QueryWorkflowInput) -> Any:
                raise AssertionError(f"asked a worker: {input.query} of {input.id}")

        return Refuse(next)


def without_workers(client: Client) -> Client:
    return Client(
        client.service_client,
        namespace=client.namespace,
        data_converter=pydantic_data_converter,
        interceptors=[NoQueries()],
    )


async def test_watch_follows_a_change_live_from_its_build_step_to_each_environment(
    isolated_client: Client, steps: Steps, cli_env: None, baton: Baton
) -> None:
    client, build = isolated_client, Build()
    rollout.world.polled_synced = {M}
    events: list[WatchEvent] = []

    async def watch(change: WorkflowHandle) -> None:
        async for new, _ in follow(client, change.id, poll_s=0.1):
            events.extend(new)
            if any(e.event == "progress" and e.stage == "image" for e in new):
                build.released.set()
            if any(e.gate and e.gate.kind == "approval" for e in new):
                carol = Decision(user="carol")
                await changes.decide(client, change.id, "prod", carol, approve=True)

    async with serving(client, WORKFLOWS, with_build(change_activities(steps), build)):
        change = await merged(client, 1, environment("dev"), environment("prod", required=1))
        await watch(change)
        completed = await change.result()

    def ended(scope: str) -> list[str]:
        return [e.stage or "" for e in events if e.event == "ended" and e.scope == scope]

    progress = next(e for e in events if e.event == "progress")
    assert (progress.scope, progress.stage, progress.detail) == ("pipeline", "image", BUILD_STEP)
    assert progress.elapsed_s is not None and progress.text.startswith("image ")
    assert {"lint", "test", "long_test", "dockerfile", "templates", "image", "push"} <= set(
        ended("pipeline")
    )
    # Every stage of each rollout is shown, however fast the rollout went.
    for env in ("dev", "prod"):
        published = await changes.read_status(client, rollout_of(client, 1, env).id, RolloutStatus)
        assert published is not None
        assert ended(env) == [s.name for s in published.timeline if s.name != "note"]
    (gate,) = [e for e in events if e.gate and e.gate.kind == "approval"]
    assert gate.gate is not None and gate.environment == "prod"
    assert gate.gate.waiting_on == ["carol", "dave"] and "carol, dave" in gate.text
    outcomes = [(e.environment, e.outcome) for e in events if e.event == "environment"]
    assert outcomes == [("dev", "deployed"), ("prod", "deployed")]
    assert (events[-1].event, events[-1].state) == ("end", "completed")
    assert events.index(progress) < events.index(gate) < len(events) - 1

    # Once the rollout ended, the README's "waiting for prod approval" query no longer finds it.
    prod = await rollout_of(client, 1, "prod").describe()
    assert prod.typed_search_attributes.get(SearchAttributes.GATE) == "none"

    # The same, from the command line, after the fact and with no worker at all.
    code, out, err = await run(baton, "changes", "watch", change.id, "--json")
    assert (code, err) == (0, "")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["outcome"] for e in lines if e["event"] == "environment"] == ["deployed"] * 2
    assert lines[-1] == lines[-1] | {"event": "end", "state": "completed"}
    code, out, _ = await run(baton, "changes", "wait", change.id, "--until", "deployed:prod")
    assert (code, out.strip()) == (0, f"{change.id}: deployed:prod")

    detail = await changes.show(without_workers(client), change.id)
    assert detail.change == completed
    assert detail.workflow == "completed"


@pytest.fixture
async def aborted(serving_client: Client) -> WorkflowHandle:
    """A change aborted by bob while its rollout into prod waited for an approval."""
    change, _ = await promoting(serving_client)
    await abort(change, "bob", "wrong build")
    await change.result()
    return change


async def test_watch_and_wait_exit_non_zero_when_the_change_does_not_get_through(
    aborted: WorkflowHandle, cli_env: None, baton: Baton
) -> None:
    change = aborted
    code, out, _ = await run(baton, "changes", "watch", change.id)
    assert code == 1
    assert out.splitlines()[-1].endswith(f"{change.id} aborted")
    code, _, err = await run(baton, "changes", "wait", change.id, "--until", "completed")
    assert code == 1
    assert (
        err.strip() == f"{change.id} ended aborted (aborted by bob: wrong build) without completed"
    )


async def test_after_an_abort_show_has_no_gate_and_ls_says_aborted(
    serving_client: Client, aborted: WorkflowHandle, cli_env: None, baton: Baton
) -> None:
    change = aborted
    detail = await changes.show(serving_client, change.id)
    assert (detail.change.state, detail.change.gate, detail.rollout) == ("aborted", None, None)
    code, out, _ = await run(baton, "changes", "show", change.id)
    assert code == 0 and "waiting" not in out
    # Visibility, which `changes ls` reads, records the abort a moment after the change ends.
    _, out, _ = await until(
        lambda: run(baton, "changes", "ls"),
        lambda seen: [change.id, "aborted"] in [line.split()[:2] for line in seen[1].splitlines()],
        "the change listed as aborted",
    )
    (line,) = [line for line in out.splitlines() if line.startswith(f"{change.id} ")]
    assert line.split()[:2] == [change.id, "aborted"]


async def test_decisions_say_what_is_wrong_with_one_line_and_their_exit_code(
    serving_client: Client, cli_env: None, baton: Baton
) -> None:
    change, _ = await promoting(serving_client)

    # Decisions through the API: test_decision_api.py holds their exit codes (3 refused, 4 qa).
    code, _, err = await run(baton, "changes", "wait", change.id, "--until", "deployed:qa")
    assert (code, err.strip()) == (
        4,
        f"error: {change.id} has no environment 'qa': it is promoted to prod",
    )
    code, _, err = await run(baton, "changes", "wait", change.id, "--until", "prod")
    assert (code, err.strip()) == (
        2,
        "error: --until 'prod': give deployed:ENV (e.g. deployed:prod) or completed",
    )
    code, _, err = await run(
        baton, "changes", "wait", change.id, "--until", "deployed:prod", "--timeout", "1s"
    )
    assert (code, err.strip()) == (
        6,
        f"error: {change.id} is not deployed:prod after 1s (now: promoting prod)",
    )
    await abort(change, "bob", "wrong build")
    await change.result()
    # Aborting it again is refused ("has already ended"): test_change.py; through the API a 409.
    code, _, err = await run(baton, "changes", "show", "web/404")
    assert (code, err.strip()) == (
        4,
        "error: no change 'change/web/404': list changes with `baton changes ls`",
    )


async def test_a_tool_missing_on_the_worker_is_waited_out_not_the_author_s_to_fix(
    isolated_client: Client, steps: Steps, cli_env: None, baton: Baton
) -> None:
    client, missing = isolated_client, {"dockerfile"}
    async with serving(client, WORKFLOWS, with_missing_tool(change_activities(steps), missing)):
        change = await open_change(client, 1, environment("prod"))
        code, shown, _ = await until(
            lambda: run(baton, "changes", "show", change.id),
            lambda answer: "hadolint not found" in answer[1],
            "the change showing what it waits for",
        )
        assert code == 0 and "waiting since" in shown
        assert not [r for r in steps.reported(head(1)) if r[1] in ("failure", "error")]

        missing.clear()  # an operator installs hadolint on the worker: the change goes on
        passed = await until(
            lambda: change.query(Queries.STATUS, result_type=ChangeStatus),
            lambda seen: seen.state == "awaiting-merge" and seen.reason is None,
            "validated once the tool is there",
            within_s=120,
        )

    assert passed.gate is not None
    assert passed.gate.description == "waiting for the pull request to be merged"
    assert steps.reported(head(1))[-1] == ("baton/pr", "success", "5 step(s) passed")


@pytest.mark.parametrize(
    "command", [["changes", "ls"], ["changes", "show", "web/1"], ["metrics", "--env", "prod"]]
)
async def test_a_namespace_temporal_does_not_have_is_one_line_naming_the_variable(
    temporal_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    baton: Baton,
    command: list[str],
) -> None:
    target = temporal_env.client.service_client.config.target_host
    monkeypatch.setenv("TEMPORAL_ADDRESS", target)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "no-such-namespace")

    code, out, err = await run(baton, *command)

    assert (code, out) == (2, "")
    assert err.strip() == (
        f"error: Temporal at {target} has no namespace 'no-such-namespace': set "
        "TEMPORAL_NAMESPACE to one it has (`temporal operator namespace list`), or unset it for "
        "`default`"
    )
