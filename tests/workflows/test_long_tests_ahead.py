"""`ci.long_tests: pull_request`, the default for an app with long tests: the PR pipeline
starts CI's long tests on its head beside its checks (a `LongTests` workflow per tree) and tells
them the checks it passed; CI of a merge commit with that tree takes those checks, and waits
for that run and uses its result. Real Temporal server; the real `start_long_tests`,
`long_tests_result` and `pull_request_checks` activities (the tree of each commit scripted, in
place of git); the other steps are test_pipelines.py's stand-ins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus

import activities.pipeline
from activities.forge import CommitStatusInput
from activities.pipeline import long_tests_result, pull_request_checks, start_long_tests
from baton.config import AppConfig, CIConfig
from baton.models import ChangePlan, ChangeStatus, PipelineStatus
from baton.temporal import TaskQueues, WorkflowTypes, long_tests_id
from tests.conftest import at_gate, serving, until
from tests.workflows.test_change import change_activities, head, open_change, pull_request
from tests.workflows.test_patches import patch_markers
from tests.workflows.test_pipelines import CI_CHECKS, PR_CHECKS, Steps, start
from workflows import WORKFLOWS
from workflows.patches import BASELINE
from workflows.pipelines import LONG_TESTS_AHEAD_PATCH

APP = AppConfig(
    name="web",
    repo="acme/web",
    image="web",
    chart="chart",
    ci=CIConfig(long_tests="pull_request"),
    commands={"long_test": ["python3 -m unittest discover -s tests_long"]},
)
HEAD, MERGE, OTHER = "a" * 40, "b" * 40, "d" * 40  # the PR's head, its merge, a commit elsewhere
TREE = "7" * 40  # HEAD's and MERGE's tree: the merge changed nothing the PR had not
NEWER = "e" * 40  # a later head of the PR, with other files
TREES = {HEAD: TREE, MERGE: TREE, OTHER: "8" * 40, head(1): TREE, NEWER: "9" * 40}
RUN_ID = long_tests_id(APP.name, TREE, APP.commands.long_test)
STATUS = "baton/long-tests"  # the commit status of the long tests, on the head they test
TAKEN = f"long_test ok at {HEAD[:12]}; run beside its PR pipeline, same tree as {MERGE[:12]}"
"""The long tests' result as CI of the merge takes it from the run on the PR's head."""


AGAIN = "f" * 40  # a later head with HEAD's tree (a revert of a revert, say)
TREES[AGAIN] = TREE


class Trees:
    """What `activities.context.current()` gives the new activities: each commit's tree, and a
    forge keeping the commit statuses `start_long_tests` sets itself."""

    statuses: list[tuple[str, str, str, str]] = []  # (sha, context, state, description)

    def __init__(self) -> None:
        self.forge = self

    def tree(self, repo: str, commit: str) -> str:
        assert repo == APP.repo
        return TREES[commit]

    def set_commit_status(
        self, repo: str, sha: str, context: str, state: str, description: str, url: str | None
    ) -> None:
        self.statuses.append((sha, context, state, description))


@pytest.fixture
def steps() -> Steps:
    return Steps()


@pytest.fixture
def held() -> dict[tuple[str, str], asyncio.Event]:
    """Commit statuses, by (context, state), whose report waits until the test sets its event
    (a slow forge)."""
    return {}


@pytest.fixture
async def client(
    isolated_client: Client,
    steps: Steps,
    held: dict[tuple[str, str], asyncio.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Client]:
    monkeypatch.setattr(activities.pipeline, "current", Trees)
    monkeypatch.setattr(Trees, "statuses", [])
    stand_ins = change_activities(steps)  # the pipelines' and a change's
    stand_ins[TaskQueues.BUILD] += [start_long_tests, long_tests_result, pull_request_checks]
    queue = stand_ins[TaskQueues.WORKFLOWS]
    reported = next(a for a in queue if a.__name__ == "set_commit_status")

    @activity.defn(name="set_commit_status")
    async def set_commit_status(input: CommitStatusInput) -> None:
        if (release := held.get((input.context, input.state))) is not None:
            await release.wait()
        await reported(input)

    queue[queue.index(reported)] = set_commit_status
    async with serving(isolated_client, WORKFLOWS, stand_ins):
        yield isolated_client


async def long_tests_status(client: Client) -> WorkflowExecutionStatus | None:
    return (await client.get_workflow_handle(RUN_ID).describe()).status


async def test_the_pr_starts_the_long_tests_and_ci_of_its_merge_uses_their_result(
    client: Client, steps: Steps
) -> None:
    steps.after = {"long_test": "released"}  # the long tests outlast the PR pipeline
    pr = await start(client, WorkflowTypes.PR_PIPELINE, HEAD, APP)
    result = await pr.result()

    # The PR's verdict did not wait for them: they still run, on the PR's head.
    assert result.passed, result.summary()
    assert [c.name for c in result.checks] == [*PR_CHECKS, "image"]
    assert await long_tests_status(client) == WorkflowExecutionStatus.RUNNING
    assert steps.ran(HEAD).count("long_test") == 1
    status = await (await pr.describe()).memo_value("status", type_hint=PipelineStatus)
    started = next(s for s in status.timeline if s.name == "long_test ahead")
    assert (started.outcome, started.detail) == (
        "succeeded",
        f"started, for CI of the merge: {RUN_ID}",
    )

    # CI of the merge takes the PR's checks, and waits for the long tests rather than running
    # them again: it builds its own image (its commit's), candidates and rendered check.
    ci = await start(client, WorkflowTypes.CI_PIPELINE, MERGE, APP)
    await until(lambda: steps.ran(MERGE), lambda ran: "image" in ran, "CI's build started")
    steps.let_end("released")
    integrated = await ci.result()

    assert integrated.passed, integrated.summary()
    assert [c.name for c in integrated.checks][: len(CI_CHECKS)] == CI_CHECKS
    long_test = next(c for c in integrated.checks if c.name == "long_test")
    assert long_test.summary == TAKEN
    assert steps.ran(MERGE)[:3] == ["image", "candidate", "rendered"]
    assert sorted(steps.ran(MERGE)[3:]) == ["publish", "push"]
    assert steps.ran(HEAD).count("long_test") == 1
    lint = next(c for c in integrated.checks if c.name == "lint")
    assert (
        lint.summary == f"lint ok; passed on the PR's head {HEAD[:12]}, same tree as {MERGE[:12]}"
    )
    # The PR's head carries the long tests' own commit status.
    assert [(state, text) for c, state, text in steps.reported(HEAD) if c == STATUS] == [
        ("pending", "long tests running, for CI of the merge"),
        ("success", "long_test ok"),
    ]
    assert await long_tests_status(client) == WorkflowExecutionStatus.COMPLETED


async def test_an_app_with_long_tests_starts_them_ahead_unless_it_keeps_them_at_the_merge(
    client: Client, steps: Steps
) -> None:
    # No ci.long_tests: the default for an app with long tests is to start them ahead.
    default = APP.model_copy(update={"ci": CIConfig()})
    steps.after = {"long_test": "released"}
    pr = await start(client, WorkflowTypes.PR_PIPELINE, HEAD, default)
    assert (await pr.result()).passed
    assert await long_tests_status(client) == WorkflowExecutionStatus.RUNNING
    # New runs take the default through a patch of its own: runs recorded before it lack the
    # marker, so they replay with the long tests in CI (tests/workflows/test_replay.py).
    assert LONG_TESTS_AHEAD_PATCH in patch_markers(await pr.fetch_history())
    ci = await start(client, WorkflowTypes.CI_PIPELINE, MERGE, default)
    await until(lambda: steps.ran(MERGE), lambda ran: "image" in ran, "CI's build started")
    steps.let_end("released")
    integrated = await ci.result()
    assert next(c for c in integrated.checks if c.name == "long_test").summary == TAKEN

    # `ci.long_tests: merge`: the PR pipeline starts none, and CI of the merge runs them.
    at_merge = APP.model_copy(update={"ci": CIConfig(long_tests="merge")})
    pr = await start(client, WorkflowTypes.PR_PIPELINE, NEWER, at_merge)
    assert (await pr.result()).passed
    assert "long_test" not in steps.ran(NEWER)
    assert patch_markers(await pr.fetch_history()) == [BASELINE]
    ci = await start(client, WorkflowTypes.CI_PIPELINE, OTHER, at_merge)
    result = await ci.result()
    assert next(c for c in result.checks if c.name == "long_test").summary == "long_test ok"
    assert "long_test" in steps.ran(OTHER)


async def test_the_pr_pipelines_unit_tests_keep_their_priority_beside_the_long_tests(
    client: Client, steps: Steps
) -> None:
    # The PR pipeline is the short one, for fast iteration: its unit tests run at the worker's
    # priority, as the long tests do, and its other checks lower.
    assert (await (await start(client, WorkflowTypes.PR_PIPELINE, HEAD, APP)).result()).passed
    await until(lambda: steps.ran(HEAD), lambda ran: "long_test" in ran, "long tests started")

    assert steps.niceness == {"long_test": 0, "test": 0} | dict.fromkeys(
        ["lint", "dockerfile", "templates"], 10
    )


async def test_ci_of_the_merge_takes_the_long_tests_result_before_their_status_is_reported(
    client: Client, steps: Steps, held: dict[tuple[str, str], asyncio.Event]
) -> None:
    held[(STATUS, "success")] = asyncio.Event()  # the forge is slow to take their verdict
    assert (await (await start(client, WorkflowTypes.PR_PIPELINE, HEAD, APP)).result()).passed

    ci = await start(client, WorkflowTypes.CI_PIPELINE, MERGE, APP)
    integrated = await asyncio.wait_for(ci.result(), timeout=60)  # not after the status

    assert integrated.passed, integrated.summary()
    long_test = next(c for c in integrated.checks if c.name == "long_test")
    assert long_test.summary == TAKEN
    assert steps.ran(MERGE).count("long_test") == 0
    # The run still tells the PR's head, then completes.
    assert await long_tests_status(client) == WorkflowExecutionStatus.RUNNING
    held[(STATUS, "success")].set()
    await until(
        lambda: long_tests_status(client),
        lambda status: status == WorkflowExecutionStatus.COMPLETED,
        "the long tests completed",
    )
    assert [(state, text) for c, state, text in steps.reported(HEAD) if c == STATUS][-1] == (
        "success",
        "long_test ok",
    )


async def test_ci_of_the_merge_takes_the_result_of_long_tests_that_had_completed(
    client: Client, steps: Steps
) -> None:
    assert (await (await start(client, WorkflowTypes.PR_PIPELINE, HEAD, APP)).result()).passed
    await until(
        lambda: long_tests_status(client),
        lambda status: status == WorkflowExecutionStatus.COMPLETED,
        "the long tests passed",
    )

    integrated = await (await start(client, WorkflowTypes.CI_PIPELINE, MERGE, APP)).result()

    assert integrated.passed, integrated.summary()
    long_test = next(c for c in integrated.checks if c.name == "long_test")
    assert long_test.summary == TAKEN
    assert steps.ran(MERGE).count("long_test") == 0


async def test_a_failing_pr_pipeline_cancels_its_long_tests(client: Client, steps: Steps) -> None:
    steps.failing = {"lint": "ruff: app.py:1:1: F401"}
    steps.holding = {"long_test"}
    result = await (await start(client, WorkflowTypes.PR_PIPELINE, HEAD, APP)).result()

    assert not result.passed
    await until(lambda: steps.cancelled, lambda cancelled: "long_test" in cancelled, "cancelled")
    assert await long_tests_status(client) == WorkflowExecutionStatus.CANCELED
    cancelled = "cancelled: a newer head, or the PR pipeline failed or was closed"
    assert [s for s in steps.reported(HEAD) if s[0] == STATUS][-1] == (STATUS, "error", cancelled)


async def test_a_superseded_pr_pipeline_cancels_its_long_tests(
    client: Client, steps: Steps
) -> None:
    steps.holding = {"long_test", "test"}
    pr = await start(client, WorkflowTypes.PR_PIPELINE, HEAD, APP)
    await until(lambda: steps.ran(HEAD), lambda ran: "long_test" in ran, "long tests started")
    await pr.cancel()  # a newer head superseded this one

    await until(lambda: steps.cancelled, lambda cancelled: "long_test" in cancelled, "cancelled")
    await until(
        lambda: long_tests_status(client),
        lambda status: status == WorkflowExecutionStatus.CANCELED,
        "the long tests cancelled",
    )


async def test_ci_runs_the_long_tests_itself_when_none_ran_on_its_tree(
    client: Client, steps: Steps
) -> None:
    result = await (await start(client, WorkflowTypes.CI_PIPELINE, OTHER, APP)).result()

    assert result.passed, result.summary()
    assert next(c for c in result.checks if c.name == "long_test").summary == "long_test ok"
    assert sorted(s for s in steps.ran(OTHER) if s in CI_CHECKS) == sorted(CI_CHECKS)


async def test_long_tests_that_failed_ahead_are_run_again_by_ci_and_by_the_next_head(
    client: Client, steps: Steps
) -> None:
    steps.failing = {"long_test": "1 failed: test_sigterm"}
    await (await start(client, WorkflowTypes.PR_PIPELINE, HEAD, APP)).result()
    await until(
        lambda: long_tests_status(client),
        lambda status: status == WorkflowExecutionStatus.FAILED,
        "the long tests failed",
    )

    # Fixed elsewhere (a flaky dependency): CI runs them itself, on the merge.
    steps.failing = {}
    result = await (await start(client, WorkflowTypes.CI_PIPELINE, MERGE, APP)).result()
    assert result.passed, result.summary()
    assert steps.ran(MERGE).count("long_test") == 1

    # A PR head with that tree starts them again: a failed run does not count.
    await (await start(client, WorkflowTypes.PR_PIPELINE, HEAD, APP)).result()
    await until(
        lambda: long_tests_status(client),
        lambda status: status == WorkflowExecutionStatus.COMPLETED,
        "the long tests ran again and passed",
    )
    assert steps.ran(HEAD).count("long_test") == 2


async def test_a_newer_head_cancels_the_long_tests_of_a_validated_one(
    client: Client, steps: Steps
) -> None:
    steps.holding = {"long_test"}  # long tests outlast the PR's checks, as they do
    change = await open_change(client, 1, plan=ChangePlan(app=APP, environments=[]))
    await at_gate(change, "merge", ChangeStatus)
    assert await long_tests_status(client) == WorkflowExecutionStatus.RUNNING

    await pull_request(change, "synchronize", head_sha=NEWER)

    await until(
        lambda: long_tests_status(client),
        lambda status: status == WorkflowExecutionStatus.CANCELED,
        "the first head's long tests cancelled",
    )
    status = await at_gate(change, "merge", ChangeStatus)
    assert status.head_sha == NEWER
    note = f"cancelled the long tests of {head(1)[:12]}: new head"
    assert ("note", note) in [(stage.name, stage.detail) for stage in status.timeline]
    # The newer head has long tests of its own, still running.
    newer = client.get_workflow_handle(
        long_tests_id(APP.name, TREES[NEWER], APP.commands.long_test)
    )
    assert (await newer.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_a_head_with_a_tree_whose_long_tests_passed_is_green_at_once(
    client: Client, steps: Steps
) -> None:
    await (await start(client, WorkflowTypes.PR_PIPELINE, HEAD, APP)).result()
    await until(
        lambda: long_tests_status(client),
        lambda status: status == WorkflowExecutionStatus.COMPLETED,
        "the long tests passed",
    )

    result = await (await start(client, WorkflowTypes.PR_PIPELINE, AGAIN, APP)).result()

    assert result.passed and result.long_tests == RUN_ID
    assert steps.ran(AGAIN).count("long_test") == 0  # not run again
    assert Trees.statuses == [
        (AGAIN, STATUS, "success", f"long_test ok at {HEAD[:12]}, the same tree")
    ]


async def test_a_newer_head_notes_no_cancel_when_the_long_tests_had_ended(
    client: Client, steps: Steps
) -> None:
    change = await open_change(client, 1, plan=ChangePlan(app=APP, environments=[]))
    await at_gate(change, "merge", ChangeStatus)
    await until(
        lambda: long_tests_status(client),
        lambda status: status == WorkflowExecutionStatus.COMPLETED,
        "the long tests passed",
    )

    await pull_request(change, "synchronize", head_sha=NEWER)

    status = await at_gate(change, "merge", ChangeStatus)
    assert status.head_sha == NEWER
    assert [stage.name for stage in status.timeline] == [
        f"validate {head(1)[:12]}",
        f"validate {NEWER[:12]}",
    ]
    assert await long_tests_status(client) == WorkflowExecutionStatus.COMPLETED
