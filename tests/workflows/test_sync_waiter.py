"""SyncWaiter on a real Temporal server: sync events by signal, the polled status, the timeout.

A small host workflow waits for the environment to run revision M as EnvironmentRollout does;
the `world`'s stand-ins for `check_sync` and `is_descendant` report what the test says.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError

from activities.deploy import SyncCheckInput
from baton.config import SyncConfig
from baton.models import RolloutInput, SyncEvent, SyncOutcome
from tests.fixtures.hosts import RecordQueries, hosted_client
from tests.fixtures.polling import eventually
from tests.fixtures.rollouts import prod, rollout_of
from workflows.record import Record
from workflows.rollout.sync_waiter import SyncWaiter

OLD, M, CHILD = "a" * 40, "b" * 40, "c" * 40


@dataclass
class World:
    """The cluster as the stand-in activities report it."""

    polled_synced: bool = False  # check_sync reports M synced
    rolled_out: bool = True  # a look confirming a "ready" event sees the Deployments rolled out
    polls_since: list[object] = field(default_factory=list)  # `since` of each poll

    @activity.defn(name="check_sync")
    async def check_sync(self, input: SyncCheckInput) -> SyncOutcome:
        self.polls_since.append(input.since)
        await asyncio.sleep(0.2)
        if input.revision is not None and self.rolled_out:  # confirming an event
            return SyncOutcome(synced=True, revision=input.revision, reason="Ready")
        if self.polled_synced:
            return SyncOutcome(
                synced=True, revision=input.merged_revision, reason="ReconciliationSucceeded"
            )
        raise ApplicationError("applied revision is aaaaaaaaaaaa", type="NotSynced")

    @activity.defn(name="is_descendant")
    async def is_descendant(self, input: SyncCheckInput) -> bool:
        return input.merged_revision == M and input.revision in (M, CHILD)


@workflow.defn(name="SyncHost", sandboxed=False)
class SyncHost(RecordQueries):
    """Takes sync events at any time; after `merge`, waits for the environment to run M."""

    @workflow.init
    def __init__(self, input: RolloutInput) -> None:
        self.record = Record("sync host")
        self.sync = SyncWaiter(input, self.record)
        self.merged = False

    @workflow.signal
    def sync_event(self, event: SyncEvent) -> None:
        self.sync.add(event)

    @workflow.signal
    def merge(self) -> None:
        self.merged = True

    @workflow.run
    async def run(self, input: RolloutInput) -> SyncOutcome:
        await workflow.wait_condition(lambda: self.merged)
        self.sync.expect_merge()
        return await self.sync.wait(M, "sync")


@pytest.fixture
def world() -> World:
    return World()


client = hosted_client(SyncHost, "check_sync", "is_descendant")


async def merged(client: Client, task_queue: str, timeout_s: int = 600) -> WorkflowHandle:
    """A host whose GitOps PR merged: it waits at the sync gate."""
    input = rollout_of(prod(sync=SyncConfig(kind="flux", timeout_s=timeout_s)))
    handle = await client.start_workflow(
        SyncHost.run, input, id=f"sync/{uuid.uuid4()}", task_queue=task_queue
    )
    await handle.signal(SyncHost.merge)
    await eventually(lambda: handle.query(SyncHost.gate), what="the sync gate")
    return handle


async def stages(handle: WorkflowHandle) -> list[tuple[str, str, str]]:
    return [(s.name, s.outcome, s.detail) for s in await handle.query(SyncHost.timeline)]


async def test_an_event_for_a_descendant_ends_the_wait_and_older_revisions_are_ignored(
    client: Client, task_queue: str
) -> None:
    handle = await merged(client, task_queue)
    gate = await handle.query(SyncHost.gate)
    assert (gate.kind, gate.description) == ("sync", f"waiting for prod to sync {M[:12]}")
    assert gate.waiting_on == ["Flux sync"]

    await handle.signal(SyncHost.sync_event, SyncEvent(revision=OLD, state="ready"))
    await handle.signal(SyncHost.sync_event, SyncEvent(revision=CHILD, state="progressing"))
    await handle.signal(
        SyncHost.sync_event, SyncEvent(revision=CHILD, state="ready", reason="Succeeded")
    )

    outcome = await handle.result()
    assert (outcome.synced, outcome.revision) == (True, CHILD)
    assert await stages(handle) == [
        ("sync", "succeeded", f"Succeeded at {CHILD[:12]}"),
        ("note", "skipped", f"ignored sync event for older revision {OLD[:12]}"),
    ]


async def test_a_failed_event_for_the_revision_fails_with_the_clusters_reason(
    client: Client, task_queue: str
) -> None:
    handle = await merged(client, task_queue)
    await handle.signal(
        SyncHost.sync_event,
        SyncEvent(revision=M, state="failed", reason="HealthCheckFailed", message="not ready"),
    )

    outcome = await handle.result()

    assert (outcome.synced, outcome.reason) == (False, "failed")
    assert outcome.message == "HealthCheckFailed: not ready"


async def test_the_polled_status_ends_the_wait_when_no_event_comes(
    client: Client, task_queue: str, world: World
) -> None:
    world.polled_synced = True
    handle = await merged(client, task_queue)

    outcome = await handle.result()

    assert (outcome.synced, outcome.revision, outcome.reason) == (
        True,
        M,
        "ReconciliationSucceeded",
    )
    assert world.polls_since[0] is not None  # only what was observed after the merge counts


async def test_events_from_before_the_merge_do_not_count_and_the_timeout_names_the_last_status(
    client: Client, task_queue: str
) -> None:
    input = rollout_of(prod(sync=SyncConfig(kind="flux", timeout_s=2)))
    handle = await client.start_workflow(
        SyncHost.run, input, id=f"sync/{uuid.uuid4()}", task_queue=task_queue
    )
    await handle.signal(SyncHost.sync_event, SyncEvent(revision=M, state="ready"))
    await handle.signal(SyncHost.merge)

    outcome = await handle.result()

    assert (outcome.synced, outcome.reason) == (False, "timed out")
    assert outcome.message == "not synced within 2s; last seen: applied revision is aaaaaaaaaaaa"
