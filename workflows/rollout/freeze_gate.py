"""FreezeGate: holds a rollout while its environment is frozen."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from baton import freeze, policy
    from baton.errors import NotFrozen
    from baton.models import Decision, Gate, RolloutInput
    from baton.temporal import Updates

from workflows.record import Record


class FreezeGate:
    """Waits durably for a freeze window's end, or for a break-glass override of that freeze.

    An override lets the rollout through the freeze it was given for, not a later one: a freeze
    that begins while approvals come in holds the rollout again.
    """

    def __init__(self, input: RolloutInput, record: Record) -> None:
        self.environment = input.environment
        self.author = input.author
        self.authors = input.authors
        self.record = record
        self.override: Decision | None = None
        self.covers: datetime | None = None  # the end of the freeze the override was given for

    def check_override(self, override: Decision) -> None:
        """The update validator's check: only while frozen, with a reason, by an approver."""
        env = self.environment
        gate = self.record.gate
        if gate is None or gate.kind != "freeze":
            raise NotFrozen(f"{env.name} is not frozen for this rollout: nothing to override")
        if not override.comment.strip():
            raise policy.PolicyViolation("a freeze override needs a reason (--reason)")
        policy.check_decider(
            env.approvals,
            env.name,
            self.author,
            override.user,
            "override the freeze of",
            groups=override.groups,
            forge_users=override.forge_users,
            authors=self.authors,
        )

    def grant(self, override: Decision) -> str:
        """Break glass: let the rollout through the current freeze; recorded with the reason."""
        self.override = override.model_copy(update={"at": workflow.now()})
        self.covers = self.record.gate.deadline if self.record.gate else None
        return f"{override.user} overrode the freeze of {self.environment.name}"

    async def wait(self, superseded_by: Callable[[], str | None]) -> None:
        """Return once the environment is not frozen, the freeze is overridden, or a newer change
        superseded the rollout; a `freeze` stage says which when the rollout had to wait."""
        env = self.environment
        stage, overridden = None, False
        while superseded_by() is None:
            frozen = freeze.active(env.freeze, workflow.now())
            if frozen is None:
                break
            if self._overrides(frozen.until):
                overridden = True
                break
            stage = stage or self.record.begin("freeze")
            self.record.set_gate(
                Gate(
                    kind="freeze",
                    environment=env.name,
                    description=f"{env.name} is frozen ({frozen.name}) until "
                    f"{frozen.until:%Y-%m-%d %H:%M} UTC",
                    waiting_on=["the end of the freeze", "or a break-glass override"],
                    deadline=frozen.until,
                )
            )
            wait = max(frozen.until - workflow.now(), timedelta(seconds=1))
            try:
                await workflow.wait_condition(
                    partial(self._lifted, frozen.until, superseded_by), timeout=wait
                )
            except TimeoutError:
                pass
        if stage is None:
            return
        self.record.clear_gate()
        newer = superseded_by()
        if newer is not None:
            self.record.end(stage, "superseded", f"superseded by {newer}")
        elif overridden and self.override is not None:
            override = self.override
            self.record.end(
                stage, "succeeded", f"overridden by {override.user}: {override.comment}"
            )
        else:
            self.record.end(stage, "succeeded", "the freeze ended")

    def _overrides(self, until: datetime) -> bool:
        """Whether the override covers the freeze that lasts until `until`."""
        return self.covers is not None and until <= self.covers

    def _lifted(self, until: datetime, superseded_by: Callable[[], str | None]) -> bool:
        return self._overrides(until) or superseded_by() is not None


class FreezeOverride:
    """The break-glass Update of a workflow that holds its rollout at `freeze_gate`."""

    freeze_gate: FreezeGate

    @workflow.update(name=Updates.OVERRIDE_FREEZE)
    def override_freeze(self, override: Decision) -> str:
        """Break glass: roll out although the environment is frozen; recorded with the reason."""
        return self.freeze_gate.grant(override)

    @override_freeze.validator
    def _check_override(self, override: Decision) -> None:
        self.freeze_gate.check_override(override)
