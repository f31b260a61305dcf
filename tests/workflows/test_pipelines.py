"""PullRequestPipeline and CIPipeline on a real Temporal server, with their steps replaced.

`Steps` stands in for the pipeline activities by name (`run_check`, `build_image`, `try_image`,
`push_image`, `stage_candidate`, `publish_artifact`, `set_commit_status`): it scripts what each step reports and records what the
pipeline asked for, so the order of steps, the commit statuses and the handling of failures and
cancellation are tested without a container engine. test_change.py runs ChangeWorkflow on them too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from activities.forge import (
    AuthorsInput,
    ChangeCommentInput,
    CommitStatusInput,
    DeploymentInput,
)
from activities.pipeline import BuildInput, CheckInput, ImageInput, PublishInput
from baton.config import AppConfig, HttpProbe, ImageTest
from baton.models import Artifact, CheckResult, PipelineInput, PipelineResult, PipelineStatus
from baton.temporal import TaskQueues, WorkflowTypes
from tests.conftest import serving, until
from tests.fakes.records import fake_artifact
from workflows import WORKFLOWS

APP = AppConfig(name="web", repo="acme/web", image="web", chart="chart")
SHA = "c" * 40
PR_CHECKS = ["lint", "test", "dockerfile", "templates"]
TEST_LOG = "sha256:" + "e" * 64  # where the stand-in image test kept its output
CI_CHECKS = ["lint", "test", "long_test", "dockerfile", "templates"]


@dataclass
class Steps:
    """What the stand-in pipeline activities report, and what they were asked to do."""

    failing: dict[str, str] = field(default_factory=dict)  # step -> the tool's one-line finding
    broken: dict[str, str] = field(default_factory=dict)  # step -> a non-retryable error it raises
    held: set[str] = field(default_factory=set)  # commits whose steps wait until cancelled
    holding: set[str] = field(default_factory=set)  # steps that run until cancelled
    together: set[str] = field(default_factory=set)  # checks (and build) that finish once all run
    after: dict[str, str] = field(default_factory=dict)  # step -> the step it ends after
    after_start: dict[str, str] = field(default_factory=dict)  # step -> the step it ends once
    # started (the workflow has seen every step before that one end)
    started: list[tuple[str, str]] = field(default_factory=list)  # (step, commit), in order
    attempts: Counter[str] = field(default_factory=Counter)  # step -> attempts
    pushes: list[bool] = field(default_factory=list)  # `push` of each build
    niceness: dict[str, int] = field(default_factory=dict)  # check kind -> its input's niceness
    tested_in_build: list[bool] = field(default_factory=list)  # `run_image_test` of each build
    cancelled: list[str] = field(default_factory=list)  # steps whose activity was cancelled
    statuses: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(context, commit, state, description) of each commit status reported."""
    comments: int = 0  # writes of the change's PR comment
    _all_running: asyncio.Event = field(default_factory=asyncio.Event)
    _ended: dict[str, asyncio.Event] = field(default_factory=dict)
    _started: dict[str, asyncio.Event] = field(default_factory=dict)

    def activities(self) -> dict[str, list]:
        """The stand-ins, by task queue as `activities.ACTIVITIES` maps the real ones."""

        @activity.defn(name="run_check")
        async def run_check(input: CheckInput) -> CheckResult:
            self.niceness[input.kind] = input.niceness
            return await self._run(input.kind, input.commit)

        @activity.defn(name="build_image")
        async def build_image(input: BuildInput) -> CheckResult:
            self.pushes.append(input.push)
            self.tested_in_build.append(input.run_image_test)
            return await self._run("image", input.commit)

        @activity.defn(name="try_image")
        async def try_image(input: ImageInput) -> CheckResult:
            result = await self._run("image_test", input.commit)
            return result.model_copy(update={"log_ref": TEST_LOG})

        @activity.defn(name="push_image")
        async def push_image(input: ImageInput) -> CheckResult:
            return await self._run("push", input.commit)

        @activity.defn(name="stage_candidate")
        async def stage_candidate(input: ImageInput) -> CheckResult:
            return await self._run("candidate", input.commit)

        @activity.defn(name="publish_artifact")
        async def publish_artifact(input: PublishInput) -> Artifact:
            self._start("publish", input.commit)
            self._result("publish")
            return artifact(input.commit)

        @activity.defn(name="set_commit_status")
        async def set_commit_status(input: CommitStatusInput) -> None:
            self.statuses.append((input.context, input.sha, input.state, input.description))

        # What a change tells on the forge (the API plans it for every change): the real ones
        # are tried in test_change_comment.py.
        @activity.defn(name="update_change_comment")
        async def update_change_comment(input: ChangeCommentInput) -> None:
            self.comments += 1

        @activity.defn(name="change_authors")
        async def change_authors(input: AuthorsInput) -> list[str]:
            return [input.author]

        @activity.defn(name="report_deployment")
        async def report_deployment(input: DeploymentInput) -> None:
            pass

        return {
            TaskQueues.BUILD: [
                run_check,
                build_image,
                try_image,
                push_image,
                stage_candidate,
                publish_artifact,
            ],
            TaskQueues.WORKFLOWS: [
                set_commit_status,
                update_change_comment,
                change_authors,
                report_deployment,
            ],
        }

    def ran(self, commit: str) -> list[str]:
        """The steps started for `commit`, in order."""
        return [step for step, sha in self.started if sha == commit]

    def let_end(self, name: str) -> None:
        """End the steps waiting (`after`) for `name`, one the test ends when it chooses."""
        self._ended_event(name).set()

    def reported(self, commit: str) -> list[tuple[str, str, str]]:
        """The commit statuses reported on `commit`: (context, state, description)."""
        return [(c, state, text) for c, sha, state, text in self.statuses if sha == commit]

    def _start(self, step: str, commit: str) -> None:
        self.started.append((step, commit))
        self.attempts[step] += 1
        self._started_event(step).set()

    async def _run(self, step: str, commit: str) -> CheckResult:
        """A step as the scenario has it: held until cancelled, meeting the others, ending after
        another step ended, or at once."""
        self._start(step, commit)
        try:
            if commit in self.held and step in ("image", *CI_CHECKS) or step in self.holding:
                await self._hold()
            if step in self.after_start:
                await self._started_event(self.after_start[step]).wait()
            if step in self.after:
                try:
                    await asyncio.wait_for(self._ended_event(self.after[step]).wait(), 30)
                except TimeoutError:
                    return self._result(step).model_copy(
                        update={"passed": False, "summary": f"{self.after[step]} never ended"}
                    )
            if step in self.together:
                return await self._meet(step)
            return self._result(step)
        except asyncio.CancelledError:
            self.cancelled.append(step)
            raise
        finally:
            self._ended_event(step).set()

    def _ended_event(self, step: str) -> asyncio.Event:
        return self._ended.setdefault(step, asyncio.Event())

    def _started_event(self, step: str) -> asyncio.Event:
        return self._started.setdefault(step, asyncio.Event())

    def _result(self, step: str) -> CheckResult:
        if step in self.broken:
            raise ApplicationError(self.broken[step], type="StandInError", non_retryable=True)
        finding = self.failing.get(step)
        return CheckResult(
            name=step,
            passed=finding is None,
            exit_code=0 if finding is None else 1,
            duration_s=0.1,
            summary=finding or f"{step} ok",
            excerpt="",
        )

    async def _hold(self) -> None:
        """Run until cancelled, heartbeating like a long check so the cancel reaches it."""
        while True:
            activity.heartbeat()
            await asyncio.sleep(1)

    async def _meet(self, step: str) -> CheckResult:
        """Finish only once every check in `together` runs at the same time."""
        if {s for s, _ in self.started} >= self.together:
            self._all_running.set()
        try:
            await asyncio.wait_for(self._all_running.wait(), timeout=30)
        except TimeoutError:
            running = sorted({s for s, _ in self.started})
            return self._result(step).model_copy(
                update={"passed": False, "summary": f"ran alone: only {running} ever started"}
            )
        return self._result(step)


