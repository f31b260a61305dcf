"""The GitOps repository: environment values in, rendered manifests out, one branch per rollout."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from git import GitCommandError, Repo

from baton.config import AppConfig, EnvironmentConfig, GitOpsConfig
from baton.forges.base import Forge, ForgeError
from baton.workspace import Workspace

MANIFESTS = "manifests.yaml"
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

    def propose(self, branch: str, path: str, content: str | None, message: str) -> str:
        """Push `branch` holding `content` at `path` on top of the base branch; returns its head.

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
            target = scratch / path
            if content is None:
                clone.git.rm("-q", "--ignore-unmatch", path)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
                clone.git.add(path)
            with clone.git.custom_environment(**IDENTITY):
                clone.git.commit("-m", message)
            head = clone.head.commit.hexsha
            clone.git.push(self.forge.clone_url(self.config.repo), f"HEAD:refs/heads/{branch}")
        except GitCommandError as exc:
            if "already exists" in str(exc.stderr) or "rejected" in str(exc.stderr):
                return self._mirror().git.rev_parse(f"refs/heads/{branch}")
            raise GitOpsError(
                f"cannot push {branch} to {self.config.repo}: {exc.stderr.strip()}"
            ) from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return head
