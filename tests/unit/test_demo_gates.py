"""`baton demo` asks for (or gives) every approval a change waits on, not only its first
rollout's: a parallel stage waits at several gates at once."""

from __future__ import annotations

from datetime import UTC, datetime

from baton.changes import ChangeDetail
from baton.config import parse_config
from baton.models import Gate, RolloutStatus
from baton.settings import Settings
from cli.demo import EXAMPLES, Demo, gates_of
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

    assert [g.environment for g in gates_of(detail, "approval")] == ["staging-a", "staging-b"]
    assert [g.environment for g in gates_of(detail, "freeze")] == []


def test_a_frozen_environment_is_said_once_with_how_to_break_the_glass(tmp_path) -> None:
    said: list[str] = []
    config = parse_config(EXAMPLES.joinpath("baton.yaml").read_text())
    settings = Settings(home=tmp_path, api_port=8390)
    demo = Demo(None, config, settings, None, auto_approve=False, say=said.append)  # type: ignore[arg-type]
    prompted: set[str] = set()

    demo._freeze("change/web/7", "staging", prompted)
    demo._freeze("change/web/7", "staging", prompted)

    board = "http://127.0.0.1:8390/board/changes/web/7"
    command = "baton override-freeze change/web/7 --env staging --reason '...'"
    assert len(said) == 2  # once, however often the demo sees the gate
    assert (
        said[0]
        == f"  staging is frozen: to go ahead now, break the glass on the board, {board}, or"
    )
    assert said[1].endswith(f"--expires 1d -q) {command}")
