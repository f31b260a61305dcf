"""`baton demo` asks for (or gives) every approval a change waits on, not only its first
rollout's: a parallel stage waits at several gates at once."""

from __future__ import annotations

from datetime import UTC, datetime

from baton.changes import ChangeDetail
from baton.models import Gate, RolloutStatus
from cli.demo import approval_gates
from tests.fakes.records import fake_change

AT = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def at(environment: str, kind: str) -> RolloutStatus:
    gate = Gate(kind=kind, environment=environment, description=f"{kind} for {environment}")
    return RolloutStatus(name=kind, started_at=AT, environment=environment, gate=gate)


def test_each_rollout_of_a_parallel_stage_at_its_approval_gate_is_asked_for() -> None:
    change = fake_change("web", 7, environments=["staging-a", "staging-b", "staging-c"])
    detail = ChangeDetail(
        change=change,
        running_rollouts=[
            at("staging-a", "approval"),
            at("staging-b", "approval"),
            at("staging-c", "sync"),
        ],
    )

    assert [g.environment for g in approval_gates(detail)] == ["staging-a", "staging-b"]
