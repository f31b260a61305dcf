"""The local cluster runtime: Baton's embedded stand-in for Flux and Kubernetes.

It polls the GitOps repository's base branch (a bare repository of the local forge) the way Flux's
source-controller polls a GitRepository, and reconciles one Kustomization per app and environment
(`sync.kind: local`) the way kustomize-controller does: every new head commit is attempted, the
rendered manifests under the environment's path are applied (each Deployment's container runs on
the local docker engine as `baton-<stack>-<place>-<app>`), the readiness probe is the health
check, and the outcome is written as a Flux-shaped status (see `baton.cluster.local` for the file
layout and places) and sent to Baton's API as a signed Flux event.

Several named clusters: each cluster an environment names in `environments[].clusters` with
`sync.kind: local` is a place of its own, `<env>.<cluster>`, with its own status, container and
events (metadata `cluster`, as a Flux Alert's `eventMetadata` adds). Without
`sync.host_port_offset` a cluster's containers use host networking, so the app's ports are the
host's; with it they run on a docker network of their own, `baton-<stack>-<place>`, and each
container port P is published on 127.0.0.1:P+offset (readiness probes go there too), so two
clusters of one environment serve the same manifests on different host ports.

A head whose manifests for an environment did not change advances that environment's
`lastAppliedRevision` without touching its container, as with Flux. Containers are labelled with
the content (git tree) they run, so a restart of the runtime re-applies nothing that is in place;
on SIGTERM the runtime stops and leaves the containers running: they are the cluster (`baton dev
down` removes them, `remove_app_containers`).

Failure injection: `BATON_LOCAL_CLUSTER_FAIL=dev,staging` makes every *new* content for those
environments fail its health check without touching the running container, while re-applying the
content that last succeeded (a rollback) still works.

Run it with `python -m baton.local.cluster` (settings and config as for the rest of Baton).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import yaml
from docker.models.containers import Container

from baton import shared_http
from baton.cluster.base import SyncStatus, kustomization_name
from baton.cluster.local import LocalClusterStatus, place
from baton.config import BatonConfig, ConfigError, EnvironmentConfig, load_config
from baton.errors import BatonError, ClusterError
from baton.flux import (
    KUSTOMIZE_CONTROLLER,
    Reason,
    format_revision,
    kustomization_event,
    sign_generic_hmac,
)
from baton.forges import create_forge, local_repository
from baton.images import docker_client
from baton.local.stack import port_free
from baton.settings import Settings, read_secret

log = logging.getLogger("baton.local.cluster")

POLL_INTERVAL_S = 0.5
HEALTH_TIMEOUT_CAP_S = 120
PROBE_EVERY_S = 0.25
STOP_GRACE_S = 10
PORT_RELEASE_S = 5
LOG_LINES = 20
EVENT_TIMEOUT_S = 5
FAIL_ENV = "BATON_LOCAL_CLUSTER_FAIL"


class ReconcileFailed(ClusterError):
    """One reconciliation failed; `reason` is the Flux Ready reason the status reports."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Stopping(Exception):
    """The runtime is shutting down in the middle of a reconciliation."""


@dataclass(frozen=True)
class Workload:
    """The one container an app's rendered Deployment asks for, as the docker engine runs it."""

    deployment: str  # Deployment/<namespace>/<name>, for messages
    image: str
    pull_always: bool = False
    environment: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] | None = None
    command: list[str] | None = None
    user: str | None = None
    read_only: bool = False
    cap_drop: list[str] = field(default_factory=list)
    no_new_privileges: bool = False
    ports: list[int] = field(default_factory=list)
    readiness_url: str | None = None

    def published(self, offset: int | None) -> Workload:
        """The workload as the host reaches it when its ports are published at +`offset`: the
        readiness probe on 127.0.0.1 at the published port (no offset: host network, as is)."""
        if offset is None or self.readiness_url is None:
            return self
        url = httpx.URL(self.readiness_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        return replace(self, readiness_url=str(url.copy_with(host="127.0.0.1", port=port + offset)))


def stack_id(home: Path) -> str:
    """A short id of one Baton data directory, so two local stacks never share containers."""
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]


