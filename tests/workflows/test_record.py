"""Record on a real Temporal server: what the UI and the search attributes show of a workflow.

A small host workflow keeps its record the way Baton's workflows do; the tests read what people
would see: the workflow's search attributes (`describe`) and its current details (the markdown
the Temporal UI shows).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.models import Gate, PipelineStatus
from baton.temporal import SearchAttributes
from tests.fixtures.hosts import RecordQueries
from tests.fixtures.polling import eventually
from workflows.record import Record

MEMO_UPSERT = "workflow_properties_modified_event_attributes"


class Story(BaseModel):
    """What the host records: like a rollout (searchable steps, ends with an outcome) or a change."""

    searchable: bool
    coalesce: bool = False


@workflow.defn(name="RecordHost", sandboxed=False)
class RecordHost(RecordQueries):
    """Renders, waits at an approval gate until told to go on, then ends as deployed."""

    @workflow.init
    def __init__(self, story: Story) -> None:
        self.record = Record(
            "**web** → **prod**",
            stages_searchable=story.searchable,
            ui_url="http://ui",
            namespace="ns",
            status=lambda: PipelineStatus(
                headline=self.record.headline, timeline=self.record.timeline
            ),
            coalesce=story.coalesce,
        )
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self, story: Story) -> None:
        render = self.record.begin("render")
        self.record.end(render, "succeeded", "3 object(s) change")
        self.record.fact("GitOps PR", "[#7](http://forge/7)")
        approval = self.record.begin("approval")
        self.record.set_gate(
            Gate(kind="approval", description="0/1 approvals for prod", waiting_on=["carol"])
        )
        await workflow.wait_condition(lambda: self.go)
        self.record.clear_gate()
        self.record.note("review by mallory not counted")
        self.record.end(approval, "succeeded", "approved by carol")
        self.record.set_state("deployed", "200 ok", outcome=story.searchable)


@pytest.fixture
async def client(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Client]:
    async with Worker(temporal_env.client, task_queue=task_queue, workflows=[RecordHost]):
        yield temporal_env.client


async def start(
    client: Client, task_queue: str, searchable: bool, coalesce: bool = False
) -> WorkflowHandle:
    return await client.start_workflow(
        RecordHost.run,
        Story(searchable=searchable, coalesce=coalesce),
        id=f"record/{uuid.uuid4()}",
        task_queue=task_queue,
    )


async def at_gate(handle: WorkflowHandle) -> None:
    await eventually(lambda: handle.query(RecordHost.gate), what="the host's approval gate")


async def details(handle: WorkflowHandle) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


class Shown(BaseModel):
    """The host's Baton search attributes, by key."""

    step: str | None = None
    gate: str | None = None
    state: str | None = None
    outcome: str | None = None
    legacy_stage: str | None = None


async def attributes(handle: WorkflowHandle) -> Shown:
    found = (await handle.describe()).typed_search_attributes
    return Shown(
        step=found.get(SearchAttributes.STEP),
        gate=found.get(SearchAttributes.GATE),
        state=found.get(SearchAttributes.STATE),
        outcome=found.get(SearchAttributes.OUTCOME),
        legacy_stage=found.get(SearchAttributes.LEGACY_STAGE),
    )


async def test_the_current_stage_and_gate_are_search_attributes_and_details(
    client: Client, task_queue: str
) -> None:
    handle = await start(client, task_queue, searchable=True)
    await at_gate(handle)

    assert await attributes(handle) == Shown(step="approval", gate="approval")
    shown = await details(handle)
    assert shown.startswith("**web** → **prod**")
    assert "Waiting: 0/1 approvals for prod\nOn: carol" in shown
    assert "GitOps PR: [#7](http://forge/7)" in shown
    assert "- ✅ render 3 object(s) change\n- ⏳ approval " in shown


