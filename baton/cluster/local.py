"""The `Cluster` adapter for the local cluster runtime (`python -m baton.local.cluster`).

The runtime and this adapter share a directory, `<home>/cluster/`:

    status/<place>/<app>.json    the latest SyncStatus of each app in each place
    reconcile/<place>/<app>      present while a reconcile request waits for the runtime
    state.json                   the runtime's own memory (Kustomization spec generations)

A place is one local cluster: `<env>` for an environment of one cluster, `<env>.<cluster>` for
each cluster an environment names in `environments[].clusters` (names hold no dots).
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from baton.cluster.base import SyncStatus
from baton.config import BatonConfig, EnvironmentConfig
from baton.errors import ClusterError


class StatusUnreadable(ClusterError):
    """A status file exists but does not hold a SyncStatus."""


def place(environment: EnvironmentConfig, named: bool) -> str:
    """The local cluster `environment` (as one of its clusters sees it) runs in: `<env>`, or
    `<env>.<cluster>` when the environment names its clusters (`named`)."""
    return f"{environment.name}.{environment.cluster}" if named else environment.name


class LocalClusterStatus:
    """Reads the statuses the local cluster runtime writes, and files reconcile requests for it.

    `config` tells which environments name their clusters (each then has a place of its own);
    without it every environment is one place."""

    def __init__(self, home: Path, config: BatonConfig | None = None) -> None:
        self.root = Path(home) / "cluster"
        self.named = {e.name for e in config.environments if e.clusters} if config else set()

    def place(self, environment: EnvironmentConfig) -> str:
        return place(environment, environment.name in self.named)

    def status_path(self, place: str, app: str) -> Path:
        return self.root / "status" / place / f"{app}.json"

    def reconcile_path(self, place: str, app: str) -> Path:
        return self.root / "reconcile" / place / app

    def sync_status(self, environment: EnvironmentConfig, app: str) -> SyncStatus | None:
        """The status last written for `app` in `environment`'s cluster, or None before its
        first reconcile."""
        return self.read(self.place(environment), app)

    def request_reconcile(self, environment: EnvironmentConfig, app: str) -> None:
        """Leave a request the runtime picks up at its next poll (well under a second)."""
        path = self.reconcile_path(self.place(environment), app)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(datetime.now(UTC).isoformat())

    def read(self, place: str, app: str) -> SyncStatus | None:
        path = self.status_path(place, app)
        try:
            return SyncStatus.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError as exc:
            raise StatusUnreadable(
                f"{path} is not a sync status ({exc.error_count()} problem(s)): "
                "delete it and the local cluster runtime writes a fresh one"
            ) from None

    def write(self, place: str, app: str, status: SyncStatus) -> None:
        """Replace the status file atomically: readers see the old status or the new, never half."""
        path = self.status_path(place, app)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.write(status.model_dump_json(indent=2))
        os.replace(tmp, path)
