"""The `Cluster` adapter for the local cluster runtime (`python -m baton.local.cluster`).

The runtime and this adapter share a directory, `<home>/cluster/`:

    status/<env>/<app>.json    the latest SyncStatus of each app in each environment
    reconcile/<env>/<app>      present while a reconcile request waits for the runtime
    state.json                 the runtime's own memory (Kustomization spec generations)
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from baton.cluster.base import SyncStatus
from baton.config import EnvironmentConfig
from baton.errors import ClusterError


class StatusUnreadable(ClusterError):
    """A status file exists but does not hold a SyncStatus."""


class LocalClusterStatus:
    """Reads the statuses the local cluster runtime writes, and files reconcile requests for it."""

    def __init__(self, home: Path) -> None:
        self.root = Path(home) / "cluster"

    def status_path(self, env: str, app: str) -> Path:
        return self.root / "status" / env / f"{app}.json"

    def reconcile_path(self, env: str, app: str) -> Path:
        return self.root / "reconcile" / env / app

    def sync_status(self, environment: EnvironmentConfig, app: str) -> SyncStatus | None:
        """The status last written for `app` in `environment`, or None before its first reconcile."""
        return self.read(environment.name, app)

    def request_reconcile(self, environment: EnvironmentConfig, app: str) -> None:
        """Leave a request the runtime picks up at its next poll (well under a second)."""
        path = self.reconcile_path(environment.name, app)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(datetime.now(UTC).isoformat())

    def read(self, env: str, app: str) -> SyncStatus | None:
        path = self.status_path(env, app)
        try:
            return SyncStatus.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError as exc:
            raise StatusUnreadable(
                f"{path} is not a sync status ({exc.error_count()} problem(s)): "
                "delete it and the local cluster runtime writes a fresh one"
            ) from None

    def write(self, env: str, app: str, status: SyncStatus) -> None:
        """Replace the status file atomically: readers see the old status or the new, never half."""
        path = self.status_path(env, app)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.write(status.model_dump_json(indent=2))
        os.replace(tmp, path)
