"""What Baton reads from a cluster: the sync status of one app in one environment, Flux-style.

`Cluster` implementations: `baton.cluster.local.LocalClusterStatus` (the embedded runtime in
`baton.local.cluster`) and, on Kubernetes, one that reads Flux Kustomization objects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import BaseModel

from baton.config import EnvironmentConfig


class SyncStatus(BaseModel):
    """The parts of a Flux Kustomization's status Baton decides on; revisions are commit shas.

    `observed_at` is when this status was written (local runtime) or read (Kubernetes): a status
    observed before the GitOps merge says nothing about the merged commit.
    """

    last_applied_revision: str | None = None
    last_attempted_revision: str | None = None
    ready: bool | None = None
    ready_reason: str | None = None
    ready_message: str | None = None
    stalled: bool = False
    generation: int = 1
    observed_generation: int = 0
    observed_at: datetime

    def applied(self, sha: str) -> bool:
        """`sha` is applied and healthy under the current spec (ancestry is the caller's concern)."""
        return (
            self.last_applied_revision == sha
            and self.ready is True
            and self.observed_generation == self.generation
        )

    def failed(self, sha: str) -> bool:
        """Applying `sha` was attempted and failed, or the Kustomization is stalled."""
        return self.stalled or (self.last_attempted_revision == sha and self.ready is False)


class Cluster(Protocol):
    def sync_status(self, environment: EnvironmentConfig, app: str) -> SyncStatus | None:
        """The current status of `app` in `environment`, or None if it was never reconciled."""
        ...

    def request_reconcile(self, environment: EnvironmentConfig, app: str) -> None:
        """Ask for a reconciliation now instead of at the next poll interval."""
        ...


def kustomization_name(environment: EnvironmentConfig, app: str) -> str:
    """The Flux Kustomization that syncs `app` in `environment`: configured (`{app}` and `{env}`
    filled in), else `<app>-<env>`."""
    template = environment.sync.kustomization or "{app}-{env}"
    return template.format(app=app, env=environment.name)
