"""Holds: an operator stops automatic promotion into an environment (`baton hold ENV [--app APP]
--reason ...`) until it is lifted (`baton unhold`).

Each environment keeps its holds in a long-running workflow (`hold/<env>`, `EnvironmentHolds`),
so they are durable and every API process sees the same ones. A change about to roll out into an
environment asks it first and waits, with a `hold` gate naming the reason and who placed it,
while a hold covers its app. A deliberate `baton promote` is no automatic promotion: holds do not
stop it. Models and the pure rule here; the workflow in `workflows.hold`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Hold(BaseModel):
    """One hold on an environment: for one app, or for every app (`app` None)."""

    environment: str
    app: str | None = None
    reason: str
    by: str = Field(description="who placed it (the API caller's user)")
    at: datetime | None = None

    @property
    def scope(self) -> str:
        return f"{self.environment} for {self.app}" if self.app else self.environment


class HoldRequest(BaseModel):
    """Place (or replace) the hold on `environment` for `app` (None: every app)."""

    environment: str
    app: str | None = None
    reason: str
    by: str


class UnholdRequest(BaseModel):
    """Lift the hold on `environment` for `app` (None: the one for every app)."""

    environment: str
    app: str | None = None
    by: str


class HoldWatch(BaseModel):
    """A change about to roll out into the environment: told when no hold covers its app."""

    change_id: str
    app: str
    environment: str


class HoldUpdate(BaseModel):
    """The environment's answer to a watching change, by signal: the hold that stops it, or
    None: it may go on."""

    environment: str
    hold: Hold | None = None


class HoldState(BaseModel):
    """Everything an environment's holds workflow knows; carried over when it continues as new."""

    environment: str
    holds: list[Hold] = []
    watching: list[HoldWatch] = Field(default=[], description="changes stopped by a hold")
    rounds_per_run: int = Field(default=500, description="continue as new after this many")


def covering(holds: list[Hold], app: str) -> Hold | None:
    """The hold that stops `app`: its own, else the one on every app, else None."""
    own = next((h for h in holds if h.app == app), None)
    return own or next((h for h in holds if h.app is None), None)


def not_held(request: UnholdRequest, holds: list[Hold]) -> str:
    """Why an unhold is refused: no hold of that scope, and what is on hold instead."""
    scope = f"{request.environment} for {request.app}" if request.app else request.environment
    held = ", ".join(h.scope for h in holds) or "nothing"
    return f"{scope} is not on hold (on hold: {held}); `baton holds` lists the holds"
