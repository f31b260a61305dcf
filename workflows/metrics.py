"""Baton's series recorded by workflows: changes by state, rollouts by outcome, time at each gate.

They go through `workflow.metric_meter()`, which records nothing while a worker replays a history,
so a workflow that a worker picks up again after a restart does not count twice; recording adds no
command to the history, so no `workflow.patched` gate is needed. The worker's Temporal runtime
serves them with its own metrics (`baton.telemetry.worker_runtime`), with the labels the SDK adds
(`namespace`, `task_queue`, `workflow_type`). Labels are names from the config, never secrets.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from baton.models import Gate


def change_state(app: str, state: str) -> None:
    """A change of `app` entered `state` (`baton_changes_total{app, state}`)."""
    workflow.metric_meter().create_counter(
        "baton_changes", "Changes that entered each state (ChangeState)"
    ).add(1, {"app": app, "state": state})


def rollout_ended(app: str, environment: str, outcome: str) -> None:
    """A rollout ended (`baton_rollouts_total{app, environment, outcome}`)."""
    workflow.metric_meter().create_counter(
        "baton_rollouts", "Rollouts that ended, by outcome (RolloutOutcome)"
    ).add(1, {"app": app, "environment": environment, "outcome": outcome})


def gate_passed(gate: Gate, since: datetime) -> None:
    """A workflow stopped waiting at `gate`, entered at `since` (`baton_gate_seconds{kind,
    environment}`, a histogram in seconds; `environment` is empty for a change's merge gate)."""
    seconds = (workflow.now() - since).total_seconds()
    workflow.metric_meter().create_histogram_float(
        "baton_gate_seconds", "Seconds spent waiting at a gate, by gate kind", "s"
    ).record(seconds, {"kind": gate.kind, "environment": gate.environment or ""})