def artifact(commit: str) -> Artifact:
    """What publishing `commit` of the app returns."""
    published_at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    return fake_artifact(APP.name, commit, registry="registry.local", created_at=published_at)


@pytest.fixture
def steps() -> Steps:
    return Steps()


@pytest.fixture
async def client(isolated_client: Client, steps: Steps) -> AsyncIterator[Client]:
    async with serving(isolated_client, WORKFLOWS, steps.activities()):
        yield isolated_client


async def start(
    client: Client, workflow_type: str, commit: str = SHA, app: AppConfig = APP
) -> WorkflowHandle:
    return await client.start_workflow(
        workflow_type,
        PipelineInput(app=app, repo=app.repo, commit=commit, pr_number=1),
        id=f"pipeline/{uuid.uuid4()}",
        task_queue=TaskQueues.WORKFLOWS,
        result_type=PipelineResult,
    )


async def test_pr_checks_run_in_parallel_and_the_image_is_built_beside_them_without_push(
    client: Client, steps: Steps
) -> None:
    # No check ends before the build started, nor the build before every check started.
    steps.together = {*PR_CHECKS, "image"}
    handle = await start(client, WorkflowTypes.PR_PIPELINE)
    result = await handle.result()

    assert result.passed, result.summary()
    assert [c.name for c in result.checks] == [*PR_CHECKS, "image"]
    assert sorted(steps.ran(SHA)) == sorted([*PR_CHECKS, "image"])
    assert steps.pushes == [False] and result.artifact is None
    status = await (await handle.describe()).memo_value("status", type_hint=PipelineStatus)
    assert [(s.name, s.outcome) for s in status.timeline] == [
        (name, "succeeded") for name in [*PR_CHECKS, "image"]
    ]
    assert steps.reported(SHA) == [
        ("baton/pr", "pending", "PR pipeline running"),
        ("baton/pr", "success", "5 step(s) passed"),
    ]


