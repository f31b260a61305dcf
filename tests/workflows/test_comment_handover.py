"""A rollout hands its change's PR comment over as it ends, on a real Temporal server with the
deploy steps stood in for as in test_rollout.py: news that reaches the rollout while its last
comment write is under way asks for no other write (the change writes once the rollout's stage
ends, test_change_comment.py), so the rollout returns once that write is done."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.forge import ChangeCommentInput
from baton.temporal import SearchAttributes, TaskQueues
from tests.conftest import until
from tests.workflows import test_rollout as rollout
from workflows.rollout import EnvironmentRollout

fresh_world = rollout.fresh_world  # test_rollout's world of stand-ins, fresh for each test


class Comments:
    """The comment writes the rollout asks for; while `held` is clear, a write waits for it."""

    def __init__(self) -> None:
        self.started = 0
        self.held = asyncio.Event()
        self.held.set()


comments = Comments()


@activity.defn(name="update_change_comment")
async def update_change_comment(input: ChangeCommentInput) -> int | None:
    comments.started += 1
    while not comments.held.is_set():
        activity.heartbeat()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(comments.held.wait(), timeout=1)
    return 1


@pytest.fixture
async def workers(temporal_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    global comments
    comments = Comments()
    client = temporal_env.client
    deploy = Worker(client, task_queue=TaskQueues.DEPLOY, activities=rollout.DEPLOY_STAND_INS)
    flows = Worker(
        client,
        task_queue=TaskQueues.WORKFLOWS,
        workflows=[EnvironmentRollout],
        activities=[update_change_comment],
    )
    async with deploy, flows:
        yield client


async def test_news_during_the_last_comment_write_asks_for_no_other(workers: Client) -> None:
    input = rollout.rollout_input(required=0).model_copy(update={"pr_comment": True})
    handle = await rollout.start(workers, input)
    await rollout.wait_for_gate(handle, "sync")
    before = comments.started
    comments.held.clear()  # the writes from here on wait: one is under way when the outcome comes
    await handle.signal(
        EnvironmentRollout.sync_event, rollout.SyncEvent(revision=rollout.M, state="ready")
    )
    await until(
        handle.describe,
        lambda found: found.typed_search_attributes.get(SearchAttributes.OUTCOME) == "deployed",
        "the rollout's outcome while its comment is written",
    )
    await until(lambda: comments.started, lambda n: n == before + 1, "the held write")
    comments.held.set()

    result = await handle.result()
    assert result.outcome == "deployed"
    # Before the hand-over, the outcome's news asked for one more write after this one.
    assert comments.started == before + 1