async def test_the_outcome_is_its_own_attribute_and_the_headline(
    client: Client, task_queue: str
) -> None:
    handle = await start(client, task_queue, searchable=True)
    await at_gate(handle)
    await handle.signal(RecordHost.proceed)
    await handle.result()

    # Ended, it waits for nothing: a search for rollouts at a gate does not find it.
    assert await attributes(handle) == Shown(step="approval", gate="none", outcome="deployed")
    shown = await details(handle)
    assert "**deployed**: 200 ok" in shown and "Waiting:" not in shown
    assert "- • note review by mallory not counted" in shown
    timeline = await handle.query(RecordHost.timeline)
    assert [(s.name, s.outcome) for s in timeline] == [
        ("render", "succeeded"),
        ("approval", "succeeded"),
        ("note", "skipped"),
    ]


async def test_without_searchable_stages_only_the_state_is_a_search_attribute(
    client: Client, task_queue: str
) -> None:
    handle = await start(client, task_queue, searchable=False)
    await at_gate(handle)
    assert await attributes(handle) == Shown()
    assert "Waiting: 0/1 approvals for prod" in await details(handle)

    await handle.signal(RecordHost.proceed)
    await handle.result()
    assert await attributes(handle) == Shown(state="deployed")


async def test_the_status_is_published_as_a_memo_each_time_it_changes(
    client: Client, task_queue: str
) -> None:
    handle = await start(client, task_queue, searchable=True)
    await at_gate(handle)
    waiting = await (await handle.describe()).memo_value("status", type_hint=PipelineStatus)
    assert [(s.name, s.outcome) for s in waiting.timeline] == [
        ("render", "succeeded"),
        ("approval", "running"),
    ]

    await handle.signal(RecordHost.proceed)
    await handle.result()

    ended = await (await handle.describe()).memo_value("status", type_hint=PipelineStatus)
    assert ended.headline == "**deployed**: 200 ok"
    assert ended.timeline == await handle.query(RecordHost.timeline)
    # Only what changes the status is upserted: not the fact, the gate set or cleared (which a
    # PipelineStatus does not show). The gate has a memo of its own, for the decision API.
    upserts = [
        set(e.workflow_properties_modified_event_attributes.upserted_memo.fields)
        async for e in handle.fetch_history_events()
        if e.HasField(MEMO_UPSERT)
    ]
    # render begins, ends; approval begins; the note; it ends; the state
    assert sum("status" in fields for fields in upserts) == 6
    assert sum("gate" in fields for fields in upserts) == 2  # set, cleared


async def test_a_coalescing_record_upserts_once_per_workflow_task_what_it_shows_in_the_end(
    client: Client, task_queue: str
) -> None:
    handle = await start(client, task_queue, searchable=True, coalesce=True)
    await at_gate(handle)
    assert await attributes(handle) == Shown(step="approval", gate="approval")
    await handle.signal(RecordHost.proceed)
    await handle.result()

    assert await attributes(handle) == Shown(step="approval", gate="none", outcome="deployed")
    ended = await (await handle.describe()).memo_value("status", type_hint=PipelineStatus)
    assert ended.headline == "**deployed**: 200 ok"
    assert ended.timeline == await handle.query(RecordHost.timeline)
    memos, attribute_upserts = [], []
    async for event in handle.fetch_history_events():
        if event.HasField(MEMO_UPSERT):
            memos.append(
                set(event.workflow_properties_modified_event_attributes.upserted_memo.fields)
            )
        elif event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            attribute_upserts.append(set(fields.indexed_fields) - {"TemporalChangeVersion"})
    # Two workflow tasks (up to the gate; after the signal): one memo upsert each, not 8 in all.
    assert memos == [{"status", "gate"}, {"status", "gate"}]
    assert [a for a in attribute_upserts if a] == [
        {"BatonStep", "BatonGate"},
        {"BatonGate", "BatonOutcome"},
    ]


def test_links_point_at_the_workflow_page_of_the_temporal_ui() -> None:
    record = Record("x", ui_url="http://127.0.0.1:8233", namespace="baton")
    assert record.link("rollout/web/prod/abc") == (
        "http://127.0.0.1:8233/namespaces/baton/workflows/rollout%2Fweb%2Fprod%2Fabc"
    )
