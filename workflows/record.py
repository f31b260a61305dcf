"""The record keeper every workflow shares: what people see of it while it runs.

A `Record` holds a workflow's timeline of stages and the gate it waits at, keeps its search
attributes in step (BatonState, BatonStep, BatonOutcome, BatonGate), publishes its current details,
the markdown the Temporal UI shows, its workflow's status as the `status` memo and its gate as the
`gate` memo, which clients read without a worker (`baton.changes.read_status`, `baton.changes.gates`).
It only uses workflow-safe calls (`workflow.now()`, search attribute and memo upserts,
`workflow.set_current_details`), so workflows and their helper objects call it freely.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    TemporalError,
    TimeoutError,
)

with workflow.unsafe.imports_passed_through():
    from baton.models import Gate, Stage, StageOutcome
    from baton.temporal import MEMO_GATE, SearchAttributes

from workflows import metrics
from workflows.patches import patched

COALESCED = "record-coalesced"
"""Patch: a record with `coalesce` upserts its search attributes and memos once per workflow
task (each key's last value), not once per stage, gate or note (issue 18: a rollout's history
held 115 events, most of them upserts, and each memo costs the worker a payload to encode)."""

ICONS: dict[StageOutcome, str] = {
    "running": "⏳",
    "succeeded": "✅",
    "failed": "❌",
    "cancelled": "⏹",
    "superseded": "⏭",
    "skipped": "•",
}


class Record:
    """A workflow's timeline, current gate, facts and headline, as its status and UI details.

    With `stages_searchable`, every stage's name is the BatonStep search attribute and every gate's
    kind the BatonGate one (rollouts); `set_state` sets BatonState (a change's state) or, with
    `outcome=True`, BatonOutcome (how a rollout ended). Workflows whose history predates the split
    (no `search-attributes-split` marker) keep writing all three to BatonStage, so they replay.
    `ui_url` and `namespace` say where `link` points. With `status` (the workflow's status query),
    each publish that changes it upserts it as the `status` memo (workflows recorded before the
    `status-memo` marker publish none). `on_news`, when set, is called when the state changes or
    a gate begins, changes what it says, or ends (the change's pull request comment follows).
    With `coalesce`, the upserts a workflow task makes go out as one search attribute upsert and
    one memo upsert when the workflow next waits (workflows recorded before the
    `record-coalesced` marker upsert at each call); the status memo is computed then, once.
    """

    def __init__(
        self,
        title: str,
        *,
        stages_searchable: bool = False,
        ui_url: str = "",
        namespace: str = "default",
        status: Callable[[], BaseModel] | None = None,
        coalesce: bool = False,
    ) -> None:
        self.title = title
        self.status = status
        self.published = ""
        self.stages_searchable = stages_searchable
        self.ui_url = ui_url
        self.namespace = namespace
        self.headline = ""
        self.timeline: list[Stage] = []
        self.gate: Gate | None = None
        self.gate_since: datetime | None = None
        self.facts: dict[str, str] = {}
        self.on_news: Callable[[], None] | None = None
        self.coalesce = coalesce
        self._coalesced: bool | None = None  # the patch, asked at the first upsert
        self._attributes: dict[str, SearchAttributeUpdate[Any]] = {}
        self._memo: dict[str, Any] = {}
        self._status_due = False
        self._flush_due = False

    @property
    def current(self) -> str:
        """The name of the latest entry of the timeline, or `starting` before the first."""
        return self.timeline[-1].name if self.timeline else "starting"

    def begin(self, name: str, links: dict[str, str] | None = None) -> Stage:
        """Start a stage of the timeline; `end` says how it ended."""
        stage = Stage(name=name, started_at=workflow.now(), links=links or {})
        self.timeline.append(stage)
        if self.stages_searchable:
            if self.gate is None:
                self._upsert_attribute(SearchAttributes.GATE.value_set("none"))
            self._upsert_attribute(_key(SearchAttributes.STEP).value_set(name))
        self.publish()
        return stage

    def end(
        self, stage: Stage, outcome: StageOutcome, detail: str = "", *, news: bool = False
    ) -> None:
        """End a stage: how it ended, and in a few words why. `news`: people are told too
        (`on_news`), as when a rollout's stage ends and its outcome is for the change to tell."""
        stage.ended_at = workflow.now()
        stage.outcome = outcome
        stage.detail = detail
        self.publish()
        if news:
            self._tell()

    def retell(self, name: str, outcome: StageOutcome, detail: str) -> None:
        """Say again how the latest stage `name` ended, once the workflow knows what its ending
        meant (a merge refused because the PR moved is no failure: the rollout goes on)."""
        stage = next(s for s in reversed(self.timeline) if s.name == name)
        stage.outcome, stage.detail = outcome, detail
        self.publish()

    def note(self, detail: str) -> None:
        """Something worth knowing that is no stage (a review that did not count, say)."""
        now = workflow.now()
        self.timeline.append(
            Stage(name="note", started_at=now, ended_at=now, outcome="skipped", detail=detail)
        )
        self.publish()

    def set_gate(self, gate: Gate) -> None:
        """What the workflow waits for now, and on whom."""
        if self.gate is None or (self.gate.kind, self.gate.environment) != (
            gate.kind,
            gate.environment,
        ):
            self._gate_passed()
            self.gate_since = workflow.now()
        news = self.gate is None or (self.gate.description, self.gate.waiting_on) != (
            gate.description,
            gate.waiting_on,
        )
        self.gate = gate
        if self.stages_searchable:
            self._upsert_attribute(SearchAttributes.GATE.value_set(gate.kind))
        self._publish_gate()
        self.publish()
        if news:
            self._tell()

    def clear_gate(self) -> None:
        """The workflow waits for nothing any more."""
        self._gate_passed()
        news = self.gate is not None
        self.gate = None
        self._publish_gate()
        self.publish()
        if news:
            self._tell()

    def _tell(self) -> None:
        if self.on_news is not None:
            self.on_news()

    def _gate_passed(self) -> None:
        """Record the time spent at the gate the workflow leaves, if any."""
        if self.gate is not None and self.gate_since is not None:
            metrics.gate_passed(self.gate, self.gate_since)
        self.gate_since = None

    def _publish_gate(self) -> None:
        """Keep the gate in the memo (`MEMO_GATE`), so the API answers who is awaited without
        a worker; workflows recorded before it was there replay without it."""
        if patched("gate-memo"):
            self._upsert_memo(MEMO_GATE, self.gate)

    def set_state(self, state: str, reason: str | None = None, *, outcome: bool = False) -> None:
        """The workflow's state (or `outcome`): its search attribute and the headline of its details.

        An `outcome` ends the workflow's waiting too: BatonGate goes back to `none`, so a search for
        rollouts at a gate finds no finished ones (workflows recorded before the
        `gate-cleared-at-end` marker keep their last gate).
        """
        key = SearchAttributes.OUTCOME if outcome else SearchAttributes.STATE
        self._upsert_attribute(_key(key).value_set(state))
        if outcome and self.stages_searchable and patched("gate-cleared-at-end"):
            self.gate = None
            self._upsert_attribute(SearchAttributes.GATE.value_set("none"))
        self.publish(f"**{state}**" + (f": {reason}" if reason else ""))
        self._tell()

    def fact(self, label: str, text: str) -> None:
        """A line of the details that stays (a PR link, say); the same label replaces it."""
        self.facts[label] = text
        self.publish()

    def publish(self, headline: str | None = None) -> None:
        """Show the details in the Temporal UI: title, headline, gate, facts and timeline."""
        if headline is not None:
            self.headline = headline
        lines = [self.title, self.headline]
        if self.gate:
            lines.append(f"Waiting: {self.gate.description}")
            if self.gate.waiting_on:
                lines.append(f"On: {', '.join(self.gate.waiting_on)}")
        lines += [f"{label}: {text}" for label, text in self.facts.items()]
        lines.append("")
        lines += [f"- {ICONS[s.outcome]} {s.name} {s.detail}" for s in self.timeline]
        workflow.set_current_details("\n".join(lines))
        self._publish_status()

    def _publish_status(self) -> None:
        """Upsert the workflow's status as the `status` memo when it changed since the last one."""
        if self.status is None:
            return
        if self._coalescing():
            self._status_due = True
            self._flush_soon()
            return
        self._upsert_status(self.status)

    def _upsert_status(self, status: Callable[[], BaseModel]) -> None:
        current = status()
        published = current.model_dump_json()
        if published != self.published and patched("status-memo"):
            self.published = published
            self._upsert_memo("status", current)

    # Upserts: at once, or (coalescing) each key's last value when the workflow task yields.

    def _coalescing(self) -> bool:
        if self._coalesced is None:
            self._coalesced = self.coalesce and patched(COALESCED)
        return self._coalesced

    def _upsert_attribute(self, update: SearchAttributeUpdate[Any]) -> None:
        if not self._coalescing():
            workflow.upsert_search_attributes([update])
            return
        self._attributes[update.key.name] = update
        self._flush_soon()

    def _upsert_memo(self, key: str, value: Any) -> None:
        if not self._coalescing():
            workflow.upsert_memo({key: value})
            return
        self._memo[key] = value
        self._flush_soon()

    def _flush_soon(self) -> None:
        """Flush once the running code yields: still within this workflow task, after every
        change it makes (Temporal keeps a workflow's completion its last command)."""
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self._status_due and self.status is not None:
            self._status_due = False
            self._upsert_status(self.status)
        attributes, self._attributes = self._attributes, {}
        memo, self._memo = self._memo, {}
        if attributes:
            workflow.upsert_search_attributes(list(attributes.values()))
        if memo:
            workflow.upsert_memo(memo)

    def link(self, workflow_id: str) -> str:
        """The Temporal UI page of a workflow (this one, or a child)."""
        return ui_link(self.ui_url, self.namespace, workflow_id)


def ui_link(ui_url: str, namespace: str, workflow_id: str) -> str:
    """The Temporal UI page of a workflow."""
    return f"{ui_url}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"


WRAPPERS = (ActivityError, ChildWorkflowError, TimeoutError)
"""Failures that only say where an error happened, never what it was."""


def failure(err: TemporalError) -> str:
    """Why an activity or child workflow failed, in the words of its own error.

    A child workflow that failed on an activity wraps its error twice (the child's failure, then
    "Activity task failed"), and an activity that ran out of time while retrying wraps its last
    error in the timeout: the innermost cause says what went wrong.
    """
    cause = err.cause
    while isinstance(cause, WRAPPERS) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError) and not cause.message and cause.type:
        return cause.type
    return getattr(cause, "message", None) or str(cause or err)


def last_failure(timeout: BaseException | None) -> str | None:
    """The last attempt's error that an activity's timeout carries, if it was one of ours."""
    last = getattr(timeout, "cause", None)
    return last.message if isinstance(last, ApplicationError) else None


def _key(key: SearchAttributeKey[str]) -> SearchAttributeKey[str]:
    """`key`, or BatonStage in workflows that started before the split (their histories upsert it)."""
    return key if patched("search-attributes-split") else SearchAttributes.LEGACY_STAGE