async def test_a_failing_check_cancels_the_build_and_fails_with_the_tools_summary(
    client: Client, steps: Steps
) -> None:
    steps.failing = {"lint": "ruff: app.py:3:1: F401 `os` imported but unused"}
    steps.holding = {"image"}  # a build that outlasts the checks
    handle = await start(client, WorkflowTypes.PR_PIPELINE)
    result = await handle.result()

    assert not result.passed
    assert result.summary() == "lint: ruff: app.py:3:1: F401 `os` imported but unused"
    assert [c.name for c in result.checks] == PR_CHECKS
    await until(lambda: steps.cancelled, lambda cancelled: cancelled == ["image"], "cancelled")
    status = await (await handle.describe()).memo_value("status", type_hint=PipelineStatus)
    assert {s.name: s.outcome for s in status.timeline}["image"] == "cancelled"
    assert steps.reported(SHA) == [
        ("baton/pr", "pending", "PR pipeline running"),
        ("baton/pr", "failure", result.summary()),
    ]


async def test_a_build_that_ends_before_a_check_fails_is_kept_in_the_results(
    client: Client, steps: Steps
) -> None:
    steps.failing = {"test": "1 failed: test_version", "image": "COPY failed: app.py not found"}
    steps.after = {"test": "image"}
    result = await (await start(client, WorkflowTypes.PR_PIPELINE)).result()

    assert [c.name for c in result.checks] == [*PR_CHECKS, "image"]
    assert result.summary() == "test: 1 failed: test_version; image: COPY failed: app.py not found"
    assert steps.reported(SHA)[-1] == ("baton/pr", "failure", result.summary())


