"""PullRequestPipeline and CIPipeline: the checks that gate a merge and the integration of the merge commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.forge import CommitStatusInput, set_commit_status
    from activities.lane import is_running
    from activities.pipeline import (
        BuildInput,
        CheckInput,
        CheckKind,
        ImageInput,
        LongTestsInput,
        PublishInput,
        build_image,
        long_tests_result,
        publish_artifact,
        pull_request_checks,
        push_image,
        run_check,
        stage_candidate,
        start_long_tests,
        try_image,
    )
    from baton.batches import CI_CONTEXT, LONG_TESTS_CONTEXT
    from baton.forges.base import StatusState
    from baton.models import (
        Artifact,
        CheckResult,
        PipelineInput,
        PipelineResult,
        PipelineStatus,
        TreeChecks,
    )
    from baton.temporal import Queries, Signals, TaskQueues, Updates, WorkflowTypes

from workflows.patches import patched
from workflows.record import Record, failure
from workflows.retries import AHEAD, HEARTBEAT, STATUS_RETRY, outage_wait

# Patch: the image test and the push are steps of their own after the build (image_test, push).
IMAGE_STEPS_PATCH = "image-test-step"
# Patch: the build and the image test run beside the checks, and the pending commit status is
# reported meanwhile (issue 18: the pipeline's critical path is its longest check).
BESIDE_CHECKS_PATCH = "image-beside-checks"
# Patch: CI stages its image, chart or bundle as candidates and runs the rendered check beside
# the checks; after them only copies in the registry are left (issue 18: PR+CI wall time).
CANDIDATES_PATCH = "candidates-beside-checks"
# Patch: CI publishes the artifact (a copy of the staged chart or bundle) beside the push, not
# after it (issue 18: the tail after CI's last check).
PUBLISH_BESIDE_PUSH_PATCH = "publish-beside-push"
# Patch: an app with long tests and no `ci.long_tests` starts them ahead, beside each PR
# pipeline (`AppConfig.long_tests_ahead`); runs recorded before kept them in CI (issue 18: PR+CI
# wall time). Not in workflows.patches.COVERED: runs that recorded its baseline did not take it.
LONG_TESTS_AHEAD_PATCH = "long-tests-ahead-by-default"
LOWER_PRIORITY = 10
T = TypeVar("T")  # niceness of the checks other than the pipeline's longest (`_longest`)


def _failure(name: str, err: ActivityError) -> CheckResult:
    """A step that could not run at all is a failed step too: an infrastructure error when a
    retry might have helped (a tool missing on the worker, say), else a configuration one."""
    cause = err.cause
    return CheckResult(
        error=not (isinstance(cause, ApplicationError) and cause.non_retryable),
        name=name,
        passed=False,
        exit_code=None,
        duration_s=0,
        summary=f"error: {failure(err)}",
        excerpt="",
    )


async def _step(record: Record, name: str, call: Awaitable[CheckResult]) -> CheckResult:
    """Run one step of the pipeline as a stage of its record, linked to the step's full output
    (`links["logs"]`, a LogStore reference) when it kept one."""
    stage = record.begin(name)
    try:
        result = await call
    except ActivityError as err:
        if isinstance(err.cause, CancelledError):
            record.end(stage, "cancelled")
            raise asyncio.CancelledError from err
        result = _failure(name, err)
    if result.log_ref:
        stage.links["logs"] = result.log_ref
    record.end(stage, "succeeded" if result.passed else "failed", result.summary)
    return result


async def _run_checks(
    input: PipelineInput,
    kinds: list[CheckKind],
    record: Record,
    niceness: int = 0,
    longest: CheckKind | None = None,
    ahead: bool = False,
    reused: dict[str, CheckResult] | None = None,
) -> list[CheckResult]:
    """Run the given checks of the app in parallel; each activity is named after its step.
    With a `niceness`, the checks but the `longest` run at that lower CPU priority. With
    `ahead` (CI, `AppConfig.long_tests_ahead`), the long tests are those a PR pipeline started
    for the commit's tree, when they passed (`_long_tests`), and the checks in `reused` (by
    kind) are those the PR pipeline passed on that tree (`_pull_request_checks`)."""
    reused = reused or {}
    return list(
        await asyncio.gather(
            *(
                _step(
                    record,
                    kind,
                    _taken(reused[kind])
                    if kind in reused
                    else _long_tests(input)
                    if ahead and kind == "long_test"
                    else _check(input, kind, 0 if kind == longest else niceness),
                )
                for kind in kinds
            )
        )
    )


async def _taken(result: CheckResult) -> CheckResult:
    return result


def _check(input: PipelineInput, kind: CheckKind, niceness: int) -> Awaitable[CheckResult]:
    return workflow.execute_activity(
        run_check,
        CheckInput(
            app=input.app, repo=input.repo, commit=input.commit, kind=kind, niceness=niceness
        ),
        task_queue=TaskQueues.BUILD,
        heartbeat_timeout=HEARTBEAT,
        **outage_wait(input.outage_wait_s, _check_timeout(input)),
        summary=f"{kind} @ {input.commit[:12]}",
    )


def _check_timeout(input: PipelineInput) -> timedelta:
    return timedelta(seconds=input.app.check_timeout_s + 60)


async def _long_tests(input: PipelineInput) -> CheckResult:
    """CI's long tests: the result of the `LongTests` run a PR pipeline started for a commit
    with this commit's tree, waited for while it runs (the same files, tested once); when there
    is none, or it did not pass, or reading it failed, CI runs them itself."""
    ahead = await _read_ahead(
        long_tests_result, input, _check_timeout(input), f"long tests ahead of {input.commit[:12]}?"
    )
    if ahead is None:
        return await _check(input, "long_test", 0)
    summary = f"{ahead.summary}; run beside its PR pipeline, same tree as {input.commit[:12]}"
    return ahead.model_copy(update={"summary": summary})


async def _pull_request_checks(input: PipelineInput) -> dict[str, CheckResult]:
    """The checks a PR pipeline passed on a commit with this commit's tree (`TreeChecks`), by
    kind, each saying where it ran; none when no PR pipeline did or reading them failed."""
    summary = f"PR checks on the tree of {input.commit[:12]}?"
    tested = await _read_ahead(pull_request_checks, input, timedelta(minutes=2), summary)
    if tested is None:
        return {}
    where = f"passed on the PR's head {tested.commit[:12]}, same tree as {input.commit[:12]}"
    return {
        kind: result.model_copy(update={"summary": f"{result.summary}; {where}"})
        for kind, result in tested.checks.items()
        if result.passed
    }


async def _read_ahead(
    activity: Callable[[LongTestsInput], Awaitable[T]],
    input: PipelineInput,
    timeout: timedelta,
    summary: str,
) -> T | None:
    """What `activity` reads of the run ahead for the commit's tree; None when it failed, and
    CI runs what it would have taken (a cancel is raised, as any step's)."""
    try:
        return await _ahead(activity, input, timeout, summary)
    except ActivityError as err:
        if isinstance(err.cause, CancelledError):
            raise
        return None


async def _ahead(
    activity: Callable[[LongTestsInput], Awaitable[T]],
    input: PipelineInput,
    timeout: timedelta,
    summary: str,
) -> T:
    """Run `activity`, one of those about the long tests of the commit's tree (`AHEAD` retries)."""
    return await workflow.execute_activity(
        activity,
        LongTestsInput(app=input.app, repo=input.repo, commit=input.commit),
        task_queue=TaskQueues.BUILD,
        heartbeat_timeout=HEARTBEAT,
        start_to_close_timeout=timeout,
        retry_policy=AHEAD,
        summary=summary,
    )


async def _start_long_tests(input: PipelineInput, record: Record) -> str | None:
    """Start CI's long tests on the PR's head beside its pipeline (`ci.long_tests:
    pull_request`), a step of the PR's timeline; the `LongTests` workflow's id, None when they
    could not be started (CI runs them then)."""
    stage = record.begin("long_test ahead")
    try:
        summary = f"start long tests @ {input.commit[:12]}"
        workflow_id = await _ahead(start_long_tests, input, timedelta(minutes=5), summary)
    except ActivityError as err:
        if isinstance(err.cause, CancelledError):
            record.end(stage, "cancelled")
            return None
        record.end(stage, "skipped", f"not started ahead ({failure(err)}): CI runs them")
        return None
    record.end(stage, "succeeded", f"started, for CI of the merge: {workflow_id}")
    return workflow_id


async def _tell_long_tests(
    started: asyncio.Task[str | None],
    input: PipelineInput,
    kinds: list[CheckKind],
    checks: list[CheckResult],
) -> None:
    """Tell the long tests `_start_long_tests` started which checks the PR pipeline passed
    (`kinds`, the first of `checks`), for CI of a merge with the tree. Long tests that ended
    already miss them, and CI runs those checks itself."""
    workflow_id = await started
    if workflow_id is None:
        return
    tested = TreeChecks(commit=input.commit, checks=dict(zip(kinds, checks, strict=False)))
    try:
        await workflow.get_external_workflow_handle(workflow_id).signal(Signals.PR_CHECKS, tested)
    except FailureError:
        pass  # they ended already


async def _cancel_long_tests(started: asyncio.Task[str | None]) -> None:
    """Cancel the long tests `_start_long_tests` started: the PR pipeline failed, or a newer head
    superseded it while it ran."""
    workflow_id = await started
    if workflow_id is not None:
        await _cancel_external(workflow_id)


async def cancel_long_tests(workflow_id: str) -> bool:
    """Cancel the `LongTests` run `workflow_id` (ChangeWorkflow: a newer head, or the PR closed
    unmerged) if it still runs; whether it did (Temporal accepts a cancel of a run that ended,
    so it is asked first). A run that ended is left as it is."""
    try:
        running = await workflow.execute_activity(
            is_running,
            workflow_id,
            task_queue=TaskQueues.WORKFLOWS,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=AHEAD,
            summary=f"are the long tests {workflow_id} still running?",
        )
    except ActivityError:
        running = True  # Temporal did not say: cancel all the same
    if running:
        await _cancel_external(workflow_id)
    return running


async def _cancel_external(workflow_id: str) -> None:
    try:
        await workflow.get_external_workflow_handle(workflow_id).cancel()
    except FailureError:
        pass  # it is gone: nothing to stop


async def _build(
    input: PipelineInput, push: bool, record: Record, run_image_test: bool = True
) -> CheckResult:
    return await _step(
        record,
        "image",
        workflow.execute_activity(
            build_image,
            BuildInput(
                app=input.app,
                repo=input.repo,
                commit=input.commit,
                push=push,
                run_image_test=run_image_test,
            ),
            task_queue=TaskQueues.BUILD,
            heartbeat_timeout=HEARTBEAT,
            **outage_wait(input.outage_wait_s, timedelta(minutes=30)),
            summary=f"{'build and push' if push else 'build'} image @ {input.commit[:12]}",
        ),
    )


async def _image_steps(input: PipelineInput, push: bool, record: Record) -> list[CheckResult]:
    """Build; then the app's image test, when it has one; then, in CI, the push: each a step of
    its own, each only after the one before passed, so an image that fails its test is never
    pushed."""
    done = [await _build(input, push=False, record=record, run_image_test=False)]
    later = [("image_test", try_image, "testing image")] if input.app.image_test is not None else []
    if push:
        later.append(("push", push_image, "pushing image"))
    for name, activity, doing in later:
        if not done[-1].passed:
            break
        record.publish(doing)
        done.append(await _image_step(input, record, name, activity))
    return done


async def _image_step(
    input: PipelineInput,
    record: Record,
    name: str,
    activity: Callable[[ImageInput], CheckResult],
) -> CheckResult:
    """One step on the image the build step built (`try_image`, `push_image`)."""
    return await _step(
        record,
        name,
        workflow.execute_activity(
            activity,
            ImageInput(app=input.app, repo=input.repo, commit=input.commit),
            task_queue=TaskQueues.BUILD,
            heartbeat_timeout=HEARTBEAT,
            **outage_wait(input.outage_wait_s, timedelta(minutes=30)),
            summary=f"{name} @ {input.commit[:12]}",
        ),
    )


async def _tested_image(input: PipelineInput, record: Record, stage: bool) -> list[CheckResult]:
    """Build, then the app's image test when it has one, beside the checks (no headline of its
    own: the checks are what the pipeline waits for); with `stage` (CI), then the candidates
    (`stage_candidate`) and the rendered check on the candidate's digest. Cancelled (a check
    failed), it gives the steps that ended; the step it was in ends `cancelled` on the
    timeline."""
    done: list[CheckResult] = []
    try:
        # One turn of the loop first, so the checks begin first: the timeline lists them first.
        await asyncio.sleep(0)
        done.append(await _build(input, push=False, record=record, run_image_test=False))
        if done[-1].passed and input.app.image_test is not None:
            done.append(await _image_step(input, record, "image_test", try_image))
        if stage and done[-1].passed:
            done.append(await _image_step(input, record, "candidate", stage_candidate))
            if done[-1].passed:
                done += await _run_checks(input, ["rendered"], record)
    except asyncio.CancelledError:
        # A step that had ended in the activation that cancelled it raises here without ending
        # its stage: it is cancelled too, its result unused.
        for step in record.timeline:
            if step.name in _IMAGE_STEPS and step.outcome == "running":
                record.end(step, "cancelled")
    return done


_IMAGE_STEPS = ("image", "image_test", "candidate", "rendered")


def _longest(kinds: list[CheckKind]) -> CheckKind:
    """The check that takes longest, by what each kind is for: the long tests where the
    pipeline runs them (CI), else the unit tests. A PR pipeline's unit tests keep their priority
    beside long tests started ahead (`AppConfig.long_tests_ahead`): the PR pipeline is the
    short one, for fast iteration (mission.md). Running them lower too was measured on 2 cores
    (issue 18): PR + CI 0.4 s sooner, but the PR's verdict 1.8 s instead of 0.9-1.4."""
    return "long_test" if "long_test" in kinds else "test"


async def _report(input: PipelineInput, context: str, state: StatusState, description: str) -> None:
    await workflow.execute_activity(
        set_commit_status,
        CommitStatusInput(
            repo=input.repo,
            sha=input.commit,
            context=context,
            state=state,
            description=description[:140],
            target_url=input.status_url,
        ),
        start_to_close_timeout=timedelta(seconds=60),
        heartbeat_timeout=HEARTBEAT,
        retry_policy=STATUS_RETRY,
        summary=f"commit status {context}: {state}",
    )


async def _pipeline(
    input: PipelineInput, title: str, context: str, kinds: list[CheckKind], push: bool
) -> PipelineResult:
    """The checks and the image steps; the commit status tells the forge the outcome. A PR
    pipeline whose app starts its long tests ahead (`AppConfig.long_tests_ahead`) starts CI's
    long tests beside (`LongTests`), without waiting for them, and cancels them when it fails or
    is superseded."""
    record = Record(
        f"**{title}** `{input.commit[:12]}`",
        status=lambda: PipelineStatus(headline=record.headline, timeline=record.timeline),
        coalesce=True,
    )
    app = input.app
    # Histories from before `ci.long_tests` lack it, and those from before its default for apps
    # with long tests lack the patch: both kept the long tests in CI, so they replay.
    ahead = app.ci.long_tests == "pull_request" or (
        app.long_tests_ahead and workflow.patched(LONG_TESTS_AHEAD_PATCH)
    )
    started = asyncio.create_task(_start_long_tests(input, record)) if ahead and not push else None
    try:
        published: Artifact | CheckResult | None = None
        if patched(BESIDE_CHECKS_PATCH):
            checks, published = await _beside_checks(
                input, title, context, kinds, push, record, ahead
            )
        else:
            checks = await _one_after_another(input, title, context, kinds, push, record)
    except asyncio.CancelledError:
        if started is not None:
            await _cancel_long_tests(started)
        raise
    if started is not None and not all(c.passed for c in checks):
        await _cancel_long_tests(started)
    elif started is not None:
        await _tell_long_tests(started, input, kinds, checks)
    result = await _publish_and_report(input, context, push, record, checks, published)
    if started is not None and result.passed:
        result.long_tests = started.result()
    return result


async def _one_after_another(
    input: PipelineInput,
    title: str,
    context: str,
    kinds: list[CheckKind],
    push: bool,
    record: Record,
) -> list[CheckResult]:
    """Histories before BESIDE_CHECKS_PATCH: the pending status, the checks in parallel, then
    the image steps, then (CI) the rendered check, each after the one before passed."""
    record.publish("running checks")
    await _report(input, context, "pending", f"{title} running")
    checks: list[CheckResult] = []
    try:
        checks += await _run_checks(input, kinds, record)
        if all(c.passed for c in checks):
            record.publish("building image")
            if patched(IMAGE_STEPS_PATCH):
                checks += await _image_steps(input, push, record)
            else:
                checks.append(await _build(input, push, record))
        if push and all(c.passed for c in checks):
            checks += await _run_checks(input, ["rendered"], record)
    except asyncio.CancelledError:
        # A newer head superseded this commit: say so on the forge, then end as cancelled.
        await _report(input, context, "error", "superseded by a newer commit")
        raise
    return checks


async def _beside_checks(
    input: PipelineInput,
    title: str,
    context: str,
    kinds: list[CheckKind],
    push: bool,
    record: Record,
    ahead: bool = False,
) -> tuple[list[CheckResult], Artifact | CheckResult | None]:
    """The checks in parallel and, beside them, the build and the image test, as CI systems run
    jobs side by side; the pending status goes to the forge meanwhile. A failing check cancels
    the image steps still running. In CI, the image, chart or bundle are staged as candidates
    beside the checks too, and the rendered check pins the candidate's digest; only once every
    check and image step passed: the push, a copy of the candidate into the app's repository
    (so an image that failed its test, or a commit that failed a check, never reaches it), and
    beside it the artifact's publication, a copy of the staged chart or bundle (what it gave, or
    its failure, is returned too; histories before PUBLISH_BESIDE_PUSH_PATCH publish after the
    push, in `_publish_and_report`). Histories before CANDIDATES_PATCH push through the engine,
    then run the rendered check. The results keep the order the steps had one after another."""
    record.publish("running checks and building image")
    pending = asyncio.create_task(_report(input, context, "pending", f"{title} running"))
    candidates = patched(CANDIDATES_PATCH)
    staged = push and candidates
    image = asyncio.create_task(_tested_image(input, record, stage=staged))
    publishing: asyncio.Task[Artifact | CheckResult] | None = None
    try:
        # CI of a merge with the tree a PR pipeline tested: what that PR passed is not run again.
        reused = await _pull_request_checks(input) if ahead and push else {}
        # The longest check is the critical path: where checks share a machine, it comes first.
        checks = await _run_checks(
            input,
            kinds,
            record,
            niceness=LOWER_PRIORITY if candidates else 0,
            longest=_longest(kinds),
            ahead=ahead and push,
            reused=reused,
        )
        if not all(c.passed for c in checks):
            image.cancel()  # the pipeline has failed: its image is of no use
        elif not image.done():
            record.publish("building image")
        # workflow.wait, not await: cancelling the workflow must not cancel these through it.
        await workflow.wait([image, pending])
        checks += image.result()
        pending.result()
        if push and all(c.passed for c in checks):
            if staged and patched(PUBLISH_BESIDE_PUSH_PATCH):
                record.publish("pushing image and publishing artifact")
                publishing = asyncio.create_task(_publish(input))
            else:
                record.publish("pushing image")
            checks.append(await _image_step(input, record, "push", push_image))
            if checks[-1].passed and not staged:
                checks += await _run_checks(input, ["rendered"], record)
    except asyncio.CancelledError:
        # A newer head superseded this commit: everything in flight ends, the pending status
        # reaches the forge first, then the error; the pipeline ends as cancelled.
        image.cancel()
        in_flight: list[asyncio.Task[Any]] = [image, pending]
        if publishing is not None:
            publishing.cancel()
            in_flight.append(publishing)
        await workflow.wait(in_flight)
        await _report(input, context, "error", "superseded by a newer commit")
        raise
    return checks, await publishing if publishing is not None else None


async def _publish(input: PipelineInput) -> Artifact | CheckResult:
    """The artifact published (`publish_artifact`), or the `publish` step's failure."""
    try:
        return await workflow.execute_activity(
            publish_artifact,
            PublishInput(app=input.app, repo=input.repo, commit=input.commit),
            task_queue=TaskQueues.BUILD,
            heartbeat_timeout=HEARTBEAT,
            **outage_wait(input.outage_wait_s, timedelta(minutes=10)),
            summary=f"publish artifact @ {input.commit[:12]}",
        )
    except ActivityError as err:
        return _failure("publish", err)


async def _publish_and_report(
    input: PipelineInput,
    context: str,
    push: bool,
    record: Record,
    checks: list[CheckResult],
    published: Artifact | CheckResult | None = None,
) -> PipelineResult:
    """Publish the artifact (CI, every step passed), unless it was `published` beside the push
    already, then tell the forge the outcome."""
    if isinstance(published, CheckResult):
        checks.append(published)  # the publication beside the push failed
    result = PipelineResult(passed=all(c.passed for c in checks), checks=checks)
    if result.passed and push:
        if published is None:
            record.publish("publishing artifact")
            published = await _publish(input)
        if isinstance(published, CheckResult):
            checks.append(published)
            result = PipelineResult(passed=False, checks=checks)
        else:
            result.artifact = published
    state: StatusState = "success" if result.passed else "error" if result.errored else "failure"
    record.publish(f"{state}: {result.summary()}")
    await _report(input, context, state, result.summary())
    return result


@workflow.defn(name=WorkflowTypes.PR_PIPELINE)
class PullRequestPipeline:
    """Gates a merge: lint, unit tests, Dockerfile and template lint in parallel, then build and
    the image test (no push)."""

    @workflow.run
    async def run(self, input: PipelineInput) -> PipelineResult:
        kinds: list[CheckKind] = ["lint", "test", "dockerfile", "templates"]
        return await _pipeline(input, "PR pipeline", "baton/pr", kinds, push=False)


@workflow.defn(name=WorkflowTypes.CI_PIPELINE)
class CIPipeline:
    """Integrates a merge commit: the PR checks plus long tests and, beside them, build, image
    test, candidates staged and the rendered check; once all passed, push and publish the
    artifact (copies of the candidates)."""

    @workflow.run
    async def run(self, input: PipelineInput) -> PipelineResult:
        kinds: list[CheckKind] = ["lint", "test", "long_test", "dockerfile", "templates"]
        return await _pipeline(input, "CI pipeline", CI_CONTEXT, kinds, push=True)


LONG_TESTS_FAILED = "LongTestsFailed"


@workflow.defn(name=WorkflowTypes.LONG_TESTS)
class LongTests:
    """CI's long tests on one tree, started by a PR pipeline beside its checks
    (`AppConfig.long_tests_ahead`) under an id of the tree (`baton.temporal.long_tests_id`), so
    that CI of a merge commit with that tree waits for them and uses their result instead of
    running them again. Completes only when they pass; failing tests fail the run (the tree is
    tried again by the next PR head that has it, and CI runs them itself)."""

    def __init__(self) -> None:
        self._pr_checks: TreeChecks | None = None
        self._passed: CheckResult | None = None
        self._ended = False

    @workflow.signal(name=Signals.PR_CHECKS)
    def tell_pr_checks(self, tested: TreeChecks) -> None:
        """The checks the PR pipeline that started these long tests passed."""
        self._pr_checks = tested

    @workflow.query(name=Queries.PR_CHECKS)
    def pr_checks(self) -> TreeChecks | None:
        return self._pr_checks

    @workflow.update(name=Updates.LONG_TESTS_PASSED)
    async def passed(self) -> CheckResult:
        """The result of the long tests once they passed, as the run returns it; failed when they
        did not pass. It answers as soon as they end, before their commit status is reported:
        CI of a merge waits on it (`long_tests_result`)."""
        await workflow.wait_condition(lambda: self._ended)
        if self._passed is None:
            raise ApplicationError("the long tests did not pass", type=LONG_TESTS_FAILED)
        return self._passed

    @workflow.run
    async def run(self, input: LongTestsInput) -> CheckResult:
        record = Record(
            f"**Long tests** `{input.commit[:12]}`",
            status=lambda: PipelineStatus(headline=record.headline, timeline=record.timeline),
            coalesce=True,
        )
        pipeline = PipelineInput(app=input.app, repo=input.repo, commit=input.commit)
        record.publish("running the long tests")
        # The PR's head gets a commit status of its own: its verdict did not wait for these.
        running = "long tests running, for CI of the merge"
        pending = asyncio.create_task(_report(pipeline, LONG_TESTS_CONTEXT, "pending", running))
        try:
            (result,) = await _run_checks(pipeline, ["long_test"], record)
        except asyncio.CancelledError:
            self._ended = True
            await workflow.wait([pending])
            why = "cancelled: a newer head, or the PR pipeline failed or was closed"
            await _report(pipeline, LONG_TESTS_CONTEXT, "error", why)
            raise
        passed = result.model_copy(update={"summary": f"{result.summary} at {input.commit[:12]}"})
        self._passed = passed if result.passed else None
        self._ended = True
        await pending
        state: StatusState = "success" if result.passed else "error" if result.error else "failure"
        await _report(pipeline, LONG_TESTS_CONTEXT, state, result.summary)
        record.publish(f"{'passed' if result.passed else 'failed'}: {result.summary}")
        if not result.passed:
            raise ApplicationError(
                f"long tests failed at {input.commit[:12]}: {result.summary}",
                type=LONG_TESTS_FAILED,
                non_retryable=True,
            )
        return passed
