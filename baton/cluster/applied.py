"""The `Cluster` adapter for Kubernetes environments without Flux (`sync.kind: apply`).

Baton applies each GitOps merge itself: the `apply_manifests` activity server-side applies the
app's manifests at the merge commit (field manager "baton"), deletes what an earlier revision
applied and the new one no longer holds, and records what it applied in an inventory ConfigMap,
`baton-inventory-<app>` in the environment's namespace: the revision and the objects, as entries
in Flux's inventory format. The sync status is that inventory plus the rollout of its Deployments,
so the sync gate, its exact-revision predicate and the rollback saga work as they do with Flux.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from kubernetes import client
from pydantic import BaseModel, ValidationError

from baton.cluster.base import SyncStatus
from baton.cluster.kubernetes import (
    FIELD_MANAGER,
    REQUEST_TIMEOUT_S,
    KubernetesAPI,
    KubernetesError,
    ObjectNotFound,
    ObjectRef,
    inventory,
)
from baton.config import EnvironmentConfig

INVENTORY_PREFIX = "baton-inventory-"


class InventoryUnreadable(KubernetesError):
    """The inventory ConfigMap exists but does not hold an inventory."""

    retryable = False


class Inventory(BaseModel):
    """What Baton last applied for one app in one environment."""

    revision: str
    entries: list[dict[str, str]] = []
    applied_at: datetime

    @property
    def objects(self) -> list[ObjectRef]:
        return inventory(self.entries)


class Applied(BaseModel):
    """The outcome of applying one revision."""

    revision: str
    applied: list[str] = []
    pruned: list[str] = []
    superseded_by: str | None = None

    def describe(self) -> str:
        if self.superseded_by:
            return f"skipped: the cluster runs {self.superseded_by[:12]}, a later revision"
        pruned = f", pruned {len(self.pruned)}" if self.pruned else ""
        return f"applied {len(self.applied)} object(s){pruned} at {self.revision[:12]}"


def inventory_name(app: str) -> str:
    return f"{INVENTORY_PREFIX}{app}"


class AppliedCluster(KubernetesAPI):
    """Kubernetes without Flux: Baton applies, prunes and keeps the inventory."""

    # The Cluster protocol

    def sync_status(self, environment: EnvironmentConfig, app: str) -> SyncStatus | None:
        """The revision Baton last applied, Ready once its Deployments rolled out; None before
        the first apply."""
        observed_at = datetime.now(UTC)
        applied = self.inventory(environment, app)
        if applied is None:
            return None
        status = SyncStatus(
            last_applied_revision=applied.revision,
            last_attempted_revision=applied.revision,
            ready=True,
            ready_reason="Applied",
            ready_message=f"applied {len(applied.entries)} object(s) at {applied.revision}",
            observed_generation=1,
            observed_at=observed_at,
        )
        if not environment.sync.rollout_health:
            return status
        return self.with_rollouts(status, applied.objects)

    def request_reconcile(self, environment: EnvironmentConfig, app: str) -> None:
        """Nothing to request: the cluster changes only when Baton applies a merge."""

    # Applying

    def apply_revision(
        self,
        environment: EnvironmentConfig,
        app: str,
        manifests: str,
        revision: str,
        descends: Callable[[str], bool],
    ) -> Applied:
        """Apply `manifests` (the app's manifests at `revision`), prune, record the inventory.

        Idempotent, and never backwards: when the inventory holds a later revision (one for
        which `descends` is true), nothing is applied. The inventory is written last, so an
        apply interrupted midway is completed, and its prune computed again, by the next try.
        """
        previous = self.inventory(environment, app)
        if previous and previous.revision != revision and descends(previous.revision):
            return Applied(revision=revision, superseded_by=previous.revision)
        objects = self.apply(manifests, environment.namespace)
        keep = {ref.id for ref in objects}
        gone = [ref for ref in (previous.objects if previous else []) if ref.id not in keep]
        pruned = [str(ref) for ref in reversed(gone) if self.delete(ref)]
        self._record(environment, app, revision, objects)
        return Applied(revision=revision, applied=[str(ref) for ref in objects], pruned=pruned)

    def inventory(self, environment: EnvironmentConfig, app: str) -> Inventory | None:
        """The inventory of `app` in `environment`, or None before Baton first applied it."""
        core = client.CoreV1Api(self.api)
        name, namespace = inventory_name(app), environment.namespace
        try:
            config_map = self._call(
                f"ConfigMap {namespace}/{name}",
                lambda: core.read_namespaced_config_map(
                    name, namespace, _request_timeout=REQUEST_TIMEOUT_S
                ),
                "Baton writes it at the first apply",
            )
        except ObjectNotFound:
            return None
        data = config_map.data or {}
        try:
            # Validated as read: the ConfigMap may have been edited by hand.
            return Inventory.model_validate(
                {
                    "revision": data.get("revision", ""),
                    "entries": json.loads(data.get("entries") or "[]"),
                    "applied_at": data.get("appliedAt", ""),
                }
            )
        except (ValueError, ValidationError):
            raise InventoryUnreadable(
                f"ConfigMap {namespace}/{name} is not a Baton inventory: delete it and promote "
                "the app again, or fix its data (revision, entries, appliedAt)"
            ) from None

    def _record(
        self, environment: EnvironmentConfig, app: str, revision: str, objects: list[ObjectRef]
    ) -> None:
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": inventory_name(app),
                "namespace": environment.namespace,
                "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
            },
            "data": {
                "revision": revision,
                "entries": json.dumps([ref.entry() for ref in objects]),
                "appliedAt": datetime.now(UTC).isoformat(),
            },
        }
        self.apply(json.dumps(config_map), environment.namespace)