async def test_ci_builds_pushes_checks_the_rendered_manifests_and_publishes_the_artifact(
    client: Client, steps: Steps
) -> None:
    result = await (await start(client, WorkflowTypes.CI_PIPELINE)).result()

    assert result.passed, result.summary()
    assert [c.name for c in result.checks] == [
        *CI_CHECKS,
        *("image", "candidate", "rendered", "push"),
    ]
    ran = steps.ran(SHA)
    # Beside the checks: the build, the candidates staged, the rendered check on their digest.
    assert [s for s in ran if s in ("image", "candidate", "rendered")] == [
        "image",
        "candidate",
        "rendered",
    ]
    # After every check: the copies into the repositories CD reads, side by side.
    assert sorted(ran[-2:]) == ["publish", "push"]
    assert steps.pushes == [False]  # the build only builds; the push is a step of its own
    assert result.artifact == artifact(SHA)
    assert steps.reported(SHA) == [
        ("baton/ci", "pending", "CI pipeline running"),
        ("baton/ci", "success", "9 step(s) passed"),
    ]
    # The long tests, CI's critical path, keep the worker's CPU priority; the rest run lower.
    assert steps.niceness == {"long_test": 0, "rendered": 0} | dict.fromkeys(
        ["lint", "test", "dockerfile", "templates"], 10
    )


async def test_the_pr_pipelines_unit_tests_keep_the_workers_cpu_priority(
    client: Client, steps: Steps
) -> None:
    assert (await (await start(client, WorkflowTypes.PR_PIPELINE)).result()).passed

    assert steps.niceness == {"test": 0} | dict.fromkeys(["lint", "dockerfile", "templates"], 10)


TESTED = APP.model_copy(
    update={"image_test": ImageTest(http=HttpProbe(port=8080, path="/healthz"), timeout_s=30)}
)


@pytest.mark.parametrize(
    ("workflow_type", "kinds", "after"),
    [
        (WorkflowTypes.PR_PIPELINE, PR_CHECKS, ["image", "image_test"]),
        (
            WorkflowTypes.CI_PIPELINE,
            CI_CHECKS,
            ["image", "image_test", "candidate", "rendered", "push", "publish"],
        ),
    ],
    ids=["pr", "ci"],
)
async def test_the_image_test_is_a_step_of_its_own_after_the_build_and_before_the_push(
    client: Client, steps: Steps, workflow_type: str, kinds: list[str], after: list[str]
) -> None:
    handle = await start(client, workflow_type, app=TESTED)
    result = await handle.result()

    assert result.passed, result.summary()
    ran = [step for step in steps.ran(SHA) if step in after]
    if workflow_type == WorkflowTypes.CI_PIPELINE:  # push and publish, last, side by side
        ran[-2:] = sorted(ran[-2:], key=after.index)
    assert ran == after
    assert [c.name for c in result.checks][len(kinds) :] == [s for s in after if s != "publish"]
    assert steps.tested_in_build == [False]
    status = await (await handle.describe()).memo_value("status", type_hint=PipelineStatus)
    shown = {s.name: (s.outcome, s.detail, s.links.get("logs")) for s in status.timeline}
    assert shown["image_test"] == ("succeeded", "image_test ok", TEST_LOG)
    # Publishing is no step of the pipeline's timeline; every other one is, in order.
    assert [name for name in shown if name in after] == [n for n in after if n != "publish"]


async def test_an_image_that_fails_its_test_fails_ci_and_is_never_pushed(
    client: Client, steps: Steps
) -> None:
    seen = "image test failed: GET http://127.0.0.1:8080/healthz did not answer 200 within 30s"
    steps.failing = {"image_test": seen}
    # The checks all pass, after the image test failed: still no push, render or publication.
    steps.after = {kind: "image_test" for kind in CI_CHECKS}
    result = await (await start(client, WorkflowTypes.CI_PIPELINE, app=TESTED)).result()

    assert not result.passed and result.artifact is None
    assert result.summary() == f"image_test: {seen}"
    assert [c.name for c in result.checks] == [*CI_CHECKS, "image", "image_test"]
    assert sorted(steps.ran(SHA)) == sorted([*CI_CHECKS, "image", "image_test"])
    assert steps.reported(SHA)[-1] == ("baton/ci", "failure", result.summary())


