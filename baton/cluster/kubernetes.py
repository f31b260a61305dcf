"""The `Cluster` adapter for Kubernetes environments reconciled by Flux, on the official client.

- `sync_status`: the app's Kustomization (kustomize.toolkit.fluxcd.io/v1) and its GitRepository
  (source.toolkit.fluxcd.io/v1), as a SyncStatus for `baton.sync.judge`;
- `request_reconcile`: `reconcile.fluxcd.io/requestedAt` on the GitRepository, then on the
  Kustomization (what `flux reconcile kustomization --with-source` does), so a merge is applied
  now rather than at Flux's next interval;
- `rollout_status`: a Deployment's rollout by the `kubectl rollout status` rules;
- `apply`: server-side apply of manifests, for environments without Flux.

Sources: Flux's API reference for Kustomization and GitRepository (fluxcd.io/flux/components/),
the Kubernetes API reference and `kubectl rollout status` (kubernetes.io/docs/reference/).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple, Self, TypeVar, cast

import urllib3
import yaml
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from baton.cluster.base import SyncStatus, kustomization_name
from baton.config import EnvironmentConfig
from baton.errors import ClusterError
from baton.flux import parse_revision

KUSTOMIZATIONS = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
GITREPOSITORIES = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
RECONCILE_ANNOTATION = "reconcile.fluxcd.io/requestedAt"
FIELD_MANAGER = "baton"
REQUEST_TIMEOUT_S = 10.0
CONFLICT_ATTEMPTS = 5
HANDLED_POLL_S = 0.1
# Applied before everything else, in this order: what other objects live in or are instances of.
APPLY_FIRST = {"Namespace": 0, "CustomResourceDefinition": 1}

T = TypeVar("T")
Object = Mapping[str, Any]


class KubernetesError(ClusterError):
    """A Kubernetes API request failed; the message names the object and what to check."""


class KubeconfigError(KubernetesError):
    """The kubeconfig (or in-cluster credentials) cannot be loaded."""

    retryable = False


class ClusterUnreachable(KubernetesError):
    """No answer from the API server."""


class ClusterUnauthorized(KubernetesError):
    """The API server rejected the credentials (401)."""

    retryable = False


class ClusterForbidden(KubernetesError):
    """The credentials lack a permission (403)."""

    retryable = False


class ObjectNotFound(KubernetesError):
    """The object does not exist (404)."""

    retryable = False


class Conflict(KubernetesError):
    """The object changed since it was read (409)."""


class Invalid(KubernetesError):
    """The API server refused a request as malformed or invalid (400, 422)."""

    retryable = False


class ApplyFailed(KubernetesError):
    """Manifests could not be applied."""

    retryable = False


class RolloutFailed(KubernetesError):
    """A Deployment's rollout exceeded its progress deadline."""

    retryable = False


class DeploymentRollout(NamedTuple):
    done: bool
    reason: str


class ObjectRef(NamedTuple):
    """One object, as Flux's inventory entries name it: id `<namespace>_<name>_<group>_<kind>`
    (namespace and group empty for cluster-scoped and core objects) and version `v`."""

    namespace: str
    name: str
    group: str
    kind: str
    version: str

    @property
    def id(self) -> str:
        return f"{self.namespace}_{self.name}_{self.group}_{self.kind}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @classmethod
    def from_entry(cls, entry: Object) -> ObjectRef | None:
        """An inventory entry `{"id": ..., "v": ...}`; None when it is not one."""
        parts = str(entry.get("id", "")).split("_")
        if len(parts) != 4 or not parts[1] or not parts[3]:
            return None
        namespace, name, group, kind = parts
        return cls(namespace, name, group, kind, version=str(entry.get("v") or "v1"))

    def entry(self) -> dict[str, str]:
        return {"id": self.id, "v": self.version}

    def __str__(self) -> str:
        return (
            f"{self.kind}/{self.namespace}/{self.name}"
            if self.namespace
            else f"{self.kind}/{self.name}"
        )


def inventory(objects: Iterable[Object]) -> list[ObjectRef]:
    """The objects of inventory entries, skipping any that are not well formed."""
    return [ref for ref in map(ObjectRef.from_entry, objects) if ref is not None]


