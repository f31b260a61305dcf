"""Sync detection: does an environment run the merge commit M (or a descendant), for real?

The rules of ARCHITECTURE.md "Sync detection": applied revision is M or a descendant, Ready=True,
observedGeneration == generation, and the status was observed after the merge (a status from
before M, even Ready, never passes). Failed when the attempted revision is M or a descendant and
Ready=False, or when Stalled.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from baton.cluster.base import SyncStatus


class Judgement(BaseModel):
    verdict: Literal["synced", "failed", "waiting"]
    revision: str | None = None
    reason: str = ""


def judge(
    status: SyncStatus | None,
    merged_revision: str,
    merged_at: datetime,
    descends: Callable[[str], bool],
) -> Judgement:
    """Judge one observed status; `descends(sha)`: is sha `merged_revision` or a descendant of it?"""
    if status is None:
        return Judgement(verdict="waiting", reason="no sync status yet")
    if status.observed_at is not None and status.observed_at < merged_at:
        return Judgement(verdict="waiting", reason="status predates the merge")
    attempted = status.last_attempted_revision
    if status.stalled:
        return Judgement(
            verdict="failed", revision=attempted, reason=f"Stalled: {status.ready_message or ''}"
        )
    if attempted and status.ready is False and descends(attempted):
        return Judgement(
            verdict="failed",
            revision=attempted,
            reason=": ".join(filter(None, [status.ready_reason, status.ready_message])),
        )
    applied = status.last_applied_revision
    if not applied or not descends(applied):
        return Judgement(
            verdict="waiting", reason=f"applied revision is {(applied or 'none')[:12]}"
        )
    if status.ready is not True:
        why = f": {status.ready_message}" if status.ready_message else ""
        return Judgement(verdict="waiting", revision=applied, reason=f"not Ready yet{why}")
    if status.generation is not None and status.observed_generation != status.generation:
        return Judgement(verdict="waiting", revision=applied, reason="generation not observed yet")
    return Judgement(verdict="synced", revision=applied, reason=status.ready_reason or "Ready")
