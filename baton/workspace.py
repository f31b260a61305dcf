"""Checkouts of a repository at a commit, from a cached mirror; safe to call again and concurrently."""

from __future__ import annotations

import fcntl
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from git import GitCommandError, Repo
from git.cmd import Git

from baton import private
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

    def mirror(self, repo: str, clone_url: str, holding: str | None = None) -> Repo:
        """The bare mirror of `repo`, fetched now (with `holding`, a commit: unless it holds it
        already, a commit's content never changing).

        The clone URL may carry a forge token: git gets it from a credential file for the fetch
        (`authenticated`), never on its command line or in the mirror's config on disk.
        """
        path = self.root / "mirrors" / f"{_safe(repo)}.git"
        with self._lock(f"mirror-{_safe(repo)}"):
            if not path.exists():
                Repo.init(path, bare=True, initial_branch="main")
            mirror = Repo(path)
            if holding is not None and _holds(mirror, holding):
                return mirror
            with authenticated(mirror.git, clone_url) as url:
                mirror.git.fetch("--prune", url, "+refs/*:refs/*")
            return mirror

    def tree(self, repo: str, clone_url: str, commit: str) -> str:
        """The id of `commit`'s tree (`git rev-parse <commit>^{tree}`), from the mirror (fetched
        when it lacks the commit): two commits with one tree hold the same files, bit for bit."""
        if not SHA.match(commit):
            raise CheckoutError(f"{commit!r} is not a full commit sha")
        mirror = self.mirror(repo, clone_url, holding=commit)
        try:
            return str(mirror.git.rev_parse(f"{commit}^{{tree}}"))
        except GitCommandError as exc:
            raise CheckoutError(
                f"{repo} has no commit {commit[:12]}: {exc.stderr.strip()}"
            ) from exc

    def checkout(self, repo: str, clone_url: str, commit: str) -> Path:
        """A directory holding `repo` at `commit`; reused when it exists already.

        Steps of one pipeline ask for the same commit at the same time: the first makes it
        while the others wait, and the mirror is fetched only when it lacks the commit (a
        commit's content never changes), not once per step."""
        if not SHA.match(commit):
            raise CheckoutError(f"{commit!r} is not a full commit sha")
        target = self.root / "checkouts" / _safe(repo) / commit
        if target.is_dir():
            return target
        with self._lock(f"checkout-{_safe(repo)}-{commit}"):
            if target.is_dir():
                return target
            mirror = self.mirror(repo, clone_url, holding=commit)
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


@contextmanager
def authenticated(git: Git, url: str) -> Iterator[str]:
    """`url` without the token its userinfo may carry, for `git` to use within the block: git
    reads the token from a 0600 credential-store file in the process's private directory
    (`baton.private`), removed after the block, so it never shows on a command line (readable
    by every user of the host in /proc) nor in a repository's config. A URL without a token is
    yielded as it is."""
    parts = urlsplit(url)
    if parts.password is None:
        yield url
        return
    host = parts.netloc.rsplit("@", 1)[-1]
    with private.scratch("git-") as scratch:
        # git-credential-store's format: one URL per line, userinfo percent-encoded as in `url`.
        store = private.write_secret(
            scratch / "credentials", urlunsplit((parts.scheme, parts.netloc, "", "", "")) + "\n"
        )
        helpers = {
            "GIT_CONFIG_COUNT": "2",
            # An empty helper first: the host's configured helpers are not asked, nor told.
            "GIT_CONFIG_KEY_0": "credential.helper",
            "GIT_CONFIG_VALUE_0": "",
            "GIT_CONFIG_KEY_1": "credential.helper",
            "GIT_CONFIG_VALUE_1": f"store --file={store}",
            "GIT_TERMINAL_PROMPT": "0",
        }
        user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
        with git.custom_environment(**helpers):
            yield urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def _holds(repo: Repo, commit: str) -> bool:
    try:
        repo.git.cat_file("-e", f"{commit}^{{commit}}")
    except GitCommandError:
        return False
    return True


def _safe(repo: str) -> str:
    return repo.replace("/", "__")
