"""The GitOps repository: environment values in, rendered manifests out, one branch per rollout.

Beside each environment's `manifests.yaml` Baton commits `rendered-from.json`, what they were
rendered from (the templates by digest, the image, the environment's inputs), and, when the
templates changed, `templates.diff`, the full template diff the PR body summarizes. Neither is
YAML: Flux's generated kustomization takes every `.yaml` file of the path as Kubernetes objects.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from git import GitCommandError, Repo
from pydantic import BaseModel, ValidationError

from baton.config import AppConfig, EnvironmentConfig, GitOpsConfig
from baton.forges.base import Forge, ForgeError
from baton.models import Artifact
from baton.workspace import Workspace, authenticated

MANIFESTS = "manifests.yaml"
RENDERED_FROM = "rendered-from.json"
TEMPLATES_DIFF = "templates.diff"
FIXED_TIME = datetime(1980, 1, 1, tzinfo=UTC)
IDENTITY = {"GIT_AUTHOR_NAME": "Baton", "GIT_AUTHOR_EMAIL": "baton@localhost"}
IDENTITY |= {"GIT_COMMITTER_NAME": "Baton", "GIT_COMMITTER_EMAIL": "baton@localhost"}


class GitOpsError(ForgeError):
    """The GitOps repository does not hold what a rollout needs."""


def rollout_branch(app: str, environment: str, commit: str) -> str:
    """The idempotency key of a rollout's GitOps change: one branch (and so one PR) per rollout."""
    return f"baton/{app}/{environment}/{commit[:12]}"


def revert_branch(app: str, environment: str, commit: str) -> str:
    """The branch (and so the one PR) that reverts a rollout's GitOps change."""
    return f"{rollout_branch(app, environment, commit)}-revert"


def placeholder_manifests(app: str, environment: str, commit: str) -> str:
    """The manifests that take the place of an app's rolled-back first deploy: comments, no objects.

    Deleting the file could leave the Kustomization's path missing, a failure to Flux and to the
    local cluster; an empty set of objects both apply (Flux since 2.3), pruning what was deployed.
    """
    return (
        f"# {app} has no objects in {environment}: Baton rolled back its first deploy here,\n"
        f"# {app} commit {commit[:12]}. The next deploy of {app} to {environment} replaces this.\n"
    )


class Templates(BaseModel):
    """The published templates a render used, by digest: a Helm chart or a Kustomize bundle."""

    kind: Literal["chart", "bundle"] = "chart"
    ref: str  # oci://127.0.0.1:5000/charts/sample-app, oci://127.0.0.1:5000/kustomize/app
    version: str  # the chart's version; the bundle's tag (the commit)
    digest: str
    path: str | None = None  # bundle: the app's kustomization in it

    @classmethod
    def of(cls, artifact: Artifact) -> Templates:
        """The templates `artifact` publishes: its Kustomize bundle, else its chart."""
        if artifact.kustomize_ref is not None:
            return cls(
                kind="bundle",
                ref=artifact.kustomize_ref,
                version=artifact.kustomize_tag or artifact.commit,
                digest=artifact.kustomize_digest or "",
                path=artifact.kustomize_path,
            )
        return cls(
            ref=artifact.chart_ref or "",
            version=artifact.chart_version or "",
            digest=artifact.chart_digest or "",
        )

    def fields(self) -> dict[str, str | None]:
        """The Artifact fields that name these templates (`chart_*` or `kustomize_*`)."""
        if self.kind == "bundle":
            return {
                "kustomize_ref": self.ref,
                "kustomize_tag": self.version,
                "kustomize_digest": self.digest,
                "kustomize_path": self.path,
            }
        return {"chart_ref": self.ref, "chart_version": self.version, "chart_digest": self.digest}

    def describe(self) -> str:
        version = self.version[:12] if self.kind == "bundle" else self.version
        return f"{self.ref.rsplit('/', 1)[-1]} {version}"


class RenderedFrom(BaseModel):
    """What an environment's manifests were rendered from (`rendered-from.json`)."""

    app: str
    environment: str
    commit: str  # the app commit CI built
    image: str  # repository@sha256:...
    templates: Templates
    inputs: dict[str, str] = {}  # the environment's values or overlay files: path → content

    @classmethod
    def of(cls, artifact: Artifact, environment: str, inputs: Mapping[str, str]) -> RenderedFrom:
        return cls(
            app=artifact.app,
            environment=environment,
            commit=artifact.commit,
            image=artifact.image_ref,
            templates=Templates.of(artifact),
            inputs=dict(inputs),
        )

    @classmethod
    def parse(cls, text: str | None) -> RenderedFrom | None:
        """The record in `text`; None when there is none or it is not one (written by hand)."""
        try:
            return cls.model_validate_json(text) if text else None
        except ValidationError:
            return None

    def artifact(self) -> Artifact:
        """The artifact this record names, enough to fetch its templates again by digest."""
        image, _, digest = self.image.partition("@")
        return Artifact.model_validate(
            {
                "app": self.app,
                "commit": self.commit,
                "image": image,
                "image_digest": digest,
                "image_ref": self.image,
                "created_at": FIXED_TIME,
                **self.templates.fields(),
            }
        )

    def to_text(self) -> str:
        # A chart's record has no bundle path: leave the key out rather than write null.
        return self.model_dump_json(indent=2, exclude_none=True) + "\n"


