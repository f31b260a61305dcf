"""Outages are waited out: a pipeline step whose dependency (here the registry, during CI's push)
does not answer is retried with backoff for `outages.wait`, not three times in seconds; what
`changes show` says meanwhile; and a wait that runs out shows the real cause."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio import activity
from temporalio.api.common.v1 import ActivityType
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.errors import application_error
from activities.pipeline import ImageInput
from baton.changes import waiting_out
from baton.models import PipelineInput, PipelineResult, Stage
from baton.registry import RegistryUnreachable
from baton.temporal import TaskQueues, WorkflowTypes
from tests.conftest import serving
from tests.workflows import test_pipelines as pipelines
from tests.workflows.test_pipelines import APP, SHA, Steps
from workflows import WORKFLOWS

steps = pipelines.steps  # the stand-ins' fixture

DOWN = RegistryUnreachable(
    "cannot reach registry 127.0.0.1:5000 ([Errno 111] Connection refused): check that it runs "
    "and that the registry url in the config is right"
)


@pytest.fixture
async def outage(isolated_client: Client, steps: Steps) -> AsyncIterator[list[int]]:
    """Workers whose image push finds the registry down for as many attempts as the test puts
    in the list it gets (the real activity raises `RegistryUnreachable`, retryable)."""
    down_for: list[int] = [0]
    activities = steps.activities()
    (push,) = [a for a in activities[TaskQueues.BUILD] if a.__name__ == "push_image"]

    @activity.defn(name="push_image")
    async def push_image(input: ImageInput) -> object:
        if activity.info().attempt <= down_for[0]:
            raise application_error(DOWN)
        return await push(input)

    queue = activities[TaskQueues.BUILD]
    queue[queue.index(push)] = push_image
    async with serving(isolated_client, WORKFLOWS, activities):
        yield down_for


async def ci(client: Client, outage_wait_s: int) -> PipelineResult:
    return await client.execute_workflow(
        WorkflowTypes.CI_PIPELINE,
        PipelineInput(app=APP, repo=APP.repo, commit=SHA, outage_wait_s=outage_wait_s),
        id=f"pipeline/{uuid.uuid4()}",
        task_queue=TaskQueues.WORKFLOWS,
        result_type=PipelineResult,
    )


async def test_a_registry_outage_during_the_push_is_waited_out(
    isolated_client: Client, outage: list[int], steps: Steps
) -> None:
    outage[0] = 3  # three attempts failed: the old policy's limit
    result = await ci(isolated_client, outage_wait_s=3600)
    assert result.passed and result.artifact is not None
    assert steps.attempts["push"] == 1  # the attempt that reached the registry pushed, once


async def test_a_wait_that_runs_out_fails_with_the_registry_s_own_words(
    isolated_client: Client, outage: list[int]
) -> None:
    outage[0] = 1_000
    result = await ci(isolated_client, outage_wait_s=4)
    assert not result.passed
    (push,) = [c for c in result.checks if c.name == "push"]
    assert push.summary == f"error: {DOWN}"  # not "activity ScheduleToClose timeout"


def test_show_says_what_a_step_waits_for_and_since_when() -> None:
    started = datetime(2026, 12, 1, 3, 0, 5, tzinfo=UTC)
    failed = Timestamp()
    failed.FromDatetime(datetime(2026, 12, 1, 3, 4, 0, tzinfo=UTC))
    pending = [
        PendingActivityInfo(
            activity_type=ActivityType(name="build_image"),
            attempt=7,
            last_failure=Failure(message=str(DOWN)),
            last_attempt_complete_time=failed,
        ),
        PendingActivityInfo(activity_type=ActivityType(name="run_check"), attempt=1),
    ]
    timeline = [Stage(name="image", started_at=started)]
    assert waiting_out(pending, timeline) == [
        f"waiting since 2026-12-01 03:00:05 UTC for image: {DOWN} (attempt 7)"
    ]
    assert waiting_out(pending, []) == [
        f"waiting since 2026-12-01 03:04:00 UTC for build_image: {DOWN} (attempt 7)"
    ]


def test_a_retryable_error_keeps_its_message_and_class_across_the_wire() -> None:
    error = application_error(DOWN)
    assert isinstance(error, ApplicationError) and not error.non_retryable
    assert (error.type, error.message) == ("RegistryUnreachable", str(DOWN))
