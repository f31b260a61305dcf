"""A fake Kubernetes API server with a scripted Flux, for Baton's Kubernetes adapter tests.

`FakeKubeAPI` serves, on 127.0.0.1 and a free port, what Baton touches, in the shapes a real API
server uses:

- discovery (`/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]`) for the
  python client's `DynamicClient`;
- namespaces, configmaps, secrets, services, serviceaccounts, Deployments, Flux Kustomizations and
  GitRepositories: GET (object and list), POST, PUT, PATCH, DELETE, and the `status` subresource;
- PATCH as `application/merge-patch+json`, `application/strategic-merge-patch+json` (built-in
  kinds only: custom resources answer 415 like a real server) and `application/apply-patch+yaml`
  (server-side apply with `fieldManager`, `force`, conflicts and `managedFields`);
- `metadata.generation` bumped on changes outside metadata and status, `resourceVersion` bumped on
  every write, 409 Conflict for a write carrying a stale `resourceVersion`;
- Kubernetes `Status` errors (404, 409, 415, 401 with a bearer token configured, 403 by rule);
- races scripted with `interfere` (another client writes first) and Deployment rollout stages
  with `set_deployment_rollout` (the deployment controller's status).

Simplifications, on purpose: lists are atomic for field ownership (a real server merges
`containers` by name), `fieldsV1` has no `.` markers, there is no watch, no admission and no
garbage collection.

`FakeDeploymentController` rolls each new Deployment generation out after a delay, or leaves it
at a scripted stage (stuck, or past its progress deadline).

`FakeFlux` plays source-controller and kustomize-controller: a GitRepository resolves its branch
head in a local git repository (`spec.url` a path or file:// URL); a Kustomization, after
`apply_delay` seconds, server-side applies the objects under `spec.path` at its source's revision
(namespace: the object's, else `spec.targetNamespace`, else default), prunes what the previous
inventory held, records `status.inventory`, health-checks the Deployments with `wait: true` until
`spec.timeout`, and reports the revision in status; or it fails as scripted (`fail`). Both act on creation, on a changed `reconcile.fluxcd.io/requestedAt` or
`metadata.generation`, and every `spec.interval`; a new source revision triggers the
Kustomizations that use it, as the real controllers' watches do.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit
from urllib.request import url2pathname

import yaml

from tests.conftest import eventually
from tests.fakes import Lifecycle

Obj = dict[str, Any]
FieldPath = tuple[str, ...]

RECONCILE_ANNOTATION = "reconcile.fluxcd.io/requestedAt"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = True
    short_names: tuple[str, ...] = ()
    custom: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`deployments.apps`, `configmaps`: how a real server names the resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = [
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", status=False, short_names=("cm",)),
    ResourceType("", "v1", "secrets", "Secret", status=False),
    ResourceType("", "v1", "services", "Service", short_names=("svc",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", status=False, short_names=("sa",)),
    ResourceType("apps", "v1", "deployments", "Deployment", short_names=("deploy",)),
    ResourceType(
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "kustomizations",
        "Kustomization",
        short_names=("ks",),
        custom=True,
    ),
    ResourceType(
        "source.toolkit.fluxcd.io",
        "v1",
        "gitrepositories",
        "GitRepository",
        short_names=("gitrepo",),
        custom=True,
    ),
]
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "flux-system")
# Fields of metadata the server owns; they are never part of anyone's managed fields.
SERVER_METADATA = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """A failed request, answered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _not_found(rt: ResourceType, name: str) -> ApiError:
    details = {"name": name, "group": rt.group, "kind": rt.plural}
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', details)


def _conflict(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": name, "group": rt.group, "kind": rt.plural},
    )


# Field ownership and patches


def leaf_paths(value: Any, prefix: FieldPath = ()) -> set[FieldPath]:
    """The fields a value sets: every non-map value (lists included, as atoms) by its path."""
    if isinstance(value, dict) and value:
        paths: set[FieldPath] = set()
        for key, child in value.items():
            paths |= leaf_paths(child, (*prefix, key))
        return paths
    return {prefix} if prefix else set()


def owned_paths(obj: Obj) -> set[FieldPath]:
    """The fields of an object that field managers can own (server-set metadata excluded)."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in SERVER_METADATA}
    rest = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    return leaf_paths({"metadata": meta, **rest})


def lookup(obj: Any, path: FieldPath) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def remove_path(obj: Obj, path: FieldPath) -> None:
    """Delete a field, and the maps it leaves empty."""
    parents = [obj]
    for key in path[:-1]:
        child = parents[-1].get(key)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):
        if parents[depth]:
            break
        parents[depth - 1].pop(path[depth - 1], None)


def fields_v1(paths: set[FieldPath]) -> Obj:
    """Paths in the `fieldsV1` shape: `{"f:spec": {"f:replicas": {}}}`."""
    tree: Obj = {}
    for path in paths:
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def paths_of(fields: Obj, prefix: FieldPath = ()) -> set[FieldPath]:
    """The inverse of `fields_v1`."""
    if not fields:
        return {prefix} if prefix else set()
    paths: set[FieldPath] = set()
    for key, child in fields.items():
        paths |= paths_of(child, (*prefix, key.removeprefix("f:")))
    return paths


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386 JSON merge patch; `strategic` also merges lists of maps by their merge key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif strategic and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value)
        else:
            result[key] = merge_patch(result.get(key), value, strategic=strategic)
    return result


def _merge_list(current: list[Any], patch: list[Any]) -> list[Any]:
    """Strategic merge of a list: by `name`, `containerPort` or `mountPath` if all items have it."""
    items = current + patch
    for key in ("name", "containerPort", "mountPath"):
        if items and all(isinstance(i, dict) and key in i for i in items):
            merged = {i[key]: copy.deepcopy(i) for i in current}
            for item in patch:
                merged[item[key]] = merge_patch(merged.get(item[key]), item, strategic=True)
            return list(merged.values())
    return copy.deepcopy(patch)


def deep_merge(target: Obj, config: Obj) -> Obj:
    """Apply a configuration's fields onto an object: maps merge, everything else replaces."""
    result = copy.deepcopy(target)
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _defaults(kind: str, obj: Obj) -> Obj:
    """What the API server's defaulting adds to the kinds tests inspect."""
    if kind == "Deployment":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("revisionHistoryLimit", 10)
    return obj