def beside(manifests_path: str, name: str) -> str:
    """The path of file `name` in the directory of an environment's manifests."""
    return f"{manifests_path.rsplit('/', 1)[0]}/{name}" if "/" in manifests_path else name


class GitOpsRepo:
    """Reads and writes the GitOps repository through a cached mirror and the forge."""

    def __init__(self, config: GitOpsConfig, forge: Forge, workspace: Workspace) -> None:
        self.config = config
        self.forge = forge
        self.workspace = workspace

    def _mirror(self) -> Repo:
        return self.workspace.mirror(self.config.repo, self.forge.clone_url(self.config.repo))

    def manifests_path(self, app: AppConfig, env: EnvironmentConfig) -> str:
        path = self.config.path.format(env=env.name, app=app.name, cluster=env.cluster)
        return f"{path.strip('/')}/{MANIFESTS}"

    def values_path(self, app: AppConfig, env: EnvironmentConfig) -> str:
        return self.config.values.format(env=env.name, app=app.name, cluster=env.cluster)

    def overlay_path(self, app: AppConfig, env: EnvironmentConfig) -> str:
        """The directory of a Kustomize app's inputs for `env` (its overlay, a component)."""
        path = self.config.overlay.format(env=env.name, app=app.name, cluster=env.cluster)
        return path.strip("/")

    def read_tree(self, path: str, revision: str | None = None) -> dict[str, str]:
        """Every file under the directory `path` at `revision` (default: the base branch head),
        path → content; empty when the directory is absent."""
        revision = revision or f"refs/heads/{self.config.base_branch}"
        try:
            listing = self._mirror().git.ls_tree("-r", "-z", "--name-only", revision, "--", path)
        except GitCommandError:
            return {}
        files = {}
        for name in filter(None, listing.split("\0")):
            content = self.read(name, revision)
            if content is not None:
                files[name] = content
        return files

    def head(self) -> str:
        """The base branch's current commit."""
        return self._mirror().git.rev_parse(f"refs/heads/{self.config.base_branch}")

    def read(self, path: str, revision: str | None = None) -> str | None:
        """A file's content at `revision` (default: the base branch head), or None when absent."""
        mirror = self._mirror()
        revision = revision or f"refs/heads/{self.config.base_branch}"
        try:
            return mirror.git.show(f"{revision}:{path}", strip_newline_in_stdout=False)
        except GitCommandError:
            return None

    def before(self, path: str, commit: str) -> str | None:
        """A file as it was before `commit` (at its first parent), or None when absent then."""
        return self.read(path, f"{commit}^1")

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True when `descendant` is `ancestor` or contains it in its history."""
        mirror = self._mirror()
        try:
            mirror.git.merge_base("--is-ancestor", ancestor, descendant)
        except GitCommandError:
            return False
        return True

    def propose(
        self,
        branch: str,
        path: str,
        content: str | None,
        message: str,
        *,
        also: Mapping[str, str | None] | None = None,
    ) -> str:
        """Push `branch` holding `content` at `path` (and each of `also`, path → content) on top
        of the base branch in one commit; returns its head.

        `content` None deletes `path`. Idempotent: when the branch exists already (an earlier
        attempt pushed it), it is reused.
        """
        mirror = self._mirror()
        try:
            return mirror.git.rev_parse(f"refs/heads/{branch}")
        except GitCommandError:
            pass
        scratch = Path(tempfile.mkdtemp(prefix="baton-gitops-"))
        try:
            clone = Repo.clone_from(
                mirror.git_dir, scratch, branch=self.config.base_branch, depth=1, no_local=True
            )
            for file, text in {path: content, **(also or {})}.items():
                if text is None:
                    clone.git.rm("-q", "--ignore-unmatch", file)
                else:
                    target = scratch / file
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text, encoding="utf-8")
                    clone.git.add(file)
            with clone.git.custom_environment(**IDENTITY):
                clone.git.commit("-m", message)
            head = clone.head.commit.hexsha
            with authenticated(clone.git, self.forge.clone_url(self.config.repo)) as url:
                clone.git.push(url, f"HEAD:refs/heads/{branch}")
        except GitCommandError as exc:
            if "already exists" in str(exc.stderr) or "rejected" in str(exc.stderr):
                return self._mirror().git.rev_parse(f"refs/heads/{branch}")
            raise GitOpsError(
                f"cannot push {branch} to {self.config.repo}: {exc.stderr.strip()}"
            ) from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return head