async def test_a_failing_ci_check_pushes_and_publishes_nothing(
    client: Client, steps: Steps
) -> None:
    steps.failing = {"long_test": "2 failed, 118 passed: test_checkout_total"}
    # The image is built, passes its test and is staged, and the rendered check has started
    # (so the pipeline has seen the candidate staged), when the long tests fail: the rendered
    # check is cancelled, and the candidates are never copied where CD reads.
    steps.holding = {"rendered"}
    steps.after_start = {"long_test": "rendered"}
    result = await (await start(client, WorkflowTypes.CI_PIPELINE, app=TESTED)).result()

    assert result.summary() == "long_test: 2 failed, 118 passed: test_checkout_total"
    staged = ["image", "image_test", "candidate"]
    assert [c.name for c in result.checks] == [*CI_CHECKS, *staged]
    assert result.artifact is None
    assert sorted(steps.ran(SHA)) == sorted([*CI_CHECKS, *staged, "rendered"])
    await until(lambda: steps.cancelled, lambda done: done == ["rendered"], "cancelled")
    assert steps.reported(SHA)[-1] == ("baton/ci", "failure", result.summary())


async def test_a_cancelled_pipeline_reports_superseded_by_a_newer_commit(
    client: Client, steps: Steps
) -> None:
    steps.held = {SHA}
    handle = await start(client, WorkflowTypes.PR_PIPELINE)
    running = sorted([*PR_CHECKS, "image"])
    await until(lambda: sorted(steps.ran(SHA)), lambda ran: ran == running, "running its steps")

    await handle.cancel()

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    assert steps.reported(SHA) == [
        ("baton/pr", "pending", "PR pipeline running"),
        ("baton/pr", "error", "superseded by a newer commit"),
    ]
    # Every step in flight, the checks and the build beside them, was cancelled.
    await until(lambda: sorted(steps.cancelled), lambda done: done == running, "cancelled")
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.CANCELED
    status = await described.memo_value("status", type_hint=PipelineStatus)
    assert {s.name: s.outcome for s in status.timeline} == dict.fromkeys(running, "cancelled")


async def test_a_ci_pipeline_cancelled_after_its_image_is_built_pushes_nothing(
    client: Client, steps: Steps
) -> None:
    steps.holding = {"long_test"}
    handle = await start(client, WorkflowTypes.CI_PIPELINE, app=TESTED)
    await until(lambda: steps.ran(SHA), lambda ran: "image_test" in ran, "testing the image")

    await handle.cancel()

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    await until(lambda: steps.cancelled, lambda done: done == ["long_test"], "cancelled")
    assert not {"push", "publish"} & set(steps.ran(SHA))
    assert steps.reported(SHA) == [
        ("baton/ci", "pending", "CI pipeline running"),
        ("baton/ci", "error", "superseded by a newer commit"),
    ]


@pytest.mark.parametrize(
    ("workflow_type", "step", "error"),
    [
        (WorkflowTypes.PR_PIPELINE, "dockerfile", "no Dockerfile at docker/Dockerfile"),
        (WorkflowTypes.CI_PIPELINE, "rendered", "web:cccc is not in the registry: push it first"),
        (WorkflowTypes.CI_PIPELINE, "publish", "publishing Kustomize apps is not supported yet"),
        # Published beside the push, the artifact is not the pipeline's when the push failed.
        (WorkflowTypes.CI_PIPELINE, "push", "denied: requested access to the resource is denied"),
    ],
    ids=["pr-check", "ci-rendered-check", "ci-publish", "ci-push"],
)
async def test_a_non_retryable_error_is_a_failed_step_not_a_retry_loop(
    client: Client, steps: Steps, workflow_type: str, step: str, error: str
) -> None:
    steps.broken = {step: error}
    result = await (await start(client, workflow_type)).result()

    assert not result.passed and result.artifact is None
    assert result.summary() == f"{step}: error: {error}"
    assert steps.attempts[step] == 1
    assert steps.reported(SHA)[-1][1:] == ("failure", result.summary())
