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
    """Reads and writes the GitOps repository through a cached mirror and the forge.

    Its base is `config.base_branch`; `of(environment)` is the repository as an environment sees
    it, on that environment's branch with `gitops.layout: branches`.
    """

    def __init__(
        self, config: GitOpsConfig, forge: Forge, workspace: Workspace, origin: str | None = None
    ) -> None:
        self.config = config
        self.forge = forge
        self.workspace = workspace
        # Where the base branch starts from, while it does not exist yet (an environment's).
        self.origin = origin or config.base_branch

    def of(self, environment: str) -> GitOpsRepo:
        """The repository as `environment` sees it: its branch as the base (`gitops.layout`)."""
        branch = self.config.branch_of(environment)
        if branch == self.config.base_branch:
            return self
        config = self.config.model_copy(update={"base_branch": branch})
        return GitOpsRepo(config, self.forge, self.workspace, origin=self.config.base_branch)

    def _mirror(self) -> Repo:
        return self.workspace.mirror(self.config.repo, self.forge.clone_url(self.config.repo))

    def _base(self, mirror: Repo) -> str:
        """The base branch's ref; its origin's while it does not exist yet."""
        ref = f"refs/heads/{self.config.base_branch}"
        try:
            mirror.git.rev_parse("--verify", "--quiet", ref)
        except GitCommandError:
            return f"refs/heads/{self.origin}"
        return ref

    def _branched(self) -> Repo:
        """The mirror, once the base branch exists: made from its origin's head when missing."""
        mirror = self._mirror()
        if self._base(mirror) == f"refs/heads/{self.config.base_branch}":
            return mirror
        target = f"refs/heads/{self.origin}:refs/heads/{self.config.base_branch}"
        try:  # never forced: made meanwhile by another rollout, it stays as it is
            mirror.git.push(self.forge.clone_url(self.config.repo), target)
        except GitCommandError as exc:
            if "rejected" not in str(exc.stderr) and "already exists" not in str(exc.stderr):
                raise GitOpsError(
                    f"cannot create {self.config.base_branch} in {self.config.repo} from "
                    f"{self.origin}: {exc.stderr.strip()}"
                ) from exc
        return self._mirror()

    def manifests_path(self, app: AppConfig, env: EnvironmentConfig) -> str:
        """The manifests' path in `env`'s (first) cluster: the one a render is diffed against."""
        return self.manifests_paths(app, env)[0]

    def manifests_paths(self, app: AppConfig, env: EnvironmentConfig) -> list[str]:
        """The manifests' path in each of `env`'s clusters (`environments[].clusters`), in order."""
        paths = (
            self.config.path.format(env=env.name, app=app.name, cluster=target.cluster)
            for target in env.targets
        )
        return [f"{path.strip('/')}/{MANIFESTS}" for path in paths]

    def values_path(self, app: AppConfig, env: EnvironmentConfig) -> str:
        return self.config.values.format(env=env.name, app=app.name, cluster=env.cluster)

    def overlay_path(self, app: AppConfig, env: EnvironmentConfig) -> str:
        """The directory of a Kustomize app's inputs for `env` (its overlay, a component)."""
        path = self.config.overlay.format(env=env.name, app=app.name, cluster=env.cluster)
        return path.strip("/")

    def read_tree(self, path: str, revision: str | None = None) -> dict[str, str]:
        """Every file under the directory `path` at `revision` (default: the base branch head),
        path → content; empty when the directory is absent."""
        mirror = self._mirror()
        revision = revision or self._base(mirror)
        try:
            listing = mirror.git.ls_tree("-r", "-z", "--name-only", revision, "--", path)
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
        mirror = self._mirror()
        return mirror.git.rev_parse(self._base(mirror))

    def read(self, path: str, revision: str | None = None) -> str | None:
        """A file's content at `revision` (default: the base branch head), or None when absent."""
        mirror = self._mirror()
        revision = revision or self._base(mirror)
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
        mirror = self._branched()
        try:
            return mirror.git.rev_parse(f"refs/heads/{branch}")
        except GitCommandError:
            pass
        scratch = Path(tempfile.mkdtemp(prefix="baton-gitops-"))
        try:
            clone = Repo.clone_from(
                mirror.git_dir, scratch, branch=self.config.base_branch, depth=1, no_local=True
            )
            _write(clone, scratch, {path: content, **(also or {})})
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

    # A rollout's branch on a base that moved

    def fork_point(self, head: str) -> str:
        """Where `head`'s branch left the base branch: their merge base."""
        mirror = self._mirror()
        return mirror.git.merge_base(head, self._base(mirror))

    def behind(self, head: str) -> bool:
        """Whether the base branch has commits `head` lacks (it moved since the branch was made)."""
        return not self.is_ancestor(self.head(), head)

    def changes(self, head: str, since: str | None = None) -> dict[str, str | None]:
        """What `head` changes since `since` (default: where its branch left the base branch):
        path → content at `head` (None: deleted)."""
        mirror = self._mirror()
        since = since or self.fork_point(head)
        listing = mirror.git.diff("--name-only", "-z", "--no-renames", since, head)
        return {path: self.read(path, head) for path in filter(None, listing.split("\0"))}

    def moved(self, head: str, paths: list[str]) -> list[str]:
        """Which of `paths` (files or directories) the base branch changed since `head`'s branch
        left it."""
        if not paths:
            return []
        mirror = self._mirror()
        base = self._base(mirror)
        listing = mirror.git.diff("--name-only", "-z", self.fork_point(head), base, "--", *paths)
        return sorted(filter(None, listing.split("\0")))

    def same_change(self, candidate: str, approved: str) -> bool:
        """Whether `candidate` is `approved`'s change moved onto a newer base: one commit whose
        parent is on the base branch, changing the same files to the same content."""
        mirror = self._mirror()
        try:
            parent = mirror.git.rev_parse(f"{candidate}^1")
        except GitCommandError:
            return False
        if not self.is_ancestor(parent, self._base(mirror)):
            return False
        try:
            return self.changes(candidate, since=parent) == self.changes(approved)
        except GitCommandError:  # `approved` is not in the mirror (its branch is gone)
            return False

    def rebase(self, branch: str, head: str, files: Mapping[str, str | None]) -> str:
        """Replace `branch` (now at `head`) by one commit on the base branch's current head that
        writes `files` (path → content, None: delete), with `head`'s message; returns it.

        Only Baton's branch is rewritten, and only while it still is at `head` (a lease): the base
        branch is never pushed to, so nothing merged there can be lost.
        """
        mirror = self._branched()
        message = mirror.git.log("-1", "--format=%B", head).strip()
        scratch = Path(tempfile.mkdtemp(prefix="baton-gitops-"))
        try:
            clone = Repo.clone_from(
                mirror.git_dir, scratch, branch=self.config.base_branch, depth=1, no_local=True
            )
            _write(clone, scratch, files)
            with clone.git.custom_environment(**IDENTITY):
                clone.git.commit("--allow-empty", "-m", message)
            rebased = clone.head.commit.hexsha
            lease = f"--force-with-lease=refs/heads/{branch}:{head}"
            clone.git.push(
                lease, self.forge.clone_url(self.config.repo), f"HEAD:refs/heads/{branch}"
            )
        except GitCommandError as exc:
            raise GitOpsError(
                f"cannot move {branch} of {self.config.repo} onto "
                f"{self.config.base_branch}: {exc.stderr.strip()}"
            ) from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return rebased


def _write(clone: Repo, root: Path, files: Mapping[str, str | None]) -> None:
    """Stage `files` (path → content; None deletes) in the work tree of `clone` at `root`."""
    for file, text in files.items():
        if text is None:
            clone.git.rm("-q", "--ignore-unmatch", file)
        else:
            target = root / file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            clone.git.add(file)
