"""PullRequestPipeline and CIPipeline: the checks that gate a merge and the integration of the merge commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.forge import CommitStatusInput, set_commit_status
    from activities.pipeline import (
        BuildInput,
        CheckInput,
        CheckKind,
        ImageInput,
        PublishInput,
        build_image,
        publish_artifact,
        push_image,
        run_check,
        stage_candidate,
        try_image,
    )
    from baton.batches import CI_CONTEXT
    from baton.forges.base import StatusState
    from baton.models import CheckResult, PipelineInput, PipelineResult, PipelineStatus
    from baton.temporal import TaskQueues, WorkflowTypes

from workflows.record import Record, failure
from workflows.retries import HEARTBEAT, STATUS_RETRY, outage_wait

# Patch: the image test and the push are steps of their own after the build (image_test, push).
IMAGE_STEPS_PATCH = "image-test-step"
# Patch: the build and the image test run beside the checks, and the pending commit status is
# reported meanwhile (issue 18: the pipeline's critical path is its longest check).
BESIDE_CHECKS_PATCH = "image-beside-checks"
# Patch: CI stages its image, chart or bundle as candidates and runs the rendered check beside
# the checks; after them only copies in the registry are left (issue 18: PR+CI wall time).
CANDIDATES_PATCH = "candidates-beside-checks"
LOWER_PRIORITY = 10  # niceness of the checks other than the pipeline's longest (`_longest`)


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
) -> list[CheckResult]:
    """Run the given checks of the app in parallel; each activity is named after its step.
    With a `niceness`, the checks but the `longest` run at that lower CPU priority."""
    timeout = timedelta(seconds=input.app.check_timeout_s + 60)
    return list(
        await asyncio.gather(
            *(
                _step(
                    record,
                    kind,
                    workflow.execute_activity(
                        run_check,
                        CheckInput(
                            app=input.app,
                            repo=input.repo,
                            commit=input.commit,
                            kind=kind,
                            niceness=0 if kind == longest else niceness,
                        ),
                        task_queue=TaskQueues.BUILD,
                        heartbeat_timeout=HEARTBEAT,
                        **outage_wait(input.outage_wait_s, timeout),
                        summary=f"{kind} @ {input.commit[:12]}",
                    ),
                )
                for kind in kinds
            )
        )
    )


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
    pipeline runs them (CI), else the unit tests."""
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
    """The checks and the image steps; the commit status tells the forge the outcome."""
    record = Record(
        f"**{title}** `{input.commit[:12]}`",
        status=lambda: PipelineStatus(headline=record.headline, timeline=record.timeline),
    )
    if workflow.patched(BESIDE_CHECKS_PATCH):
        checks = await _beside_checks(input, title, context, kinds, push, record)
    else:
        checks = await _one_after_another(input, title, context, kinds, push, record)
    return await _publish_and_report(input, context, push, record, checks)


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
            if workflow.patched(IMAGE_STEPS_PATCH):
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
) -> list[CheckResult]:
    """The checks in parallel and, beside them, the build and the image test, as CI systems run
    jobs side by side; the pending status goes to the forge meanwhile. A failing check cancels
    the image steps still running. In CI, the image, chart or bundle are staged as candidates
    beside the checks too, and the rendered check pins the candidate's digest; only once every
    check and image step passed: the push, a copy of the candidate into the app's repository
    (so an image that failed its test, or a commit that failed a check, never reaches it), then
    (`_publish_and_report`) the artifact's publication, a copy of the staged chart or bundle.
    Histories before CANDIDATES_PATCH push through the engine, then run the rendered check.
    The results keep the order the steps had one after another."""
    record.publish("running checks and building image")
    pending = asyncio.create_task(_report(input, context, "pending", f"{title} running"))
    patched = workflow.patched(CANDIDATES_PATCH)
    staged = push and patched
    image = asyncio.create_task(_tested_image(input, record, stage=staged))
    try:
        # The longest check is the critical path: where checks share a machine, it comes first.
        checks = await _run_checks(
            input,
            kinds,
            record,
            niceness=LOWER_PRIORITY if patched else 0,
            longest=_longest(kinds),
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
            record.publish("pushing image")
            checks.append(await _image_step(input, record, "push", push_image))
            if checks[-1].passed and not staged:
                checks += await _run_checks(input, ["rendered"], record)
    except asyncio.CancelledError:
        # A newer head superseded this commit: everything in flight ends, the pending status
        # reaches the forge first, then the error; the pipeline ends as cancelled.
        image.cancel()
        await workflow.wait([image, pending])
        await _report(input, context, "error", "superseded by a newer commit")
        raise
    return checks


async def _publish_and_report(
    input: PipelineInput, context: str, push: bool, record: Record, checks: list[CheckResult]
) -> PipelineResult:
    """Publish the artifact (CI, every step passed), then tell the forge the outcome."""
    result = PipelineResult(passed=all(c.passed for c in checks), checks=checks)
    if result.passed and push:
        record.publish("publishing artifact")
        try:
            result.artifact = await workflow.execute_activity(
                publish_artifact,
                PublishInput(app=input.app, repo=input.repo, commit=input.commit),
                task_queue=TaskQueues.BUILD,
                heartbeat_timeout=HEARTBEAT,
                **outage_wait(input.outage_wait_s, timedelta(minutes=10)),
                summary=f"publish artifact @ {input.commit[:12]}",
            )
        except ActivityError as err:
            checks.append(_failure("publish", err))
            result = PipelineResult(passed=False, checks=checks)
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