def remove_app_containers(
    home: Path, client: docker.DockerClient | None = None, *, graceful: bool = True
) -> list[str]:
    """Stop and remove the app containers the runtime of the stack at `home` started (labelled
    `baton.app`, named `baton-<stack>-...`) and the networks it made for them (labelled
    `baton.stack`), as `baton dev down` does: the containers' names. Each running one is given
    `STOP_GRACE_S` to stop, unless not `graceful` (removed at once). Containers and networks
    Baton did not start are never touched. EngineUnavailable: no docker engine answers."""
    client = client or docker_client()
    stack = stack_id(home)
    prefix = f"baton-{stack}-"  # as `container_name` names them
    removed = []
    for container in client.containers.list(
        all=True, filters={"label": "baton.app", "name": prefix}
    ):
        if not container.name.startswith(prefix):  # docker's name filter matches anywhere
            continue
        if graceful:
            _stop_and_remove(container)
        else:
            container.remove(force=True)
        removed.append(container.name)
    for network in client.networks.list(filters={"label": f"baton.stack={stack}"}):
        network.remove()
    return sorted(removed)


def _stop_and_remove(container: Container) -> None:
    """Stop the container within its grace period, then remove it."""
    if container.status == "running":
        container.stop(timeout=STOP_GRACE_S)
    container.remove(force=True)


def container_name(stack: str, place: str, app: str) -> str:
    """The container an app runs as in one place (`<env>` or `<env>.<cluster>`)."""
    return f"baton-{stack}-{place}-{app}"


def network_name(stack: str, place: str) -> str:
    """The docker network of a place whose ports are published (`sync.host_port_offset`)."""
    return f"baton-{stack}-{place}"


@dataclass(frozen=True)
class Target:
    """One app in one local cluster: what a Flux Kustomization reconciles."""

    environment: EnvironmentConfig  # as this cluster sees it (its `cluster` and `sync`)
    app: str
    path: str
    stack: str
    source: GitOpsSource  # the environment's branch of the GitOps repository
    named: bool = False  # the environment names its clusters (`environments[].clusters`)

    @property
    def place(self) -> str:
        return place(self.environment, self.named)

    @property
    def cluster(self) -> str | None:
        """The cluster's name, for events, when the environment names its clusters."""
        return self.environment.cluster if self.named else None

    @property
    def key(self) -> str:
        return f"{self.place}/{self.app}"

    @property
    def container(self) -> str:
        return container_name(self.stack, self.place, self.app)

    @property
    def offset(self) -> int | None:
        """Where this cluster publishes container ports (P+offset), None on the host network."""
        return self.environment.sync.host_port_offset

    @property
    def network(self) -> str:
        return "host" if self.offset is None else network_name(self.stack, self.place)

    @property
    def kustomization(self) -> str:
        return kustomization_name(self.environment, self.app)

    @property
    def health_timeout_s(self) -> float:
        return min(self.environment.sync.timeout_s, HEALTH_TIMEOUT_CAP_S)

    def spec_digest(self) -> str:
        """A digest of the settings whose change moves the Kustomization's generation on."""
        spec = [
            self.path,
            self.kustomization,
            self.environment.sync.namespace,
            self.health_timeout_s,
            self.offset,
        ]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()


