"""Replay recorded histories of every workflow type: a change that breaks replay cannot land unnoticed.

The histories come from a real demo change (`python -m tests.workflows.record_histories`). When a
workflow's command sequence changes on purpose, gate it with `workflow.patched` for running
changes, or re-record if none can be running. Each history replays in Temporal's default sandbox
and on the workers' own runner, which runs workflows outside the sandbox
(`workers.main.WORKFLOW_RUNNER`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from workers.main import WORKFLOW_RUNNER
from workflows import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_workflow_type_has_a_recorded_history() -> None:
    recorded = set()
    for path in HISTORIES:
        events = json.loads(path.read_text())["history"]["events"]
        recorded.add(events[0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])
    assert recorded == {w.__name__ for w in WORKFLOWS}


RUNNERS = {"sandbox": SandboxedWorkflowRunner(), "workers": WORKFLOW_RUNNER}


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path, runner: str) -> None:
    recorded = json.loads(path.read_text())
    history = WorkflowHistory.from_json(recorded["workflow_id"], recorded["history"])
    workflow_runner: WorkflowRunner = RUNNERS[runner]
    replayer = Replayer(
        workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=workflow_runner
    )
    await replayer.replay_workflow(history)
