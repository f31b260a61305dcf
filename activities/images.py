"""Mirror activities: re-read third-party sources into Baton's registry, and propose the PRs that
move pins of a mirrored image to its new digest. Each is idempotent."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from git import GitCommandError, Repo
from temporalio import activity

from activities.context import current
from activities.errors import typed_errors
from activities.heartbeat import heartbeating
from baton.gitops import IDENTITY
from baton.mirror import (
    MirroredImage,
    MirrorState,
    bump_pins,
    config_commit,
    mark_bumped,
    mirror,
)
from baton.workspace import CheckoutError, authenticated

MAX_FILE_BYTES = 1_000_000  # larger files are data, not places a pin lives


def _state() -> MirrorState:
    return MirrorState(current().stores.records)


@activity.defn
@heartbeating
@typed_errors
def refresh_mirrors() -> list[MirroredImage]:
    """Re-read every `images.mirror` source; copy new digests; every entry as it now stands."""
    ctx = current()
    commit = config_commit(ctx.settings.config_file())
    return mirror(ctx.config.images.mirror, ctx.registry, _state(), config_commit=commit)


def bump_branch(image: MirroredImage) -> str:
    """The branch (and so the one PR per repository) that moves pins to `image`."""
    return "baton/mirror/" + image.image.rpartition("/")[2].replace(":", "-")


@activity.defn
@heartbeating
@typed_errors
def propose_pin_bumps(image: MirroredImage) -> list[str]:
    """Open, in each app repository that pins `image`'s previous digest, a PR moving the pins to
    the new one; the open bump PRs (`<repo>#<number>`). Each takes the ordinary change path; once
    none is open and nothing pins the previous digest, no update waits (`mark_bumped`)."""
    ctx = current()
    opened = []
    branch = bump_branch(image)
    for repo in sorted({app.repo for app in ctx.config.apps}):
        clone_url = ctx.forge.clone_url(repo)
        mirror_repo = ctx.workspace.mirror(repo, clone_url)
        base = _default_branch(mirror_repo, clone_url)
        existing = ctx.forge.find_pull_request(repo, branch)
        if existing is not None:
            opened.append(f"{repo}#{existing.number}")
            continue
        if not _push_bump(mirror_repo, clone_url, base, branch, image):
            continue
        pr = ctx.forge.open_pull_request(
            repo,
            branch,
            base,
            f"Bump {image.previous_image} to {image.image.rpartition(':')[2]}",
            _body(image),
            author="baton",
        )
        opened.append(f"{repo}#{pr.number}")
    mark_bumped(_state(), image, opened)
    return opened


def _push_bump(
    mirror_repo: Repo, clone_url: str, base: str, branch: str, image: MirroredImage
) -> bool:
    """Push `branch` with the pins moved, on top of `base`; False when nothing pins the image."""
    scratch = Path(tempfile.mkdtemp(prefix="baton-bump-"))
    try:
        clone = Repo.clone_from(mirror_repo.git_dir, scratch, branch=base, depth=1, no_local=True)
        changed = []
        for name in clone.git.ls_files("-z").split("\0"):
            path = scratch / name
            if not name or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
                continue
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue
            bumped = bump_pins(text, image)
            if bumped != text:
                path.write_text(bumped)
                changed.append(name)
        if not changed:
            return False
        clone.git.add(*changed)
        with clone.git.custom_environment(**IDENTITY):
            clone.git.commit("-m", f"Bump {image.previous_image} to {image.image}")
        with authenticated(clone.git, clone_url) as url:
            clone.git.push(url, f"HEAD:refs/heads/{branch}")
    except GitCommandError as exc:
        raise CheckoutError(f"cannot push {branch}: {exc.stderr.strip()}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return True


def _default_branch(mirror_repo: Repo, clone_url: str) -> str:
    with authenticated(mirror_repo.git, clone_url) as url:
        symref = str(mirror_repo.git.ls_remote("--symref", url, "HEAD"))
    first = symref.splitlines()[0] if symref else ""
    if first.startswith("ref: refs/heads/"):
        return first.removeprefix("ref: refs/heads/").split()[0]
    return "main"


def _body(image: MirroredImage) -> str:
    """What the bump PR says: the source and both digests, the new readable tag, and the commit
    of the configuration that asked for the mirror."""
    asked = (
        f", as `images.mirror` asks in the configuration at commit `{image.config_commit}`"
        if image.config_commit
        else ""
    )
    return (
        f"The source `{image.source}` now points at `{image.source_digest}` (it was "
        f"`{image.previous_digest}`): an upstream update, such as a security fix. Baton mirrored "
        f"it as `{image.image}`; this PR moves the pins of `{image.previous_image}` to it.\n\n"
        f"Mirrored by digest at {image.mirrored_at:%Y-%m-%d %H:%M} UTC{asked}. Like any PR, it "
        "goes through the PR pipeline and, once merged, CI and CD through every environment's "
        "gates."
    )