class GitOpsSource:
    """Read-only plumbing access to one branch of a bare GitOps repository (no working tree)."""

    def __init__(self, repo_dir: Path, branch: str) -> None:
        self.repo_dir = Path(repo_dir)
        self.branch = branch

    def head(self) -> str | None:
        """The branch's head commit, or None while the repository or branch does not exist."""
        if not self.repo_dir.is_dir():
            return None
        return self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}^{{commit}}")

    def tree(self, commit: str, path: str) -> str | None:
        """The tree hash of `path` at `commit` (None when the path is absent or not a directory)."""
        entry = self._git("ls-tree", "-z", commit, "--", path.strip("/")) or ""
        meta = entry.split("\t", 1)[0].split()
        return meta[2] if len(meta) == 3 and meta[1] == "tree" else None

    def manifests(self, tree: str) -> str:
        """Every YAML file under `tree`, in path order, as one multi-document text."""
        listing = self._git("ls-tree", "-r", "-z", tree) or ""
        documents = []
        for entry in filter(None, listing.split("\0")):
            meta, name = entry.split("\t", 1)
            kind, blob = meta.split()[1:3]
            if kind == "blob" and name.endswith((".yaml", ".yml")):
                documents.append(self._git("cat-file", "blob", blob) or "")
        return "\n---\n".join(documents)

    def _git(self, *args: str) -> str | None:
        result = subprocess.run(
            ["git", f"--git-dir={self.repo_dir}", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip("\n") if result.returncode == 0 else None


def read_workload(manifests: str, what: str, namespace: str) -> Workload | None:
    """The container the manifests' Deployment runs, or None when they hold no Deployment.

    `what` names the manifests in messages; `namespace` is where objects without one land.

    Raises ReconcileFailed (BuildFailed) for manifests the local cluster cannot run.
    """
    try:
        objects = [o for o in yaml.safe_load_all(manifests) if isinstance(o, dict)]
    except yaml.YAMLError as exc:
        raise ReconcileFailed(
            "BuildFailed", f"{what}: manifests are not valid YAML: {exc}"
        ) from exc
    containers = []
    for obj in objects:
        if obj.get("kind") != "Deployment":
            continue
        meta = obj.get("metadata") or {}
        pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        name = f"Deployment/{meta.get('namespace') or namespace}/{meta.get('name')}"
        containers += [(name, pod, c) for c in pod.get("containers") or []]
    if not containers:
        return None
    if len(containers) > 1:
        names = ", ".join(f"{d}:{c.get('name')}" for d, _, c in containers)
        raise ReconcileFailed(
            "BuildFailed",
            f"{what}: the local cluster runs one container per app, the manifests ask for "
            f"{len(containers)}: {names}",
        )
    deployment, pod, container = containers[0]
    pod_security = pod.get("securityContext") or {}
    security = {**pod_security, **(container.get("securityContext") or {})}
    uid, gid = security.get("runAsUser"), security.get("runAsGroup")
    named_ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    if not container.get("image"):
        raise ReconcileFailed("BuildFailed", f"{deployment}: container has no image")
    return Workload(
        deployment=deployment,
        image=container["image"],
        pull_always=container.get("imagePullPolicy") == "Always",
        environment=_environment(container, objects),
        entrypoint=container.get("command"),
        command=container.get("args"),
        user=None if uid is None else f"{uid}:{gid}" if gid is not None else str(uid),
        read_only=bool(security.get("readOnlyRootFilesystem")),
        cap_drop=list((security.get("capabilities") or {}).get("drop") or []),
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
        ports=[int(p) for p in named_ports.values()],
        readiness_url=_probe_url(container.get("readinessProbe"), named_ports, deployment),
    )


def _environment(container: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, str]:
    """The container's environment: `env` values, and `envFrom`/`configMapKeyRef` read from the
    ConfigMaps among the same manifests (env wins over envFrom, as in Kubernetes). Secrets and
    field refs have nothing to resolve against locally and are left out."""
    config_maps = {
        (o.get("metadata") or {}).get("name"): o.get("data") or {}
        for o in objects
        if o.get("kind") == "ConfigMap"
    }
    environment: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        data = config_maps.get((source.get("configMapRef") or {}).get("name"), {})
        environment |= {f"{source.get('prefix', '')}{k}": str(v) for k, v in data.items()}
    for entry in container.get("env") or []:
        ref = (entry.get("valueFrom") or {}).get("configMapKeyRef")
        if "valueFrom" not in entry:
            environment[entry["name"]] = str(entry.get("value", ""))
        elif ref and ref.get("key") in config_maps.get(ref.get("name"), {}):
            environment[entry["name"]] = str(config_maps[ref["name"]][ref["key"]])
    return environment


def _probe_url(probe: dict[str, Any] | None, named_ports: dict[str, int], what: str) -> str | None:
    http = (probe or {}).get("httpGet")
    if not http:
        return None
    port = http.get("port")
    if isinstance(port, str) and not port.isdigit():
        if port not in named_ports:
            raise ReconcileFailed(
                "BuildFailed", f"{what}: readinessProbe port {port!r} names no container port"
            )
        port = named_ports[port]
    scheme = str(http.get("scheme", "HTTP")).lower()
    return f"{scheme}://{http.get('host') or '127.0.0.1'}:{port}{http.get('path') or '/'}"


class LocalCluster:
    """Reconciles every `sync.kind: local` environment × app from the GitOps repository."""

    def __init__(
        self,
        config: BatonConfig,
        settings: Settings,
        repo_dir: Path,
        *,
        client: docker.DockerClient | None = None,
        fail_envs: set[str] | None = None,
        poll_interval_s: float = POLL_INTERVAL_S,
        max_parallel: int = 4,
    ) -> None:
        self.config = config
        self.repo_dir = repo_dir
        self.store = LocalClusterStatus(settings.home)
        self.client = client or docker_client()
        self.fail_envs = _fail_envs() if fail_envs is None else fail_envs
        self.poll_interval_s = poll_interval_s
        self.max_parallel = max_parallel
        self.events_url = settings.api_url + "/webhooks/flux"
        # The secret Baton's API checks Flux events with (see api.app).
        self.webhook_secret = read_secret("BATON_FLUX_WEBHOOK_SECRET") or settings.webhook_secret
        self.stop = threading.Event()
        self._networks = threading.Lock()
        self.targets = [
            Target(
                env,
                app.name,
                config.gitops.path.format(env=env.name, app=app.name, cluster=env.cluster),
                stack_id(settings.home),
                GitOpsSource(repo_dir, config.gitops.branch_of(env.name)),
                named=bool(environment.clusters),
            )
            for environment in config.environments
            for env in environment.targets  # a cluster's own sync may be local, or not
            if env.sync.kind == "local"
            for app in config.apps
        ]
        self.generations = self._generations()

    def run(self) -> None:
        """Reconcile until `stop` is set; reconciliations in flight are cut short, not reported."""
        log.info(
            "watching %s branch %s for %s",
            self.repo_dir,
            ", ".join(sorted({t.source.branch for t in self.targets})),
            ", ".join(t.key for t in self.targets)
            or "nothing (no environment has sync.kind local)",
        )
        in_flight: dict[str, Future[None]] = {}
        seen: set[str] = set()
        waiting = False
        with ThreadPoolExecutor(self.max_parallel, thread_name_prefix="reconcile") as pool:
            while not self.stop.is_set():
                heads = {t.source.branch: t.source.head() for t in self.targets}
                missing = sorted(branch for branch, head in heads.items() if head is None)
                if missing and not waiting:
                    log.info("waiting for branch(es) %s in %s", ", ".join(missing), self.repo_dir)
                waiting = bool(missing)
                for target in self.targets:
                    head = heads[target.source.branch]
                    if head:
                        running = in_flight.pop(target.key, None)
                        if running is not None and not running.done():
                            in_flight[target.key] = running
                            continue
                        if running is not None and running.exception() is not None:
                            log.error(
                                "%s: reconciliation crashed",
                                target.key,
                                exc_info=running.exception(),
                            )
                        # The first pass looks at every target once, so containers lost while the
                        # runtime was down (an engine restart, say) are started again.
                        if (
                            self._take_request(target)
                            or target.key not in seen
                            or self._behind(target, head)
                        ):
                            seen.add(target.key)
                            in_flight[target.key] = pool.submit(self._reconcile, target, head)
                self.stop.wait(self.poll_interval_s)
        log.info("stopped; app containers keep running")

    def _behind(self, target: Target, head: str) -> bool:
        status = self.store.read(target.place, target.app)
        return (
            status is None
            or status.last_attempted_revision != head
            or status.observed_generation != self.generations[target.key]
        )

    def _take_request(self, target: Target) -> bool:
        path = self.store.reconcile_path(target.place, target.app)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def _reconcile(self, target: Target, head: str) -> None:
        """Attempt `head` for one target, then publish the outcome as status and event."""
        where, app = target.place, target.app
        started = time.monotonic()
        previous = self.store.read(where, app)
        base = previous or SyncStatus(observed_at=datetime.now(UTC))
        generation = self.generations[target.key]
        revision = format_revision(target.source.branch, head)
        # While reconciling, Flux reports Ready=Unknown and keeps the last observed generation.
        progressing = base.model_copy(
            update={
                "ready": None,
                "ready_reason": "Progressing",
                "ready_message": f"Reconciliation in progress for revision {revision}",
                "generation": generation,
                "observed_at": datetime.now(UTC),
            }
        )
        self.store.write(where, app, progressing)
        outcome = {
            "last_attempted_revision": head,
            "generation": generation,
            "observed_generation": generation,
        }
        try:
            replaced = self._apply(target, head, previous)
        except _Stopping:
            log.info("%s: reconciliation of %s interrupted by shutdown", target.key, revision)
            return
        except ReconcileFailed as exc:
            reason: Reason = exc.reason
            outcome |= {"ready": False, "ready_message": str(exc)}
            log.warning("%s: %s for %s: %s", target.key, reason, revision, str(exc).splitlines()[0])
        else:
            reason = "ReconciliationSucceeded"
            outcome |= {
                "last_applied_revision": head,
                "ready": True,
                "ready_message": f"Applied revision: {revision}",
            }
            log.info(
                "%s: applied %s (%s, %.1fs)",
                target.key,
                revision,
                "container replaced" if replaced else "already in place",
                time.monotonic() - started,
            )
        status = base.model_copy(
            update=outcome | {"ready_reason": reason, "observed_at": datetime.now(UTC)}
        )
        self.store.write(where, app, status)
        # Like Flux, report a new revision or a change of outcome, not every repeated check.
        if previous is None or (
            previous.last_attempted_revision,
            previous.ready,
            previous.ready_reason,
        ) != (head, status.ready, reason):
            self._send_event(target, head, reason, status)

    def _apply(self, target: Target, head: str, previous: SyncStatus | None) -> bool:
        """Make the engine run what `head` says for `target`; True if a container was replaced."""
        try:
            return self._converge(target, head, previous)
        except (docker.errors.DockerException, OSError) as exc:
            raise ReconcileFailed(
                "ReconciliationFailed", f"the docker engine failed: {exc}: is it running?"
            ) from None

    def _converge(self, target: Target, head: str, previous: SyncStatus | None) -> bool:
        tree = target.source.tree(head, target.path)
        if tree is None:
            raise ReconcileFailed(
                "ArtifactFailed",
                f"kustomization path not found: {target.path} at revision "
                f"{format_revision(target.source.branch, head)}",
            )
        healthy = previous.last_applied_revision if previous else None
        healthy_tree = target.source.tree(healthy, target.path) if healthy else None
        workload = read_workload(
            target.source.manifests(tree), target.path, target.environment.namespace
        )
        current = self._container(target.container)
        running = (
            current.labels.get("baton.tree")
            if current
            and current.status == "running"
            and current.labels.get("baton.network", "host") == target.network
            else None
        )
        if tree == healthy_tree and running == (tree if workload else None):
            if current is not None and workload is not None:
                self._wait_ready(current, workload.published(target.offset), target)
            return False
        if target.environment.name in self.fail_envs and tree != healthy_tree:
            raise ReconcileFailed(
                "HealthCheckFailed",
                f"health check failed: {workload.deployment if workload else target.path} "
                f"not ready (failure injected by {FAIL_ENV})",
            )
        self._deploy(target, workload, head, tree)
        return True

    def _container(self, name: str) -> Container | None:
        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def _deploy(self, target: Target, workload: Workload | None, head: str, tree: str) -> None:
        if workload is not None:
            # Pull before stopping the old container: a bad image leaves the old one serving.
            self._pull(workload)
        self._remove(target.container)
        if workload is None:
            return
        self._wait_ports_free(workload, target)
        if target.offset is None:
            network: dict[str, Any] = {"network_mode": "host"}
        else:
            offset = target.offset
            network = {
                "network": self._network(target),
                "ports": {f"{port}/tcp": ("127.0.0.1", port + offset) for port in workload.ports},
            }
        try:
            container = self.client.containers.run(
                workload.image,
                name=target.container,
                detach=True,
                labels={
                    "baton.env": target.environment.name,
                    "baton.app": target.app,
                    "baton.revision": head,
                    "baton.tree": tree,
                    "baton.network": target.network,
                    **({"baton.cluster": target.cluster} if target.cluster else {}),
                },
                environment=workload.environment,
                entrypoint=workload.entrypoint,
                command=workload.command,
                user=workload.user,
                read_only=workload.read_only,
                cap_drop=workload.cap_drop or None,
                security_opt=["no-new-privileges"] if workload.no_new_privileges else None,
                **network,
            )
        except docker.errors.APIError as exc:
            raise ReconcileFailed(
                "HealthCheckFailed",
                f"health check failed: {workload.deployment}: container cannot start "
                f"(CreateContainerError): {exc.explanation}",
            ) from None
        self._wait_ready(container, workload.published(target.offset), target)
        if target.offset is not None:
            log.info(
                "%s: serves %s",
                target.key,
                ", ".join(f"{p} on 127.0.0.1:{p + target.offset}" for p in workload.ports),
            )

    def _network(self, target: Target) -> str:
        """The place's own docker network, created at its first container (and kept, as the
        containers are)."""
        with self._networks:
            if not self.client.networks.list(names=[target.network]):
                self.client.networks.create(
                    target.network,
                    driver="bridge",
                    check_duplicate=True,
                    labels={"baton.stack": target.stack, "baton.place": target.place},
                )
        return target.network

    def _pull(self, workload: Workload) -> None:
        if not workload.pull_always:
            try:
                self.client.images.get(workload.image)
                return
            except docker.errors.ImageNotFound:
                pass
        registry = self.config.registry
        # Baton's registry credentials go to Baton's registry only, never to a third party; the
        # pull ones, as a cluster's imagePullSecrets hold.
        credentials = registry.pulling()
        auth = None
        if workload.image.startswith(registry.url + "/") and credentials.username:
            auth = {"username": credentials.username, "password": credentials.token() or ""}
        try:
            self.client.images.pull(workload.image, auth_config=auth)
        except docker.errors.APIError as exc:
            raise ReconcileFailed(
                "HealthCheckFailed",
                f"health check failed: {workload.deployment}: cannot pull {workload.image} "
                f"(ErrImagePull): {exc.explanation}",
            ) from None

    def _remove(self, name: str) -> None:
        container = self._container(name)
        if container is not None:
            _stop_and_remove(container)

    def _wait_ports_free(self, workload: Workload, target: Target) -> None:
        """Wait (briefly) until the host ports the workload takes are free."""
        deadline = time.monotonic() + PORT_RELEASE_S
        offset = target.offset or 0
        where = (
            f"cluster {target.cluster}"
            if target.cluster
            else f"environment {target.environment.name}"
        )
        fix = (
            f"or change the sync.host_port_offset of {where}"
            if target.offset is not None
            else "or change service.port"
        )
        for port in workload.ports:
            while not port_free(port + offset):
                if time.monotonic() > deadline:
                    published = f" (container port {port} + {offset})" if offset else ""
                    raise ReconcileFailed(
                        "ReconciliationFailed",
                        f"{workload.deployment}: port {port + offset}{published} on 127.0.0.1 is "
                        f"in use by a process that is not part of the local cluster: stop it {fix}",
                    )
                time.sleep(0.1)

    def _wait_ready(self, container: Container, workload: Workload, target: Target) -> None:
        """Wait for the readiness probe (or, without one, a running container) like a health check."""
        timeout_s = target.health_timeout_s
        started = time.monotonic()
        while True:
            container.reload()
            elapsed = time.monotonic() - started
            if container.status in ("exited", "dead"):
                code = container.attrs["State"].get("ExitCode")
                raise ReconcileFailed(
                    "HealthCheckFailed",
                    f"health check failed after {elapsed:.1f}s: {workload.deployment}: container "
                    f"exited with code {code}{_last_lines(container)}",
                )
            if container.status == "running" and _probe(workload.readiness_url):
                return
            if elapsed > timeout_s:
                raise ReconcileFailed(
                    "HealthCheckFailed",
                    f"health check failed after {elapsed:.1f}s: timeout waiting for: "
                    f"[{workload.deployment} readiness {workload.readiness_url}]"
                    f"{_published_hint(target)}{_last_lines(container)}",
                )
            if self.stop.wait(PROBE_EVERY_S):
                raise _Stopping

    def _send_event(self, target: Target, head: str, reason: Reason, status: SyncStatus) -> None:
        """POST the Flux event to Baton's API, signed generic-hmac; failures are only logged."""
        event = kustomization_event(
            target.kustomization,
            target.environment.sync.namespace,
            head,
            target.source.branch,
            reason,
            status.ready_message or "",
            "info" if status.ready else "error",
        )
        if target.cluster:  # as an Alert with `eventMetadata: {cluster: NAME}` sends it
            event["metadata"]["cluster"] = target.cluster
        body = json.dumps(event).encode()
        headers = {
            "Content-Type": "application/json",
            "Gotk-Component": KUSTOMIZE_CONTROLLER,
            "X-Signature": sign_generic_hmac(self.webhook_secret, body),
        }
        try:
            response = shared_http.client().post(
                self.events_url, content=body, headers=headers, timeout=EVENT_TIMEOUT_S
            )
        except httpx.HTTPError as exc:
            log.warning("%s: event not delivered to %s: %s", target.key, self.events_url, exc)
            return
        if response.is_error:
            log.warning(
                "%s: event refused by %s: HTTP %d %s",
                target.key,
                self.events_url,
                response.status_code,
                response.text[:200],
            )

    def _generations(self) -> dict[str, int]:
        """Each target's generation: bumped (and saved) when its spec differs from the last run's."""
        path = self.store.root / "state.json"
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            state = {}
        kustomizations = state.setdefault("kustomizations", {})
        for target in self.targets:
            entry = kustomizations.get(target.key) or {"generation": 0}
            if entry.get("spec") != target.spec_digest():
                entry = {"generation": entry["generation"] + 1, "spec": target.spec_digest()}
            kustomizations[target.key] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, path)
        return {key: entry["generation"] for key, entry in kustomizations.items()}


def _probe(url: str | None) -> bool:
    if url is None:
        return True
    try:
        # Kubernetes counts 200-399 as ready.
        return 200 <= shared_http.client().get(url, timeout=1.0).status_code < 400
    except httpx.HTTPError:
        return False


def _published_hint(target: Target) -> str:
    if target.offset is None:
        return ""
    return (
        f"\n({target.place} publishes container ports on the host (sync.host_port_offset): "
        "the app must listen on 0.0.0.0 in its container, not on 127.0.0.1)"
    )


def _last_lines(container: Container) -> str:
    try:
        text = container.logs(tail=LOG_LINES).decode(errors="replace").strip()
    except docker.errors.APIError:
        return ""
    return f"\nlast log lines:\n{text}" if text else "\n(no log output)"


def _fail_envs() -> set[str]:
    return {name.strip() for name in os.environ.get(FAIL_ENV, "").split(",") if name.strip()}


def gitops_directory(config: BatonConfig, settings: Settings) -> Path:
    """The GitOps repository's directory on this machine, found through the forge with its read
    credentials (`forge.read_credentials`, else `credentials`), as Flux's GitRepository reads
    with its secretRef: the runtime only reads. Raises `ConfigurationError` for a repository
    that is not on this machine, the forge's errors when it refuses the token."""
    return local_repository(create_forge(config.forge.reading(), settings), config.gitops.repo)


def main() -> int:
    """`python -m baton.local.cluster`: run until SIGTERM or Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings()
    try:
        config = load_config(settings.config_file())
        cluster = LocalCluster(config, settings, gitops_directory(config, settings))
    except BatonError as exc:
        print(f"local cluster: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: cluster.stop.set())
    cluster.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
