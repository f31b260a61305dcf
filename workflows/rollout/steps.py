"""A rollout's deploy activities as stages of its timeline, with the options they share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, TypedDict, TypeVar, Unpack

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.deploy import CloseInput, Revert, close_gitops_pr
    from baton.models import GitOpsPullRequest, Rendered, RolloutInput
    from baton.temporal import TaskQueues

from workflows.record import Record, failure
from workflows.retries import HEARTBEAT, RETRY

A = TypeVar("A")
R = TypeVar("R")


def background(work: Coroutine[Any, Any, R]) -> asyncio.Future[R]:
    """`work` started now, to be awaited later or never (the rollout may end first, or cancel
    it): how it ended is read when it ends, so one that ends unawaited is not logged by asyncio as
    a task exception never retrieved. Awaiting it still returns its result or raises."""
    future = asyncio.ensure_future(work)
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    return future


class StepOptions(TypedDict, total=False):
    """The activity options a step sets (see `workflow.execute_activity`)."""

    task_queue: str
    start_to_close_timeout: timedelta
    schedule_to_close_timeout: timedelta
    heartbeat_timeout: timedelta
    retry_policy: RetryPolicy


# A deploy step: on a deploy worker, short, retried while the forge or cluster is away, and
# within seconds when its worker dies (it heartbeats).
QUICK: StepOptions = {
    "task_queue": TaskQueues.DEPLOY,
    "start_to_close_timeout": timedelta(minutes=2),
    "heartbeat_timeout": HEARTBEAT,
    "retry_policy": RETRY,
}


async def step(
    record: Record,
    name: str,
    activity: Callable[[A], R],
    arg: A,
    *,
    summary: str,
    **options: Unpack[StepOptions],
) -> R:
    """Run a deploy activity as a stage of the timeline, which says how it ended."""
    stage = record.begin(name)
    try:
        result = await workflow.execute_activity(
            activity, arg, summary=summary, **(QUICK | options)
        )
    except ActivityError as err:
        record.end(stage, "failed", failure(err))
        raise
    record.end(stage, "succeeded", describe(result))
    return result


async def close_pr(input: RolloutInput, pr: GitOpsPullRequest, why: str) -> None:
    """Close a GitOps PR with a comment saying why, and delete its branch."""
    await workflow.execute_activity(
        close_gitops_pr,
        CloseInput(rollout=input, pr=pr, reason=why),
        summary=f"close GitOps PR #{pr.number} ({why})",
        **QUICK,
    )


def describe(result: object) -> str:
    """A step's result in a few words, for the timeline."""
    if isinstance(result, GitOpsPullRequest):
        return f"#{result.number} {result.url}"
    if isinstance(result, Revert):
        if result.pr is None:
            return "the GitOps repository holds the previous manifests already"
        return f"#{result.pr.number} {result.pr.url}"
    if isinstance(result, Rendered):
        return f"{result.changed_objects} object(s) change"
    if isinstance(result, str):
        return result[:12]
    return ""
