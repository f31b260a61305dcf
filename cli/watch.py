"""Following a change live: `baton changes watch`, `baton changes wait` and `baton demo`.

`follow` reads the change as `changes.show` does (what the workflows publish: no worker needed)
about once a second and turns what is new into `WatchEvent`s: the change's state, each stage of the
change, of its pipelines and of each rollout as it starts and ends, a running build's progress, the
gate and whom it waits on, each environment's outcome, and the end. A pipeline or rollout that ended
between two reads is read once more, so none of its steps (image, sync, verify...) is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel
from temporalio.client import Client

from baton import changes
from baton.errors import BadRequest, BatonError
from baton.models import (
    TERMINAL_STATES,
    ChangeStatus,
    Gate,
    PipelineStatus,
    RolloutStatus,
    Stage,
)
from baton.temporal import pipeline_id, rollout_id

EventKind = Literal["state", "started", "progress", "ended", "note", "gate", "environment", "end"]


class WatchEvent(BaseModel):
    """One thing that happened to a change; `text` is how `baton changes watch` prints it."""

    event: EventKind
    change: str
    at: datetime
    text: str
    state: str | None = None
    scope: str | None = None
    """Where a stage belongs: `change`, `pipeline`, or the environment of a rollout."""
    stage: str | None = None
    outcome: str | None = None
    detail: str | None = None
    elapsed_s: float | None = None
    environment: str | None = None
    gate: Gate | None = None
    logs: str | None = None
    """An ended pipeline step's full output: its LogStore reference (`sha256:<hex>`)."""


class Watcher:
    """Turns successive reads of one change into the events that are new since the last."""

    def __init__(self, change_id: str) -> None:
        self.change_id = change_id
        self.state: tuple[str, str | None] | None = None
        self.started: set[tuple[str, str, datetime]] = set()
        self.ended: set[tuple[str, str, datetime]] = set()
        self.progress: dict[tuple[str, str, datetime], str] = {}
        self.gates: set[str] = set()  # the gates seen at the last read, as JSON
        self.environments: set[str] = set()

    def update(
        self, detail: changes.ChangeDetail, ended: Sequence[tuple[str, list[Stage]]] = ()
    ) -> list[WatchEvent]:
        """The events `detail` adds, and the `ended` timelines of pipelines and rollouts that
        ended since the last read (scope, timeline)."""
        status = detail.change
        self.now = datetime.now(UTC)
        self.events: list[WatchEvent] = []
        emit = self._emit

        if (status.state, status.reason) != self.state:
            self.state = (status.state, status.reason)
            reason = f" ({status.reason})" if status.reason else ""
            emit("state", f"{status.state}{reason}", state=status.state, detail=status.reason)
        scopes: list[tuple[str, list[Stage]]] = [*ended, ("change", status.timeline)]
        scopes += [("pipeline", detail.steps)]
        scopes += [(rollout.environment, rollout.timeline) for rollout in detail.running_rollouts]
        for scope, timeline in scopes:
            for stage in timeline:
                self._stage(scope, stage)
        # Each rollout under way may wait at its own gate (a parallel stage), the change at its own.
        gates = [r.gate for r in detail.running_rollouts if r.gate] + [status.gate]
        if status.state in TERMINAL_STATES:
            gates = []
        seen = {gate.model_dump_json(): gate for gate in gates if gate is not None}
        for key, gate in seen.items():
            if key not in self.gates:
                emit("gate", describe_gate(gate), gate=gate, environment=gate.environment)
        self.gates = set(seen)
        for result in status.rollouts:
            if result.environment not in self.environments:
                self.environments.add(result.environment)
                pr = f" ({result.gitops_pr.url})" if result.gitops_pr else ""
                emit(
                    "environment",
                    f"{result.environment}: {result.outcome}: {result.reason}{pr}",
                    environment=result.environment,
                    outcome=result.outcome,
                    detail=result.reason,
                )
        if status.state in TERMINAL_STATES or detail.workflow not in ("running", "completed"):
            how = status.state if detail.workflow in ("running", "completed") else detail.workflow
            emit("end", f"{self.change_id} {how}", state=how, detail=status.reason)
        return self.events

    def _emit(self, kind: EventKind, text: str, **fields: Any) -> None:
        self.events.append(
            WatchEvent(event=kind, change=self.change_id, at=self.now, text=text, **fields)
        )

    def _stage(self, scope: str, stage: Stage) -> None:
        emit, now = self._emit, self.now
        key = (scope, stage.name, stage.started_at)
        where = "" if scope in ("change", "pipeline") else f"{scope}: "
        fields: dict[str, Any] = {"scope": scope, "stage": stage.name}
        if stage.name == "note":
            if key not in self.ended:
                self.ended.add(key)
                emit("note", f"{where}{stage.detail}", detail=stage.detail, **fields)
            return
        if key not in self.started and stage.outcome == "running":
            self.started.add(key)
            emit("started", f"{where}{stage.name} …", **fields)
        if stage.outcome == "running":
            if stage.detail and self.progress.get(key) != stage.detail:
                self.progress[key] = stage.detail
                elapsed = (now - stage.started_at).total_seconds()
                emit(
                    "progress",
                    f"{where}{stage.name} {elapsed:.0f}s: {stage.detail}",
                    detail=stage.detail,
                    elapsed_s=elapsed,
                    **fields,
                )
        elif key not in self.ended:
            self.started.add(key)
            self.ended.add(key)
            elapsed = ((stage.ended_at or now) - stage.started_at).total_seconds()
            mark = {"succeeded": "✔", "skipped": "·"}.get(stage.outcome, "✘")
            emit(
                "ended",
                f"{where}{mark} {stage.name} {elapsed:.1f}s {stage.detail}".rstrip(),
                outcome=stage.outcome,
                detail=stage.detail,
                elapsed_s=elapsed,
                logs=stage.links.get("logs"),
                **fields,
            )


