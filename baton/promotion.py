"""The promotion graph: which environments a change rolls out to, and after which others.

`promotion` in the configuration is a list of stages; a stage is one environment or a list of
environments rolled out at the same time: `[dev, [staging-a, staging-b], prod]`. An environment
starts once every environment of the stage before it is deployed; a failure stops what depends on
it (the later stages) and nothing else, so a parallel sibling still finishes. Pure rules: no I/O,
no Temporal, used by the config check, the change workflow and `changes show`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

from pydantic import BaseModel, Field

Position = Literal[
    "waiting",
    "held",
    "running",
    "deployed",
    "failed",
    "blocked",
    "superseded",
    "aborted",
    "rejected",
]
"""Where one environment of a change stands: `waiting` for its predecessors, `held` (an operator
stopped promotion into it: `baton hold`), `running` (its lane, then its rollout), then the
rollout's outcome, or `blocked` because a predecessor did not deploy (it never starts)."""

# What a rollout outcome means for the environment's position (outcomes are `RolloutOutcome`).
OUTCOME_POSITION: dict[str, Position] = {
    "deployed": "deployed",
    "superseded": "superseded",
    "aborted": "aborted",
    "rejected": "rejected",
}

MARK: dict[Position, str] = dict(zip(get_args(Position), "·⏸▶✓✗⊘↷■✗", strict=True))
"""How each position reads in the one-line graph (`describe`)."""


class EnvironmentStep(BaseModel):
    """One environment of a change's promotion graph and where the change stands there."""

    environment: str
    stage: int = Field(description="the stage's index in `promotion`, from 0")
    after: list[str] = Field(default=[], description="the environments it waits for")
    position: Position = "waiting"
    detail: str = ""


def stages_of(promotion: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """`promotion` as stages, each a list of environment names (`dev` → `[dev]`)."""
    return [[entry] if isinstance(entry, str) else list(entry) for entry in promotion]


def problems(promotion: Sequence[str | Sequence[str]], known: Sequence[str]) -> list[str]:
    """What is wrong with `promotion` given the `known` environment names, one line each with
    its field path (`promotion[1][0]: ...`); empty when it is valid."""
    found: list[str] = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(promotion):
        names = [(f"promotion[{i}]", entry)] if isinstance(entry, str) else []
        if not isinstance(entry, str):
            if not entry:
                found.append(f"promotion[{i}]: an empty stage: name its environments or drop it")
            names = [(f"promotion[{i}][{j}]", name) for j, name in enumerate(entry)]
        for path, name in names:
            if name not in known:
                found.append(
                    f"{path}: unknown environment {name!r}: define it under environments "
                    f"({', '.join(known) or 'none defined'})"
                )
            elif name in seen:
                found.append(
                    f"{path}: environment {name!r} is promoted to twice (also {seen[name]}): "
                    "list it once"
                )
            else:
                seen[name] = path
    return found


class PromotionGraph:
    """Stages of environments; each environment depends on every environment of the stage before."""

    def __init__(self, stages: Sequence[Sequence[str]]) -> None:
        self.stages = [list(stage) for stage in stages if stage]
        self.stage_of = {env: i for i, stage in enumerate(self.stages) for env in stage}

    @property
    def environments(self) -> list[str]:
        """Every environment, stage by stage."""
        return [env for stage in self.stages for env in stage]

    def after(self, env: str) -> list[str]:
        """The environments `env` waits for: the whole stage before its own."""
        i = self.stage_of[env]
        return list(self.stages[i - 1]) if i else []

    def ready(self, positions: Mapping[str, Position]) -> list[str]:
        """Environments that may start now: still waiting, every predecessor deployed."""
        return [
            env
            for env in self.environments
            if positions.get(env, "waiting") == "waiting"
            and all(positions.get(p) == "deployed" for p in self.after(env))
        ]

    def blocked(self, positions: Mapping[str, Position]) -> list[str]:
        """Waiting environments that can never start: a predecessor ended without deploying
        (or is blocked itself)."""
        ended = {"failed", "superseded", "aborted", "rejected", "blocked"}
        found: list[str] = []
        for env in self.environments:
            if positions.get(env, "waiting") != "waiting":
                continue
            if any(positions.get(p) in ended or p in found for p in self.after(env)):
                found.append(env)
        return found

    def steps(
        self, positions: Mapping[str, Position], details: Mapping[str, str] | None = None
    ) -> list[EnvironmentStep]:
        """The graph with each environment's position, as `changes show` and the API show it."""
        details = details or {}
        return [
            EnvironmentStep(
                environment=env,
                stage=self.stage_of[env],
                after=self.after(env),
                position=positions.get(env, "waiting"),
                detail=details.get(env, ""),
            )
            for env in self.environments
        ]


def describe(steps: Sequence[EnvironmentStep]) -> str:
    """One line for the graph: `dev ✓ → [staging-a ✓ | staging-b ✗] → prod ⊘`."""
    stages: dict[int, list[str]] = {}
    for step in steps:
        stages.setdefault(step.stage, []).append(f"{step.environment} {MARK[step.position]}")
    parts = [names[0] if len(names) == 1 else f"[{' | '.join(names)}]" for names in stages.values()]
    return " → ".join(parts)
