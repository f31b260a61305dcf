"""PullRequestPipeline and CIPipeline: the checks that gate a merge and the integration of the merge commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
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
    input: PipelineInput, kinds: list[CheckKind], record: Record
) -> list[CheckResult]:
    """Run the given checks of the app in parallel; each activity is named after its step."""
    timeout = timedelta(seconds=input.app.check_timeout_s + 60)
    return list(
        await asyncio.gather(
            *(
                _step(
                    record,
                    kind,
                    workflow.execute_activity(
                        run_check,
                        CheckInput(app=input.app, repo=input.repo, commit=input.commit, kind=kind),
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
    image = ImageInput(app=input.app, repo=input.repo, commit=input.commit)
    later = [("image_test", try_image, "testing image")] if input.app.image_test is not None else []
    if push:
        later.append(("push", push_image, "pushing image"))
    for name, activity, doing in later:
        if not done[-1].passed:
            break
        record.publish(doing)
        done.append(
            await _step(
                record,
                name,
                workflow.execute_activity(
                    activity,
                    image,
                    task_queue=TaskQueues.BUILD,
                    heartbeat_timeout=HEARTBEAT,
                    **outage_wait(input.outage_wait_s, timedelta(minutes=30)),
                    summary=f"{name} @ {input.commit[:12]}",
                ),
            )
        )
    return done


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
    """Checks in parallel, then the image steps; the commit status tells the forge the outcome."""
    record = Record(
        f"**{title}** `{input.commit[:12]}`",
        status=lambda: PipelineStatus(headline=record.headline, timeline=record.timeline),
    )
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
    """Integrates a merge commit: the PR checks plus long tests, build, image test and push,
    publish the artifact."""

    @workflow.run
    async def run(self, input: PipelineInput) -> PipelineResult:
        kinds: list[CheckKind] = ["lint", "test", "long_test", "dockerfile", "templates"]
        return await _pipeline(input, "CI pipeline", CI_CONTEXT, kinds, push=True)