def describe_gate(gate: Gate) -> str:
    """The gate in one line: what it waits for and on whom."""
    text = f"waiting: {gate.description}"
    if gate.kind == "approval":
        text += (
            f" ({len(gate.approved_by)}/{gate.required} approvals; "
            f"may approve: {', '.join(gate.waiting_on) or 'anyone allowed'})"
        )
    elif gate.waiting_on:
        text += f" (on {', '.join(gate.waiting_on)})"
    return text


def now_line(detail: changes.ChangeDetail, now: datetime | None = None) -> str:
    """The live line: the change's state, the stage it is at and for how long, and the running
    step of its pipeline or of each rollout under way (named by its environment) with its elapsed
    time and progress."""
    now = now or datetime.now(UTC)
    status = detail.change
    parts = [f"{status.id} {status.state}"]
    running = [s for s in status.timeline if s.outcome == "running"]
    inner: list[tuple[str, Stage]] = [("", s) for s in detail.steps if s.outcome == "running"]
    for rollout in detail.running_rollouts:
        where = f"{rollout.environment}: " if len(detail.running_rollouts) > 1 else ""
        inner += [(where, s) for s in rollout.timeline if s.outcome == "running"]
    for where, stage in [("", s) for s in running[-1:]] + inner:
        took = (now - stage.started_at).total_seconds()
        detail_text = f" ({stage.detail})" if stage.detail else ""
        parts.append(f"{where}{stage.name} {took:.0f}s{detail_text}")
    return " · ".join(parts)


async def follow(
    client: Client, change: str, *, poll_s: float = 1.0
) -> AsyncIterator[tuple[list[WatchEvent], changes.ChangeDetail]]:
    """Read the change every `poll_s` seconds until it ends; yield the new events with each read.

    Raises ChangeNotFound when there is no such change.
    """
    change_id = changes.normalize_id(change)
    watcher = Watcher(change_id)
    done: set[str] = set()
    while True:
        detail = await changes.show(client, change_id)
        events = watcher.update(detail, await _ended(client, detail.change, done))
        yield events, detail
        if any(e.event == "end" for e in events):
            return
        await asyncio.sleep(poll_s)


async def _ended(
    client: Client, status: ChangeStatus, done: set[str]
) -> list[tuple[str, list[Stage]]]:
    """The timelines of the change's pipelines and rollouts that ended since the last read, as
    they published them: (scope, timeline)."""
    ended: list[tuple[str, list[Stage]]] = []
    validations = [s for s in status.timeline if s.name.startswith("validate ")]
    for number, stage in enumerate(validations, start=1):
        if stage.outcome != "running":
            ended += await _read_once(client, pipeline_id(status.id, f"pr-{number}"), done)
    integrations = [s for s in status.timeline if s.name.startswith("integrate ")]
    if integrations and integrations[-1].outcome != "running":
        ended += await _read_once(client, pipeline_id(status.id, "ci"), done)
    if status.artifact is not None:
        commit = status.artifact.commit
        for result in status.rollouts:
            workflow_id = rollout_id(status.app, result.environment, commit)
            ended += await _read_once(client, workflow_id, done, result.environment)
    return ended


async def _read_once(
    client: Client, workflow_id: str, done: set[str], environment: str | None = None
) -> list[tuple[str, list[Stage]]]:
    """The timeline `workflow_id` (a pipeline, or a rollout into `environment`) published, the
    first time only."""
    if workflow_id in done:
        return []
    done.add(workflow_id)
    if environment is None:
        pipeline = await changes.read_status(client, workflow_id, PipelineStatus)
        return [("pipeline", pipeline.timeline)] if pipeline else []
    rollout = await changes.read_status(client, workflow_id, RolloutStatus)
    return [(environment, rollout.timeline)] if rollout else []


class WaitTimedOut(BatonError):
    """`baton changes wait` gave up: the change did not get there within --timeout."""


class Until(BaseModel):
    """What `baton changes wait` waits for: `completed`, or `deployed:ENV`."""

    environment: str | None = None

    @classmethod
    def parse(cls, text: str) -> Until:
        kind, _, environment = text.partition(":")
        if text == "completed":
            return cls()
        if kind == "deployed" and environment:
            return cls(environment=environment)
        raise BadRequest(f"--until {text!r}: give deployed:ENV (e.g. deployed:prod) or completed")

    def check(self, status: ChangeStatus) -> None:
        """Raise EnvironmentNotFound when the change is not promoted to the awaited environment."""
        known = status.environments
        if self.environment is not None and known and self.environment not in known:
            raise changes.EnvironmentNotFound(status.id, self.environment, known)

    def reached(self, status: ChangeStatus) -> bool:
        if self.environment is None:
            return status.state == "completed"
        return any(
            r.environment == self.environment and r.outcome == "deployed" for r in status.rollouts
        )

    def __str__(self) -> str:
        return f"deployed:{self.environment}" if self.environment else "completed"
