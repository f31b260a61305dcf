"""Checkouts of a repository at a commit, from a cached mirror; safe to call again and concurrently."""

from __future__ import annotations

import fcntl
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from git import GitCommandError, Repo

from baton.forges.base import ForgeError

SHA = re.compile(r"^[0-9a-f]{40}$")


class CheckoutError(ForgeError):
    """A commit cannot be checked out."""


class Workspace:
    """Mirrors under `root/mirrors`, one read-only checkout per commit under `root/checkouts`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        path = self.root / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def mirror(self, repo: str, clone_url: str) -> Repo:
        """The bare mirror of `repo`, fetched now.

        The clone URL may carry a forge token: it is passed to each fetch and never stored in the
        mirror's config on disk.
        """
        path = self.root / "mirrors" / f"{_safe(repo)}.git"
        with self._lock(f"mirror-{_safe(repo)}"):
            if not path.exists():
                Repo.init(path, bare=True, initial_branch="main")
            mirror = Repo(path)
            mirror.git.fetch("--prune", clone_url, "+refs/*:refs/*")
            return mirror

    def checkout(self, repo: str, clone_url: str, commit: str) -> Path:
        """A directory holding `repo` at `commit`; reused when it exists already."""
        if not SHA.match(commit):
            raise CheckoutError(f"{commit!r} is not a full commit sha")
        target = self.root / "checkouts" / _safe(repo) / commit
        if target.is_dir():
            return target
        mirror = self.mirror(repo, clone_url)
        with self._lock(f"checkout-{_safe(repo)}-{commit}"):
            if target.is_dir():
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
            try:
                clone = Repo.clone_from(mirror.git_dir, staging, no_checkout=True)
                clone.git.checkout("--detach", commit)
            except GitCommandError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise CheckoutError(
                    f"cannot check out {repo}@{commit[:12]}: {exc.stderr.strip()}"
                ) from exc
            staging.rename(target)
        return target


def _safe(repo: str) -> str:
    return repo.replace("/", "__")
