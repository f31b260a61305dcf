"""What activities act with: the worker's configuration and the adapters built from it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from baton.artifacts import ArtifactStore
from baton.cluster.base import Cluster
from baton.config import AppConfig, BatonConfig, EnvironmentConfig, load_config
from baton.environment_render import renderer_for
from baton.forges.base import Forge
from baton.gitops import GitOpsRepo
from baton.registry import Registry
from baton.render import Renderer
from baton.settings import Settings
from baton.store import BlobStore, Stores
from baton.workspace import Workspace

if TYPE_CHECKING:
    from baton.cluster.applied import AppliedCluster
    from baton.cluster.kubernetes import KubernetesAPI

K = TypeVar("K", bound="KubernetesAPI")


@dataclass
class Context:
    settings: Settings
    config: BatonConfig
    _clusters: dict[tuple[str, Path | None, str | None], Any] = field(
        default_factory=dict, init=False, repr=False
    )

    @classmethod
    def load(cls, settings: Settings | None = None) -> Context:
        settings = settings or Settings()
        return cls(settings, load_config(settings.config_file()))

    @cached_property
    def forge(self) -> Forge:
        from baton.forges import create_forge

        return create_forge(self.config.forge, self.settings)

    @cached_property
    def gitops(self) -> GitOpsRepo:
        return GitOpsRepo(self.config.gitops, self.forge, self.workspace)

    def cluster(self, environment: EnvironmentConfig) -> Cluster:
        """How to read an environment's sync status: the local runtime, Flux on Kubernetes, or
        the inventory of what Baton applied to Kubernetes itself."""
        sync = environment.sync
        if sync.kind == "local":
            from baton.cluster.local import LocalClusterStatus

            return LocalClusterStatus(self.settings.stack_dir, self.config)
        if sync.kind == "apply":
            return self.applied_cluster(environment)
        from baton.cluster.kubernetes import FluxCluster

        return self._connect(FluxCluster, environment)

    def applied_cluster(self, environment: EnvironmentConfig) -> AppliedCluster:
        """The Kubernetes cluster Baton applies `environment`'s manifests to (`sync.kind: apply`)."""
        from baton.cluster.applied import AppliedCluster

        return self._connect(AppliedCluster, environment)

    def _connect(self, kind: type[K], environment: EnvironmentConfig) -> K:
        """One API client (and discovery cache) per adapter and kubeconfig context."""
        sync = environment.sync
        key = (kind.__name__, sync.kubeconfig, sync.context)
        if key not in self._clusters:
            self._clusters[key] = kind.connect(sync.kubeconfig, sync.context)
        return self._clusters[key]

    @cached_property
    def workspace(self) -> Workspace:
        return Workspace(self.settings.home / "work")

    @cached_property
    def registry(self) -> Registry:
        return Registry.configured(self.config.registry)

    @cached_property
    def stores(self) -> Stores:
        """What activities hand each other by reference, whichever worker runs them."""
        return Stores.configured(self.settings, self.config.registry, self.config.store)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(self.stores.records)

    @property
    def blobs(self) -> BlobStore:
        """Content-addressed storage for large things kept out of workflow history (manifests)."""
        return self.stores.blobs

    def build_args(self) -> dict[str, str]:
        """Machine-level build arguments: BATON_BASE_IMAGE replaces a Dockerfile's BASE_IMAGE."""
        base = os.environ.get("BATON_BASE_IMAGE")
        return {"BASE_IMAGE": base} if base else {}

    def image_repository(self, app: AppConfig) -> str:
        """The app's image repository in the registry, e.g. 127.0.0.1:5000/sample-app."""
        return self.registry.repository(app.image)

    @property
    def logs(self) -> BlobStore:
        """Full outputs of pipeline steps, read back by the API's board and `baton watch`."""
        return self.stores.logs

    def checkout(self, repo: str, commit: str) -> Path:
        return self.workspace.checkout(repo, self.forge.clone_url(repo), commit)

    def tree(self, repo: str, commit: str) -> str:
        """The id of `commit`'s tree (`Workspace.tree`)."""
        return self.workspace.tree(repo, self.forge.clone_url(repo), commit)

    def renderer(self, app: AppConfig, workdir: Path) -> Renderer:
        """The app's templates at a checkout, as CI renders them: its Helm chart, or its
        kustomization with its test inputs (`test_values`, a component) included."""
        if app.chart:
            return renderer_for(app, workdir / app.chart, registry=self.registry)
        tests = [workdir / app.test_values] if app.test_values else []
        return renderer_for(app, workdir, components=tests)


_current: Context | None = None


def install(context: Context) -> None:
    """Make `context` the one activities in this process use (done once by the worker)."""
    global _current
    _current = context


def current() -> Context:
    if _current is None:
        raise RuntimeError("activities.context.install() was not called by the worker")
    return _current