# Storage

Key = tuple[str, str, str, str]  # group, plural, namespace ("" when cluster-scoped), name
Listener = Callable[[ResourceType, Obj | None, Obj | None], None]


class Store:
    """Objects by key, with the resourceVersion counter of a single etcd."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.objects: dict[Key, Obj] = {}
        self.listeners: list[Listener] = []
        self._versions = itertools.count(1000)

    @staticmethod
    def key(rt: ResourceType, namespace: str | None, name: str) -> Key:
        return (rt.group, rt.plural, namespace or "" if rt.namespaced else "", name)

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        with self.lock:
            obj = self.objects.get(self.key(rt, namespace, name))
            if obj is None:
                raise _not_found(rt, name)
            return copy.deepcopy(obj)

    def find(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.get(rt, namespace, name)
        except ApiError:
            return None

    def list(self, rt: ResourceType, namespace: str | None) -> list[Obj]:
        with self.lock:
            return [
                copy.deepcopy(obj)
                for (group, plural, ns, _), obj in sorted(self.objects.items())
                if (group, plural) == (rt.group, rt.plural) and (not namespace or ns == namespace)
            ]

    def resource_version(self) -> str:
        return str(next(self._versions))

    def put(self, rt: ResourceType, old: Obj | None, new: Obj | None) -> None:
        """Store `new` in place of `old` (None deletes); the caller holds the lock."""
        meta = (new or old or {})["metadata"]
        key = self.key(rt, meta.get("namespace"), meta["name"])
        if new is None:
            self.objects.pop(key, None)
        else:
            self.objects[key] = copy.deepcopy(new)

    def notify(self, rt: ResourceType, old: Obj | None, new: Obj | None) -> None:
        """Tell listeners (controllers) about a write, outside the lock as a watch would."""
        for listener in list(self.listeners):
            listener(rt, copy.deepcopy(old), copy.deepcopy(new))


@dataclass
class Rule:
    verb: str
    plural: str
    namespace: str | None


class FakeKubeAPI(Lifecycle):
    """The fake API server. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.store = Store()
        self.forbidden: list[Rule] = []
        self.requests: list[tuple[str, str, str, int]] = []  # method, path, content type, code
        self._interference: dict[tuple[str, str, str], int] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for ns in INITIAL_NAMESPACES:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # Lifecycle

    def start(self) -> FakeKubeAPI:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def write_kubeconfig(
        self, path: Path, context: str = "fake", namespace: str = "default"
    ) -> Path:
        """A kubeconfig whose `context` reaches this server (with its bearer token, if any)."""
        user: Obj = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": user}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": context, "namespace": namespace},
                }
            ],
            "current-context": context,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        return path

    # Scripting for tests

    def forbid(self, verb: str, plural: str, namespace: str | None = None) -> None:
        """Answer 403 to `verb` (get, list, create, update, patch, delete) on `plural`."""
        self.forbidden.append(Rule(verb, plural, namespace))

    def interfere(self, plural: str, namespace: str, name: str, times: int = 1) -> None:
        """Let another client win the race against each of the next `times` writes (PATCH, PUT)
        to the object: it writes an annotation first, so a write carrying the resourceVersion
        read before gets 409 Conflict."""
        self._interference[(plural, namespace, name)] = times

    def resource(self, api_version: str, kind: str) -> ResourceType:
        for rt in RESOURCES:
            if rt.api_version == api_version and rt.kind == kind:
                return rt
        raise ApiError(
            404,
            "NotFound",
            f"the server could not find the requested resource ({kind} {api_version})",
        )

    def by_plural(self, group: str, version: str, plural: str) -> ResourceType:
        for rt in RESOURCES:
            if (rt.group, rt.version, rt.plural) == (group, version, plural):
                return rt
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj:
        return self.store.get(self.resource(api_version, kind), namespace, name)

    def create(self, obj: Obj, manager: str = "kubectl-create") -> Obj:
        """Create an object as a client would (status dropped where it is a subresource)."""
        rt = self.resource(obj["apiVersion"], obj["kind"])
        return self.write(
            rt,
            obj["metadata"].get("namespace"),
            obj["metadata"]["name"],
            "create",
            obj,
            manager=manager,
        )

    def write_status(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        status: Obj,
        manager: str,
    ) -> Obj:
        """Replace an object's status through the status subresource, as a controller does
        (unconditionally: no resourceVersion, so never a conflict)."""
        rt = self.resource(api_version, kind)
        body = {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": name},
            "status": status,
        }
        return self.write(
            rt, namespace, name, "update", body, subresource="status", manager=manager
        )

    def set_deployment_rollout(
        self,
        namespace: str,
        name: str,
        *,
        updated: int | None = None,
        available: int | None = None,
        old: int = 0,
        observed: bool = True,
        deadline_exceeded: bool = False,
    ) -> Obj:
        """Write a Deployment's status as the deployment controller would at a rollout stage.

        Defaults describe a finished rollout: every replica updated and available.
        """
        deployment = self.get("apps/v1", "Deployment", namespace, name)
        replicas = deployment["spec"].get("replicas", 1)
        updated = replicas if updated is None else updated
        available = updated if available is None else available
        generation = deployment["metadata"]["generation"]
        done = updated >= replicas and old == 0 and available >= updated
        progressing = {
            "type": "Progressing",
            "status": "False" if deadline_exceeded else "True",
            "reason": "ProgressDeadlineExceeded"
            if deadline_exceeded
            else "NewReplicaSetAvailable"
            if done
            else "ReplicaSetUpdated",
            "message": f'ReplicaSet "{name}-5d9c7b" '
            + (
                "has timed out progressing."
                if deadline_exceeded
                else "has successfully progressed."
                if done
                else "is progressing."
            ),
            "lastUpdateTime": now_rfc3339(),
            "lastTransitionTime": now_rfc3339(),
        }
        status = {
            "observedGeneration": generation if observed else generation - 1,
            "replicas": updated + old,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": max(updated + old - available, 0),
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available >= replicas else "False",
                    "reason": "MinimumReplicasAvailable"
                    if available >= replicas
                    else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability.",
                    "lastUpdateTime": now_rfc3339(),
                    "lastTransitionTime": now_rfc3339(),
                },
                progressing,
            ],
        }
        return self.write_status(
            "apps/v1", "Deployment", namespace, name, status, manager="kube-controller-manager"
        )

    # The API semantics

    def write(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        verb: str,
        body: Any,
        *,
        content_type: str = "",
        manager: str = "unknown",
        force: bool = False,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """create, update (PUT), patch or delete one object; returns the stored result."""
        if subresource not in (None, "status") or (subresource and not rt.status):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        with self.store.lock:
            if rt.namespaced and not namespace:
                raise ApiError(400, "BadRequest", "the namespace of the object is required")
            namespaces = RESOURCES[0]
            if rt.namespaced and verb in ("create", "apply"):
                self.store.get(namespaces, None, namespace or "")
            old = self.store.find(rt, namespace, name)
            if verb == "delete":
                if old is None:
                    raise _not_found(rt, name)
                new = None
            else:
                new, applied, taken = self._desired(
                    rt, old, namespace, name, verb, body, content_type, manager, force, subresource
                )
                new = self._finish(rt, old, new, manager, applied, taken, subresource)
            if dry_run:
                return new or old
            self.store.put(rt, old, new)
        self.store.notify(rt, old, new)
        return new or old

    def _desired(
        self, rt, old, namespace, name, verb, body, content_type, manager, force, subresource
    ):
        """The object a write asks for, the fields an apply sets (None for other writes), and
        the fields it takes from other managers."""
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be an object")
        if verb == "create":
            if old is not None:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{rt.qualified} "{name}" already exists',
                    {"name": name, "group": rt.group, "kind": rt.plural},
                )
            self._check_identity(rt, body)
            new = copy.deepcopy(body)
            new["metadata"] = {**new.get("metadata", {}), "name": name}
            if rt.namespaced:
                new["metadata"]["namespace"] = namespace
            if rt.status:
                new.pop("status", None)
            return _defaults(rt.kind, new), None, set()
        if verb == "apply":
            self._check_identity(rt, body)
            return self._apply(rt, old, namespace, name, body, manager, force)
        patch_types = [MERGE_PATCH] + ([] if rt.custom else [STRATEGIC_MERGE_PATCH])
        if verb == "patch" and content_type not in patch_types:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join([*patch_types, APPLY_PATCH])} "
                "(application/json-patch+json is not in the fake)",
            )
        if old is None:
            raise _not_found(rt, name)
        sent_version = body.get("metadata", {}).get("resourceVersion")
        if sent_version is not None and sent_version != old["metadata"]["resourceVersion"]:
            raise _conflict(rt, name)
        if verb == "update":
            self._check_identity(rt, body)
            new = copy.deepcopy(body)
        else:
            new = merge_patch(old, body, strategic=content_type == STRATEGIC_MERGE_PATCH)
        if subresource == "status":  # only status changes through the subresource
            new = {**old, "status": new.get("status", {})}
        elif rt.status:  # and never through the main resource
            new.pop("status", None)
            if "status" in old:
                new["status"] = old["status"]
        return new, None, set()

    @staticmethod
    def _check_identity(rt: ResourceType, body: Obj) -> None:
        if (body.get("apiVersion"), body.get("kind")) != (rt.api_version, rt.kind):
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({body.get('apiVersion')}) and kind "
                f"({body.get('kind')}) do not match {rt.api_version} {rt.kind}",
            )

    def _apply(self, rt, old, namespace, name, config, manager, force):
        """Server-side apply: conflicts with other managers' differing fields unless forced."""
        config = copy.deepcopy(config)
        config.pop("status", None)
        config["metadata"] = {
            k: v
            for k, v in config.get("metadata", {}).items()
            if k not in SERVER_METADATA or k == "resourceVersion"
        }
        sent_version = config["metadata"].pop("resourceVersion", None)
        applied = owned_paths(config)
        if old is None:
            new = {**config, "metadata": {**config["metadata"], "name": name}}
            if rt.namespaced:
                new["metadata"]["namespace"] = namespace
            return _defaults(rt.kind, new), applied, set()
        if sent_version is not None and sent_version != old["metadata"]["resourceVersion"]:
            raise _conflict(rt, name)
        entries = old["metadata"].get("managedFields", [])
        conflicts = [
            (entry, path)
            for entry in entries
            if entry["manager"] != manager and not entry.get("subresource")
            for path in sorted(paths_of(entry.get("fieldsV1", {})) & applied)
            if lookup(old, path) != lookup(config, path)
        ]
        if conflicts and not force:
            raise ApiError(
                409,
                "Conflict",
                f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: "
                + "; ".join(
                    f'conflict with "{e["manager"]}" using {e["apiVersion"]}: .{".".join(p)}'
                    for e, p in conflicts
                ),
                {
                    "name": name,
                    "group": rt.group,
                    "kind": rt.plural,
                    "causes": [
                        {
                            "reason": "FieldManagerConflict",
                            "message": f'conflict with "{e["manager"]}"',
                            "field": "." + ".".join(p),
                        }
                        for e, p in conflicts
                    ],
                },
            )
        previous = set().union(
            *(
                paths_of(e.get("fieldsV1", {}))
                for e in entries
                if e["manager"] == manager and e["operation"] == "Apply"
            )
        )
        others = set().union(
            *(paths_of(e.get("fieldsV1", {})) for e in entries if e["manager"] != manager)
        )
        new = copy.deepcopy(old)
        for path in previous - applied - (others - {p for _, p in conflicts}):
            remove_path(new, path)
        return deep_merge(new, config), applied, {p for _, p in conflicts}

    def _finish(self, rt, old, new, manager, applied, taken, subresource) -> Obj:
        """Server-set metadata and `managedFields` for a write of `new` over `old`.

        An apply owns exactly the fields it sets (sharing those another manager set to the same
        value) and takes the conflicting ones it forced; any other write owns what it changed.
        Fields that are gone are nobody's.
        """
        operation = "Update" if applied is None else "Apply"
        meta = new.setdefault("metadata", {})
        now = now_rfc3339()
        entries: list[Obj] = []
        if old is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now, generation=1)
        else:
            for k in ("uid", "creationTimestamp", "generation", "name", "namespace"):
                if k in old["metadata"]:
                    meta[k] = old["metadata"][k]
            if _spec_part(old) != _spec_part(new):
                meta["generation"] = old["metadata"]["generation"] + 1
            entries = copy.deepcopy(old["metadata"].get("managedFields", []))
        meta["resourceVersion"] = self.store.resource_version()
        after = owned_paths(new)
        gone = (owned_paths(old) if old else set()) - after
        changed = {p for p in after if old is None or lookup(old, p) != lookup(new, p)}
        if applied is None:
            taken = changed
        ours = next(
            (
                e
                for e in entries
                if e["manager"] == manager
                and e["operation"] == operation
                and e.get("subresource") == subresource
            ),
            None,
        )
        for entry in entries:
            if entry is not ours:
                entry["fieldsV1"] = fields_v1(paths_of(entry.get("fieldsV1", {})) - gone - taken)
        if ours is None:
            ours = {
                "manager": manager,
                "operation": operation,
                "apiVersion": rt.api_version,
                "fieldsType": "FieldsV1",
            }
            if subresource:
                ours["subresource"] = subresource
            entries.append(ours)
        if applied is None:
            owned = (paths_of(ours.get("fieldsV1", {})) - gone) | changed
        else:
            owned = applied & after
        ours["fieldsV1"] = fields_v1(owned)
        ours["time"] = now
        meta["managedFields"] = [e for e in entries if e["fieldsV1"]]
        return new

    # HTTP routing

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Obj]:
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.strip("/").split("/") if p]
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip()
        if self.token and headers.get("Authorization") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if method == "GET":
            discovery = self._discovery(parts)
            if discovery is not None:
                return 200, discovery
        rt, namespace, name, subresource = self._route(parts)
        verb = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }[method]
        self._authorize(verb, rt, namespace, name)
        if verb == "list":
            return 200, self._list(rt, namespace)
        if verb == "get":
            return 200, self.store.get(rt, namespace, name)
        if verb in ("patch", "update"):
            self._interfere(rt, namespace, name)
        payload: Any = None
        if body:
            payload = yaml.safe_load(body) if content_type == APPLY_PATCH else json.loads(body)
        if verb == "create":
            name = (payload or {}).get("metadata", {}).get("name", "")
        manager = (
            query.get("fieldManager") or (headers.get("User-Agent") or "unknown").split("/")[0]
        )
        if method == "PATCH" and content_type == APPLY_PATCH:
            verb = "apply"
            if not query.get("fieldManager"):
                raise ApiError(400, "BadRequest", "fieldManager is required for apply requests")
        code = 201 if verb == "create" else 200
        if verb == "apply" and self.store.find(rt, namespace, name) is None:
            code = 201
        obj = self.write(
            rt,
            namespace,
            name,
            verb,
            payload,
            content_type=content_type,
            manager=manager,
            force=query.get("force") == "true",
            subresource=subresource,
            dry_run=query.get("dryRun") == "All",
        )
        return code, obj

    def _route(self, parts: list[str]) -> tuple[ResourceType, str | None, str, str | None]:
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rt = self.by_plural(group, version, rest[0])
        return rt, namespace, rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else None

    def _authorize(self, verb: str, rt: ResourceType, namespace: str | None, name: str) -> None:
        for rule in self.forbidden:
            if (
                rule.verb == verb
                and rule.plural == rt.plural
                and rule.namespace in (None, namespace)
            ):
                where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{rt.qualified} "{name}" is forbidden: User "system:serviceaccount:baton:baton"'
                    f' cannot {verb} resource "{rt.plural}" in API group "{rt.group}"{where}',
                    {"name": name, "group": rt.group, "kind": rt.plural},
                )

    def _interfere(self, rt: ResourceType, namespace: str | None, name: str) -> None:
        key = (rt.plural, namespace or "", name)
        if self._interference.get(key, 0) > 0:
            self._interference[key] -= 1
            patch = {"metadata": {"annotations": {"other-controller/touched": now_rfc3339()}}}
            self.write(
                rt,
                namespace,
                name,
                "patch",
                patch,
                content_type=MERGE_PATCH,
                manager="other-controller",
            )

    def _list(self, rt: ResourceType, namespace: str | None) -> Obj:
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": self.store.resource_version()},
            "items": self.store.list(rt, namespace),
        }

    def _discovery(self, parts: list[str]) -> Obj | None:
        groups = sorted({rt.group for rt in RESOURCES if rt.group})
        if parts == ["version"]:
            return {
                "major": "1",
                "minor": "31",
                "gitVersion": "v1.31.0",
                "gitCommit": "fake",
                "gitTreeState": "clean",
                "buildDate": "2024-08-13T07:28:49Z",
                "goVersion": "go1.22.5",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if parts == ["api"]:
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self.url.removeprefix("http://")}
                ],
            }
        if parts == ["api", "v1"]:
            return self._resource_list("", "v1")
        if parts == ["apis"]:
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._group(g) for g in groups],
            }
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
            return self._group(parts[1])
        if len(parts) == 3 and parts[0] == "apis" and parts[1] in groups:
            return self._resource_list(parts[1], parts[2])
        return None

    @staticmethod
    def _group(group: str) -> Obj:
        version = next(rt.version for rt in RESOURCES if rt.group == group)
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": [gv],
            "preferredVersion": gv,
        }

    @staticmethod
    def _resource_list(group: str, version: str) -> Obj:
        resources: list[Obj] = []
        for rt in RESOURCES:
            if (rt.group, rt.version) != (group, version):
                continue
            resources.append(
                {
                    "name": rt.plural,
                    "singularName": rt.kind.lower(),
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ALL_VERBS,
                    "shortNames": list(rt.short_names),
                }
            )
            if rt.status:
                resources.append(
                    {
                        "name": f"{rt.plural}/status",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        if not resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }


def _handler(api: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each response waits ~40 ms for a delayed ACK

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                code, payload = api.handle(self.command, self.path, self.headers, body)
            except ApiError as exc:
                code, payload = exc.code, exc.status()
            except (ValueError, yaml.YAMLError) as exc:
                code, payload = 400, ApiError(400, "BadRequest", str(exc)).status()
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            api.requests.append((self.command, urlsplit(self.path).path, content_type, code))
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# The scripted Flux

FluxKey = tuple[str, str, str]  # plural, namespace, name
GITREPOSITORY = next(rt for rt in RESOURCES if rt.kind == "GitRepository")
DEPLOYMENT = next(rt for rt in RESOURCES if rt.kind == "Deployment")
KUSTOMIZATION = next(rt for rt in RESOURCES if rt.kind == "Kustomization")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration as Flux specs use them: `1m`, `10m0s`, `30s`, `1h30m`."""
    parts = _DURATION.findall(text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def set_condition(
    status: Obj, type_: str, value: str, reason: str, message: str, generation: int
) -> None:
    """Set a condition the way Flux's helpers do: the transition time moves only on change."""
    conditions = status.setdefault("conditions", [])
    existing = next((c for c in conditions if c["type"] == type_), None)
    condition = {
        "type": type_,
        "status": value,
        "observedGeneration": generation,
        "lastTransitionTime": now_rfc3339(),
        "reason": reason,
        "message": message,
    }
    if existing is None:
        conditions.append(condition)
        return
    if existing["status"] == value:
        condition["lastTransitionTime"] = existing["lastTransitionTime"]
    existing.update(condition)


def drop_condition(status: Obj, type_: str) -> None:
    status["conditions"] = [c for c in status.get("conditions", []) if c["type"] != type_]


def _kstatus(deployment: Obj | None) -> str:
    """A Deployment's kstatus, as Flux's health checks compute it: Current, InProgress, Failed."""
    if deployment is None:
        return "NotFound"
    status = deployment.get("status", {})
    if status.get("observedGeneration", 0) < deployment["metadata"]["generation"]:
        return "InProgress"
    progressing = next((c for c in status.get("conditions", []) if c["type"] == "Progressing"), {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return "Failed"
    replicas = deployment["spec"].get("replicas", 1)
    counts = (status.get("updatedReplicas", 0), status.get("availableReplicas", 0))
    done = min(counts) >= replicas and status.get("replicas", 0) == counts[0]
    return "Current" if done else "InProgress"


@dataclass(frozen=True)
class Failure:
    """A scripted outcome for applying `revision` (a commit sha; None: any): Ready=False with
    Flux's reason and message, or Stalled."""

    reason: str = "HealthCheckFailed"
    message: str = (
        "health check failed after 30s: timeout waiting for: "
        "[Deployment/default/sample-app status: 'InProgress']"
    )
    stalled: bool = False
    revision: str | None = None


class FakeDeploymentController(Lifecycle):
    """The deployment controller, as far as Baton reads it: each new generation of a Deployment
    rolls out `delay` seconds after it is written, or ends at the stage scripted for it."""

    def __init__(self, api: FakeKubeAPI, delay: float = 0.2) -> None:
        self.api = api
        self.delay = delay
        self.stages: dict[tuple[str, str, int], Obj] = {}
        self._timers: list[threading.Timer] = []

    def script(self, namespace: str, name: str, generation: int, **stage: Any) -> None:
        """Generation `generation` of the Deployment ends at `stage` (`set_deployment_rollout`
        arguments, e.g. `deadline_exceeded=True`) instead of rolling out."""
        self.stages[(namespace, name, generation)] = stage

    def start(self) -> Self:
        self.api.store.listeners.append(self._on_write)
        return self

    def stop(self) -> None:
        self.api.store.listeners.remove(self._on_write)
        for timer in self._timers:
            timer.cancel()

    def _on_write(self, rt: ResourceType, old: Obj | None, new: Obj | None) -> None:
        if rt is not DEPLOYMENT or new is None:
            return
        generation = new["metadata"]["generation"]
        if (old or {}).get("metadata", {}).get("generation") == generation:
            return
        key = (new["metadata"]["namespace"], new["metadata"]["name"], generation)
        timer = threading.Timer(self.delay, self._roll_out, args=key)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _roll_out(self, namespace: str, name: str, generation: int) -> None:
        current = self.api.store.find(DEPLOYMENT, namespace, name)
        if current is not None and current["metadata"]["generation"] == generation:
            self.api.set_deployment_rollout(
                namespace, name, **self.stages.get((namespace, name, generation), {})
            )


HEALTH_PENDING = Failure(reason="Progressing", message="health checks in progress")
HEALTH_POLL_S = 0.1


class FakeFlux(Lifecycle):
    """source-controller and kustomize-controller over a FakeKubeAPI's objects, on one thread."""

    def __init__(self, api: FakeKubeAPI, apply_delay: float = 0.5) -> None:
        self.api = api
        self.apply_delay = apply_delay
        self.failures: list[Failure] = []
        self.errors: list[str] = []
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, str, FluxKey, Obj]] = []
        self._seq = itertools.count()
        self._due: dict[FluxKey, float] = {}
        self._busy: set[FluxKey] = set()
        self._again: set[FluxKey] = set()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-flux")

    def start(self) -> FakeFlux:
        self.api.store.listeners.append(self._on_write)
        self._thread.start()
        for rt in (GITREPOSITORY, KUSTOMIZATION):
            for obj in self.api.store.list(rt, None):
                self._trigger((rt.plural, obj["metadata"]["namespace"], obj["metadata"]["name"]))
        return self

    def stop(self) -> None:
        self.api.store.listeners.remove(self._on_write)
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    # Scripting for tests

    def fail(self, failure: Failure) -> None:
        """From now on, applying a matching revision ends as `failure` says."""
        self.failures.append(failure)

    def add_sync(
        self,
        repo: Path,
        name: str,
        *,
        branch: str = "main",
        namespace: str = "flux-system",
        path: str = "./",
        interval: str = "1m",
        source: str = "gitops",
        wait: bool = True,
        target_namespace: str | None = None,
    ) -> None:
        """Create a GitRepository on `repo`'s `branch` (unless it exists) and a Kustomization."""
        if self.api.store.find(GITREPOSITORY, namespace, source) is None:
            self.api.create(
                {
                    "apiVersion": GITREPOSITORY.api_version,
                    "kind": "GitRepository",
                    "metadata": {"name": source, "namespace": namespace},
                    "spec": {
                        "interval": interval,
                        "url": Path(repo).resolve().as_uri(),
                        "ref": {"branch": branch},
                    },
                },
                manager="kubectl",
            )
        self.api.create(
            {
                "apiVersion": KUSTOMIZATION.api_version,
                "kind": "Kustomization",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "interval": interval,
                    "path": path,
                    "prune": True,
                    "wait": wait,
                    "timeout": "5m",
                    "sourceRef": {"kind": "GitRepository", "name": source},
                }
                | ({"targetNamespace": target_namespace} if target_namespace else {}),
            },
            manager="kubectl",
        )

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until nothing is being applied and nothing is due now."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                due_now = any(due <= time.monotonic() for due, *_ in self._queue)
                if not self._busy and not due_now:
                    return
            time.sleep(0.02)
        raise TimeoutError(f"fake Flux still busy after {timeout}s")

    # Triggers: creation, a new generation, a new reconcile request, a new source revision

    def _on_write(self, rt: ResourceType, old: Obj | None, new: Obj | None) -> None:
        if new is None or rt not in (GITREPOSITORY, KUSTOMIZATION):
            return
        before, after = (old or {}).get("metadata", {}), new["metadata"]
        requested = before.get("annotations", {}).get(RECONCILE_ANNOTATION) != after.get(
            "annotations", {}
        ).get(RECONCILE_ANNOTATION)
        if old is None or requested or before.get("generation") != after.get("generation"):
            self._trigger((rt.plural, after["namespace"], after["name"]))

    def _trigger(
        self, key: FluxKey, delay: float = 0.0, action: str = "reconcile", arg: Obj | None = None
    ) -> None:
        due = time.monotonic() + delay
        with self._cond:
            if action == "reconcile":
                if key in self._due and self._due[key] <= due:
                    return
                self._due[key] = due
            heapq.heappush(self._queue, (due, next(self._seq), action, key, arg or {}))
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                    not self._queue or self._queue[0][0] > time.monotonic()
                ):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                due, _, action, key, arg = heapq.heappop(self._queue)
                if action == "reconcile":
                    if self._due.get(key) != due:
                        continue  # superseded by an earlier trigger
                    del self._due[key]
                    if key in self._busy:
                        self._again.add(key)
                        continue
            try:
                if action == "finish":
                    self._finish(key, arg)
                else:
                    self._reconcile(key)
            except Exception as exc:  # noqa: BLE001 - a broken fake must fail tests, not hang them
                self.errors.append(f"{action} {key}: {exc!r}")
                with self._cond:
                    self._busy.discard(key)

    def _reconcile(self, key: FluxKey) -> None:
        """Reconcile the object `key` names, unless it is gone or suspended."""
        plural, namespace, name = key
        source = plural == GITREPOSITORY.plural
        obj = self.api.store.find(GITREPOSITORY if source else KUSTOMIZATION, namespace, name)
        if obj is None or obj["spec"].get("suspend"):
            return
        if source:
            self._reconcile_source(key, obj)
        else:
            self._reconcile_kustomization(key, obj)

    # source-controller

    def _reconcile_source(self, key: FluxKey, obj: Obj) -> None:
        _, namespace, name = key
        spec, generation = obj["spec"], obj["metadata"]["generation"]
        status = copy.deepcopy(obj.get("status", {}))
        branch = spec.get("ref", {}).get("branch", "master")
        try:
            sha = self._git(spec.get("url", ""), "rev-parse", "--verify", f"refs/heads/{branch}")
        except subprocess.CalledProcessError as exc:
            message = (
                f"failed to checkout and determine revision: unable to clone "
                f"'{spec.get('url')}': {exc.stderr.strip()}"
            )
            set_condition(status, "FetchFailed", "True", "GitOperationFailed", message, generation)
            set_condition(status, "Ready", "False", "GitOperationFailed", message, generation)
            self._write(GITREPOSITORY, obj, status, "source-controller")
            self._trigger(key, self._interval(spec))
            return
        revision = f"{branch}@sha1:{sha}"
        previous = status.get("artifact", {}).get("revision")
        status["artifact"] = {
            "revision": revision,
            "digest": f"sha256:{uuid.uuid5(uuid.NAMESPACE_OID, revision).hex * 2}",
            "lastUpdateTime": now_rfc3339(),
            "path": f"gitrepository/{namespace}/{name}/{sha}.tar.gz",
            "url": f"http://source-controller.flux-system.svc.cluster.local./gitrepository/"
            f"{namespace}/{name}/{sha}.tar.gz",
            "size": 1024,
        }
        message = f"stored artifact for revision '{revision}'"
        drop_condition(status, "FetchFailed")
        set_condition(status, "ArtifactInStorage", "True", "Succeeded", message, generation)
        set_condition(status, "Ready", "True", "Succeeded", message, generation)
        status["observedGeneration"] = generation
        self._write(GITREPOSITORY, obj, status, "source-controller")
        if revision != previous:
            for ks in self.api.store.list(KUSTOMIZATION, None):
                ref = ks["spec"].get("sourceRef", {})
                ks_ns = ks["metadata"]["namespace"]
                if ref.get("kind") == "GitRepository" and (
                    ref.get("namespace", ks_ns),
                    ref.get("name"),
                ) == (namespace, name):
                    self._trigger((KUSTOMIZATION.plural, ks_ns, ks["metadata"]["name"]))
        self._trigger(key, self._interval(spec))

    # kustomize-controller

    def _reconcile_kustomization(self, key: FluxKey, obj: Obj) -> None:
        namespace = key[1]
        spec, generation = obj["spec"], obj["metadata"]["generation"]
        status = copy.deepcopy(obj.get("status", {}))
        ref = spec.get("sourceRef", {})
        source_ns = ref.get("namespace", namespace)
        source = self.api.store.find(GITREPOSITORY, source_ns, ref.get("name", ""))
        revision = (source or {}).get("status", {}).get("artifact", {}).get("revision")
        if source is None or revision is None:
            retry = self._retry_interval(spec)
            message = (
                f"Source '{ref.get('kind')}/{source_ns}/{ref.get('name')}' not found"
                if source is None
                else f"Source artifact not found, retrying in {retry:g}s"
            )
            set_condition(status, "Ready", "False", "ArtifactFailed", message, generation)
            self._write(KUSTOMIZATION, obj, status, "kustomize-controller")
            self._trigger(key, retry)
            return
        status["lastAttemptedRevision"] = revision
        set_condition(
            status,
            "Reconciling",
            "True",
            "Progressing",
            f"Building manifests for revision {revision} with a timeout of "
            f"{spec.get('timeout', spec.get('interval'))}",
            generation,
        )
        set_condition(
            status, "Ready", "Unknown", "Progressing", "Reconciliation in progress", generation
        )
        self._write(KUSTOMIZATION, obj, status, "kustomize-controller")
        with self._cond:
            self._busy.add(key)
        arg = {"revision": revision, "generation": generation}
        self._trigger(key, self.apply_delay, action="finish", arg=arg)

    def _finish(self, key: FluxKey, arg: Obj) -> None:
        _, namespace, name = key
        revision, generation = arg["revision"], arg["generation"]
        obj = self.api.store.find(KUSTOMIZATION, namespace, name)
        failure = self._failure(revision)
        if obj is not None and failure is None:
            failure = self._apply_and_check(obj, arg)
            if failure is HEALTH_PENDING:
                self._trigger(key, HEALTH_POLL_S, action="finish", arg=arg)
                return  # still reconciling: the health checks go on
        if obj is not None:
            status = copy.deepcopy(obj.get("status", {}))
            if "entries" in arg:
                status["inventory"] = {"entries": arg["entries"]}
            if failure is None:
                status["lastAppliedRevision"] = revision
                drop_condition(status, "Reconciling")
                drop_condition(status, "Stalled")
                set_condition(
                    status,
                    "Ready",
                    "True",
                    "ReconciliationSucceeded",
                    f"Applied revision: {revision}",
                    generation,
                )
                status["observedGeneration"] = generation
            elif failure.stalled:
                drop_condition(status, "Reconciling")
                set_condition(
                    status, "Stalled", "True", failure.reason, failure.message, generation
                )
                set_condition(status, "Ready", "False", failure.reason, failure.message, generation)
                status["observedGeneration"] = generation
            else:  # Reconciling stays, its reason saying Flux will retry
                for condition in status["conditions"]:
                    if condition["type"] == "Reconciling":
                        condition["reason"] = "ProgressingWithRetry"
                set_condition(status, "Ready", "False", failure.reason, failure.message, generation)
            requested = obj["metadata"].get("annotations", {}).get(RECONCILE_ANNOTATION)
            if requested:
                status["lastHandledReconcileAt"] = requested
            self._write(KUSTOMIZATION, obj, status, "kustomize-controller")
        with self._cond:
            self._busy.discard(key)
            again = key in self._again
            self._again.discard(key)
        if obj is None:
            return
        spec = obj["spec"]
        wait = self._interval(spec) if failure is None else self._retry_interval(spec)
        self._trigger(key, 0.0 if again else wait)

    # Applying a revision

    def _apply_and_check(self, ks: Obj, arg: Obj) -> Failure | None:
        """Apply the revision's objects once (pruning the previous inventory), then, with
        `wait: true`, health-check its Deployments until `spec.timeout`; HEALTH_PENDING while
        they are rolling out."""
        spec = ks["spec"]
        if "entries" not in arg:
            try:
                arg["entries"] = self._apply_objects(ks, arg["revision"])
            except ApiError as exc:
                return Failure(reason="ReconciliationFailed", message=exc.message)
            arg["health_deadline"] = time.monotonic() + parse_duration(spec.get("timeout", "5m"))
        if not spec.get("wait"):
            return None
        waiting = []
        for entry in arg["entries"]:
            ns, name, group, kind = entry["id"].split("_")
            if (group, kind) != ("apps", "Deployment"):
                continue
            state = _kstatus(self.api.store.find(DEPLOYMENT, ns, name))
            if state == "Failed":
                return Failure(
                    message=f"health check failed: [Deployment/{ns}/{name} status: 'Failed']"
                )
            if state != "Current":
                waiting.append(f"Deployment/{ns}/{name} status: '{state}'")
        if not waiting:
            return None
        if time.monotonic() < arg["health_deadline"]:
            return HEALTH_PENDING
        return Failure(
            message=f"health check failed after {spec.get('timeout', '5m')}: timeout waiting "
            f"for: [{', '.join(waiting)}]"
        )

    def _apply_objects(self, ks: Obj, revision: str) -> list[Obj]:
        """Server-side apply every object under `spec.path` at `revision`, prune those of the
        previous inventory that are gone; returns the new inventory entries."""
        spec, namespace = ks["spec"], ks["metadata"]["namespace"]
        ref = spec.get("sourceRef", {})
        source = self.api.store.get(GITREPOSITORY, ref.get("namespace", namespace), ref["name"])
        url, sha = source["spec"]["url"], revision.rsplit(":", 1)[-1]
        path = spec.get("path", "./").strip("./")
        where = ["--", path] if path else []
        files = self._git(url, "ls-tree", "-r", "--name-only", sha, *where).splitlines()
        entries: list[Obj] = []
        for file in sorted(f for f in files if f.endswith((".yaml", ".yml"))):
            for obj in yaml.safe_load_all(self._git(url, "show", f"{sha}:{file}")):
                if not isinstance(obj, dict) or not {"apiVersion", "kind"} <= obj.keys():
                    continue  # not a Kubernetes object (a values file, a comment)
                rt = self.api.resource(obj["apiVersion"], obj["kind"])
                target = obj.get("metadata", {}).get("namespace") or spec.get(
                    "targetNamespace", "default"
                )
                name = obj["metadata"]["name"]
                self.api.write(
                    rt,
                    target if rt.namespaced else None,
                    name,
                    "apply",
                    obj,
                    content_type=APPLY_PATCH,
                    manager="kustomize-controller",
                    force=True,
                )
                ns = target if rt.namespaced else ""
                entries.append({"id": f"{ns}_{name}_{rt.group}_{rt.kind}", "v": rt.version})
        previous = ks.get("status", {}).get("inventory", {}).get("entries", [])
        for entry in previous:
            if entry not in entries:
                ns, name, group, kind = entry["id"].split("_")
                rt = self.api.resource(f"{group}/{entry['v']}" if group else entry["v"], kind)
                if self.api.store.find(rt, ns or None, name) is not None:
                    self.api.write(
                        rt, ns or None, name, "delete", None, manager="kustomize-controller"
                    )
        return entries

    def _failure(self, revision: str) -> Failure | None:
        sha = revision.rsplit(":", 1)[-1]
        return next((f for f in self.failures if f.revision in (None, sha)), None)

    # Helpers

    def _write(self, rt: ResourceType, obj: Obj, status: Obj, manager: str) -> None:
        requested = obj["metadata"].get("annotations", {}).get(RECONCILE_ANNOTATION)
        if requested and rt is GITREPOSITORY:
            status["lastHandledReconcileAt"] = requested
        meta = obj["metadata"]
        self.api.write_status(
            rt.api_version, rt.kind, meta["namespace"], meta["name"], status, manager
        )

    @staticmethod
    def _git(url: str, *args: str) -> str:
        path = url2pathname(urlsplit(url).path) if url.startswith("file://") else url
        return subprocess.run(
            ["git", "-C", path, *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    @staticmethod
    def _interval(spec: Obj) -> float:
        return parse_duration(spec.get("interval", "10m"))

    @classmethod
    def _retry_interval(cls, spec: Obj) -> float:
        return (
            parse_duration(spec["retryInterval"])
            if "retryInterval" in spec
            else cls._interval(spec)
        )


@contextmanager
def flux_syncing(
    api: FakeKubeAPI, repo: Path, name: str, *, apply_delay: float, **sync: Any
) -> Iterator[FakeFlux]:
    """A FakeFlux with one sync (`FakeFlux.add_sync`), its first revision applied; a fake that broke
    fails the test when the block ends."""
    with FakeFlux(api, apply_delay=apply_delay) as flux:
        flux.add_sync(repo, name, **sync)
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", sync.get("branch", "main")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        namespace = sync.get("namespace", "flux-system")
        eventually(
            lambda: api.store.find(KUSTOMIZATION, namespace, name),
            lambda ks: (ks or {}).get("status", {}).get("lastAppliedRevision", "").endswith(head),
            what=f"Flux to apply {head[:12]} for {name}",
        )
        yield flux
    assert not flux.errors