def _condition(obj: Object, type_: str) -> Object | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), None)


def _is_true(obj: Object, type_: str) -> bool:
    return (_condition(obj, type_) or {}).get("status") == "True"


def _name(obj: Object) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def sync_status_from(
    kustomization: Object, source: Object | None, observed_at: datetime
) -> SyncStatus | None:
    """A Kustomization (and its GitRepository) as a SyncStatus; None before its first attempt.

    A stalled GitRepository stalls the sync too: Flux will not fetch a new revision until its
    spec changes, so waiting for one is pointless.
    """
    status = kustomization.get("status") or {}
    ready = _condition(kustomization, "Ready")
    if ready is None and not status.get("lastAttemptedRevision"):
        return None
    stalled = _condition(kustomization, "Stalled") if _is_true(kustomization, "Stalled") else None
    message = (ready or stalled or {}).get("message")
    if stalled is None and source is not None and _is_true(source, "Stalled"):
        cause = _condition(source, "Stalled") or {}
        stalled = cause
        message = f"GitRepository {_name(source)}: {cause.get('reason')}: {cause.get('message')}"
    return SyncStatus(
        last_applied_revision=parse_revision(status.get("lastAppliedRevision")),
        last_attempted_revision=parse_revision(status.get("lastAttemptedRevision")),
        ready={"True": True, "False": False}.get((ready or {}).get("status", "")),
        ready_reason=(ready or {}).get("reason"),
        ready_message=message,
        stalled=stalled is not None,
        generation=(kustomization.get("metadata") or {}).get("generation", 1),
        observed_generation=status.get("observedGeneration", 0),
        observed_at=observed_at,
    )


def deployment_rollout(deployment: Object) -> DeploymentRollout:
    """A Deployment's rollout by the rules (and in the words) of `kubectl rollout status`.

    Raises RolloutFailed when the Progressing condition says ProgressDeadlineExceeded.
    """
    meta, spec = deployment.get("metadata") or {}, deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = meta.get("name")
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return DeploymentRollout(False, "Waiting for deployment spec update to be observed...")
    progressing = _condition(deployment, "Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        raise RolloutFailed(
            f'deployment "{name}" exceeded its progress deadline: {progressing.get("message", "")}'
        )
    want = spec.get("replicas", 1)
    total, updated = status.get("replicas", 0), status.get("updatedReplicas", 0)
    available = status.get("availableReplicas", 0)
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if updated < want:
        return DeploymentRollout(
            False, f"{waiting}{updated} out of {want} new replicas have been updated..."
        )
    if total > updated:
        return DeploymentRollout(
            False, f"{waiting}{total - updated} old replicas are pending termination..."
        )
    if available < updated:
        return DeploymentRollout(
            False, f"{waiting}{available} of {updated} updated replicas are available..."
        )
    return DeploymentRollout(True, f'deployment "{name}" successfully rolled out')


def _artifact(source: Object) -> str | None:
    return ((source.get("status") or {}).get("artifact") or {}).get("revision")


def _hint(environment: EnvironmentConfig) -> str:
    field = f"environments.{environment.name}.sync"
    return f"check {field}.kustomization (default <app>-<environment>) and {field}.namespace"


def _requested_at() -> str:
    """A reconcile request value, RFC 3339 with nanoseconds like `flux reconcile` writes."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond * 1000:09d}Z"


class KubernetesAPI:
    """One Kubernetes API client (a kubeconfig context, or in-cluster) whose errors say what to
    fix: the plumbing under FluxCluster and AppliedCluster."""

    def __init__(self, api: client.ApiClient, where: str = "in-cluster") -> None:
        """`where` says which credentials `api` uses, for error messages."""
        self.api = api
        self.where = where
        self.custom = client.CustomObjectsApi(api)

    @classmethod
    def connect(cls, kubeconfig: Path | None = None, context: str | None = None) -> Self:
        """Credentials from `context` of `kubeconfig`; with neither set, the in-cluster service
        account inside a pod, else the default kubeconfig ($KUBECONFIG or ~/.kube/config)."""
        configuration = client.Configuration()
        in_cluster = (
            kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ
        )
        where = (
            "in-cluster"
            if in_cluster
            else (f"context {context or '(current)'} of {kubeconfig or 'the default kubeconfig'}")
        )
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=configuration)
            else:
                config.load_kube_config(
                    config_file=str(kubeconfig) if kubeconfig else None,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (config.ConfigException, OSError, yaml.YAMLError) as exc:
            raise KubeconfigError(
                f"cannot load Kubernetes credentials ({where}): {exc}: "
                "check environments[].sync.kubeconfig and sync.context"
            ) from None
        return cls(client.ApiClient(configuration), where)

    def rollout_status(self, namespace: str, deployment: str) -> DeploymentRollout:
        """Whether the Deployment finished rolling out, and why not; raises RolloutFailed."""
        apps = client.AppsV1Api(self.api)
        obj = self._call(
            f"Deployment {namespace}/{deployment}",
            lambda: apps.read_namespaced_deployment(
                deployment, namespace, _request_timeout=REQUEST_TIMEOUT_S
            ),
            "check the app's manifests and environments[].namespace",
        )
        return deployment_rollout(self.api.sanitize_for_serialization(obj))

    def apply(self, manifests: str, namespace: str) -> list[ObjectRef]:
        """Server-side apply every object in `manifests` as field manager "baton", taking over
        fields other managers own; namespaced objects without a namespace go to `namespace`.
        Namespaces and CRDs go first. Returns each object applied.

        Raises ApplyFailed for manifests no retry can apply (bad YAML, an unknown kind, an
        object the API server refuses as invalid or whose namespace does not exist)."""
        try:
            objects = [obj for obj in yaml.safe_load_all(manifests) if obj]
        except yaml.YAMLError as exc:
            raise ApplyFailed(f"the manifests are not valid YAML: {exc}") from None
        if not all(isinstance(obj, dict) for obj in objects):
            raise ApplyFailed("the manifests hold a YAML document that is not an object")
        objects.sort(key=lambda obj: APPLY_FIRST.get(obj.get("kind"), len(APPLY_FIRST)))
        return [self._apply_one(obj, namespace) for obj in objects]

    def delete(self, ref: ObjectRef) -> bool:
        """Delete one object; False when it was gone already."""
        resource = self._resource(ref.api_version, ref.kind, str(ref))
        try:
            self._call(
                f"{ref}",
                lambda: resource.delete(
                    name=ref.name,
                    namespace=ref.namespace or None,
                    _request_timeout=REQUEST_TIMEOUT_S,
                ),
                "it was deleted meanwhile",
            )
        except ObjectNotFound:
            return False
        return True

    def with_rollouts(self, status: SyncStatus, objects: list[ObjectRef]) -> SyncStatus:
        """`status` once the Deployments among `objects` are counted: Ready only when every one
        rolled out (the `kubectl rollout status` rules), failed past a progress deadline."""
        if status.ready is not True:
            return status
        for ref in objects:
            if (ref.group, ref.kind) != ("apps", "Deployment"):
                continue
            try:
                rollout = self.rollout_status(ref.namespace, ref.name)
            except RolloutFailed as exc:
                return status.model_copy(
                    update={
                        "ready": False,
                        "ready_reason": "ProgressDeadlineExceeded",
                        "ready_message": str(exc),
                        "last_attempted_revision": status.last_applied_revision,
                    }
                )
            except ObjectNotFound:
                rollout = DeploymentRollout(False, f"{ref} is not in the cluster yet")
            except ClusterForbidden as exc:
                raise ClusterForbidden(
                    f"{exc}, or set environments[].sync.rollout_health: false"
                ) from None
            if not rollout.done:
                return status.model_copy(
                    update={
                        "ready": None,
                        "ready_reason": "Progressing",
                        "ready_message": rollout.reason,
                    }
                )
        return status

    def _apply_one(self, obj: dict[str, Any], namespace: str) -> ObjectRef:
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        name = (obj.get("metadata") or {}).get("name")
        what = f"{kind}/{name}"
        if not (kind and api_version and name):
            raise ApplyFailed(f"{what}: every object needs apiVersion, kind and metadata.name")
        resource = self._resource(api_version, kind, what)
        target = (
            ((obj.get("metadata") or {}).get("namespace") or namespace)
            if resource.namespaced
            else None
        )
        try:
            self._call(
                f"{what} in {target}" if target else what,
                lambda: self._dynamic.server_side_apply(
                    resource,
                    body=obj,
                    namespace=target,
                    field_manager=FIELD_MANAGER,
                    force_conflicts=True,
                    _request_timeout=REQUEST_TIMEOUT_S,
                ),
                "check the manifest and that its namespace exists",
            )
        except (ObjectNotFound, Invalid) as exc:
            raise ApplyFailed(str(exc)) from None
        group, _, version = api_version.rpartition("/")
        return ObjectRef(target or "", name, group, kind, version)

    def _resource(self, api_version: str, kind: str, what: str) -> Any:
        try:
            return self._call(
                "API discovery",
                lambda: self._dynamic.resources.get(api_version=api_version, kind=kind),
                "check the cluster's API server",
            )
        except ResourceNotFoundError:
            raise ApplyFailed(
                f"{what}: the cluster serves no {kind} in {api_version}: "
                "fix the apiVersion or install the CRD"
            ) from None

    # Plumbing

    @cached_property
    def _dynamic(self) -> dynamic.DynamicClient:
        return self._call(
            "API discovery", lambda: dynamic.DynamicClient(self.api), "check the API server"
        )

    def _call(self, what: str, request: Callable[[], T], hint: str) -> T:
        """Run one API request; failures become KubernetesErrors naming `what` and the fix."""
        try:
            return request()
        except ApiException as exc:
            raise self._error(what, exc, hint) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterUnreachable(
                f"cannot reach the Kubernetes API at {self.api.configuration.host} "
                f"({self.where}) for {what}: {exc}; check environments[].sync.kubeconfig and "
                "sync.context, and that the cluster is up"
            ) from None

    def _error(self, what: str, exc: ApiException, hint: str) -> KubernetesError:
        try:
            message = json.loads(exc.body or "{}").get("message") or exc.reason
        except ValueError:
            message = exc.body or exc.reason
        if exc.status == 401:
            return ClusterUnauthorized(
                f"the Kubernetes API ({self.where}) rejected Baton's credentials for {what}: "
                "renew the token or certificate in the kubeconfig"
            )
        if exc.status == 403:
            return ClusterForbidden(
                f"{message} ({self.where}): grant Baton's user that permission (RBAC)"
            )
        if exc.status == 404:
            return ObjectNotFound(f"{what} not found: {hint}")
        if exc.status == 409:
            return Conflict(f"{what}: {message}")
        if exc.status in (400, 422):
            return Invalid(f"{what}: the Kubernetes API refused it: {message}")
        return KubernetesError(f"{what}: the Kubernetes API answered {exc.status}: {message}")


class FluxCluster(KubernetesAPI):
    """Flux on Kubernetes: sync status from Kustomizations, reconcile requests."""

    def __init__(
        self, api: client.ApiClient, where: str = "in-cluster", source_wait_s: float = 30.0
    ) -> None:
        """`source_wait_s` bounds how long a reconcile request waits for source-controller."""
        super().__init__(api, where)
        self.source_wait_s = source_wait_s

    # The Cluster protocol

    def sync_status(self, environment: EnvironmentConfig, app: str) -> SyncStatus | None:
        """The Kustomization's status now; None before Flux first attempted it.

        `observed_at` is when this read started, not a time from the object: Ready's
        lastTransitionTime does not move while Ready stays True across revisions, so nothing in
        the status dates the revision it reports. `judge` requires the read to start after the
        merge, and the applied revision to be M or a descendant of M, so a status read after the
        merge that still reports an older revision never passes either.

        With `sync.rollout_health` (the default), Ready also waits for the Deployments in the
        Kustomization's inventory to roll out: without `wait: true` or health checks on the
        Kustomization, Flux's Ready only means "applied".
        """
        observed_at = datetime.now(UTC)
        kustomization = self._kustomization(environment, app)
        source = self._source(kustomization)
        status = sync_status_from(kustomization, source, observed_at)
        if status is None or not environment.sync.rollout_health:
            return status
        entries = ((kustomization.get("status") or {}).get("inventory") or {}).get("entries")
        return self.with_rollouts(status, inventory(entries or []))

    def request_reconcile(self, environment: EnvironmentConfig, app: str) -> None:
        """Have Flux apply the GitOps branch head now, as `flux reconcile ks --with-source` does.

        The GitRepository is annotated first and given up to `source_wait_s` to fetch. A new
        artifact revision starts the Kustomization by itself (kustomize-controller watches its
        source); annotating it as well would queue a second reconcile right behind the first,
        and every reconcile starts with Ready=Unknown, hiding the first one's Ready=True from
        polls. Without a new revision (or source), the Kustomization is annotated too.
        """
        kustomization = self._kustomization(environment, app)
        source = self._source(kustomization)
        if source is not None:
            requested = self._annotate(GITREPOSITORIES, "GitRepository", source)
            fetched = self._wait_handled(GITREPOSITORIES, "GitRepository", source, requested)
            if fetched is not None and _artifact(fetched) != _artifact(source):
                return
        self._annotate(KUSTOMIZATIONS, "Kustomization", self._kustomization(environment, app))

    # Reading and writing Flux objects

    def _kustomization(self, environment: EnvironmentConfig, app: str) -> Object:
        name = kustomization_name(environment, app)
        namespace = environment.sync.namespace
        return self._get(KUSTOMIZATIONS, "Kustomization", namespace, name, _hint(environment))

    def _source(self, kustomization: Object) -> Object | None:
        ref = (kustomization.get("spec") or {}).get("sourceRef") or {}
        if ref.get("kind") != "GitRepository":
            return None
        namespace = ref.get("namespace", (kustomization.get("metadata") or {}).get("namespace", ""))
        hint = f"it is the sourceRef of Kustomization {_name(kustomization)}"
        return self._get(GITREPOSITORIES, "GitRepository", namespace, ref["name"], hint)

    def _get(
        self, gvp: tuple[str, str, str], kind: str, namespace: str, name: str, hint: str
    ) -> Object:
        group, version, plural = gvp
        return self._call(
            f"{kind} {namespace}/{name}",
            # The client types a custom object as `object`; it is the decoded JSON object.
            lambda: cast(
                Object,
                self.custom.get_namespaced_custom_object(
                    group, version, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT_S
                ),
            ),
            hint,
        )

    def _annotate(self, gvp: tuple[str, str, str], kind: str, obj: Object) -> str:
        """Set a fresh reconcile request with a merge patch; returns the value written.

        The patch carries the resourceVersion of `obj`, an optimistic-concurrency write like
        every controller's: on 409 Conflict another writer (most often Flux recording status)
        came first, so read again and write again.
        """
        meta = obj["metadata"]
        namespace, name, what = meta["namespace"], meta["name"], f"{kind} {_name(obj)}"
        for _ in range(CONFLICT_ATTEMPTS):
            requested = _requested_at()
            patch = {
                "metadata": {
                    "resourceVersion": meta["resourceVersion"],
                    "annotations": {RECONCILE_ANNOTATION: requested},
                }
            }
            try:
                self._merge_patch(gvp, what, namespace, name, patch)
                return requested
            except Conflict:
                meta = self._get(gvp, kind, namespace, name, "it was deleted meanwhile")["metadata"]
        raise Conflict(
            f"{what} changed under each of {CONFLICT_ATTEMPTS} reconcile requests: something "
            "rewrites it constantly; check its controllers"
        )

    def _wait_handled(
        self, gvp: tuple[str, str, str], kind: str, obj: Object, requested: str
    ) -> Object | None:
        """The object once its controller handled the request `requested`; None on timeout."""
        meta = obj["metadata"]
        deadline = time.monotonic() + self.source_wait_s
        while time.monotonic() < deadline:
            current = self._get(gvp, kind, meta["namespace"], meta["name"], "it was deleted")
            if (current.get("status") or {}).get("lastHandledReconcileAt") == requested:
                return current
            time.sleep(HANDLED_POLL_S)
        return None

    def _merge_patch(
        self, gvp: tuple[str, str, str], what: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> None:
        group, version, plural = gvp
        self._call(
            what,
            lambda: self.custom.patch_namespaced_custom_object(
                group,
                version,
                namespace,
                plural,
                name,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT_S,
            ),
            "it was deleted meanwhile",
        )
