"""Third-party images mirrored into Baton's registry, by digest, registry to registry.

Each `images.mirror` entry's source tag is read on the source registry; the manifest behind it
(all platforms of an index) is copied with skopeo (github.com/containers/skopeo, Debian
`skopeo`), digests preserved, to `<registry>/<name>:<tag>-<digest12>`, a tag that never moves,
and `<name>:<tag>`, which follows the source. What was copied, from where, and the commit of the
configuration that asked for it is attached to the image in the registry (an annotations-only
OCI artifact whose subject is the image: the digest cannot change, so the image's own labels
cannot) and recorded in `mirrors.json` under Baton's data directory. A later run that finds a new
digest behind the source tag (a security update upstream) mirrors it under its own readable tag
and marks the entry as having an update waiting for its pins.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from baton import private
from baton.config import MirrorEntry
from baton.errors import InfrastructureError, MirrorSourceNotFound
from baton.references import Reference, parse_reference
from baton.registry import Registry, write_auth_file
from baton.store import RecordStore
from baton.tools import find_tool

COPY_TIMEOUT_S = 1800
# The artifact attached to each mirrored image in Baton's registry, and its annotations.
ARTIFACT_TYPE = "application/vnd.baton.mirror.v1+json"
SOURCE = "io.baton.mirror.source"
SOURCE_DIGEST = "io.baton.mirror.source-digest"
CONFIG_COMMIT = "io.baton.mirror.config-commit"
# Docker Hub's reference domain is not the host its API answers on.
_API_HOSTS = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}


class MirrorFailed(InfrastructureError):
    """Copying an image between registries failed; the message carries skopeo's own words."""


class MirroredImage(BaseModel):
    """One mirror entry as last seen: the source digest and where Baton's registry holds it."""

    source: str  # as configured: <registry>/<repository>:<tag>
    source_digest: str  # what the source tag pointed at when last checked
    image: str  # <registry>/<name>:<tag>-<digest12>, the readable tag that never moves
    digest: str  # the digest Baton's registry serves for `image`: the source digest
    config_commit: str | None  # the commit of the configuration that asked for this image
    mirrored_at: datetime
    checked_at: datetime
    previous_digest: str | None = None  # the digest mirrored before a source update
    update_waiting: bool = False  # a new digest arrived; pins of the previous one need a bump
    bump_prs: list[str] = []  # the pull requests that moved or move the pins (`<repo>#<number>`)

    @property
    def previous_image(self) -> str | None:
        """The readable reference of the digest this one replaced, as pins still name it."""
        if self.previous_digest is None:
            return None
        repository, _, tag = self.image.rpartition(":")
        source_tag = tag.rpartition("-")[0]
        return f"{repository}:{readable_tag(source_tag, self.previous_digest)}"


def bump_pins(text: str, image: MirroredImage) -> str:
    """`text` with every pin of `image`'s previous digest (by readable tag and/or digest) moved
    to its current one; unchanged when it pins nothing of that image."""
    previous = image.previous_image
    if previous is None or image.previous_digest is None:
        return text
    repository, _, old_tag = previous.rpartition(":")
    new_tag = image.image.rpartition(":")[2]
    pinned = re.compile(
        rf"{re.escape(repository)}(?::{re.escape(old_tag)}(?![\w.-]))?(@{re.escape(image.previous_digest)})?"
    )

    def move(match: re.Match[str]) -> str:
        if match.group(0) == repository:
            return repository  # the repository alone, or with another tag: not a pin of it
        return f"{repository}:{new_tag}" + (f"@{image.digest}" if match.group(1) else "")

    return pinned.sub(move, text)


def mark_bumped(state: MirrorState, image: MirroredImage, prs: Sequence[str]) -> None:
    """Record the open pull requests that move `image`'s pins (`<repo>#<number>`), beside the
    ones recorded before. With none open, no repository pins the previous digest any more (the
    bump merged, or nothing pinned it): no update waits."""
    known = state.load()
    for key, value in known.items():
        if value.image == image.image:
            known[key] = value.model_copy(
                update={"bump_prs": sorted({*value.bump_prs, *prs}), "update_waiting": bool(prs)}
            )
    state.save(known)


class MirrorState:
    """The mirrored images, one MirroredImage per `<name>:<source tag>`: the record
    `mirrors:state` of a `baton.store.RecordStore` (the registry's, so every build worker and
    `baton images ls` read one state), or a `mirrors.json` file when given a path."""

    def __init__(self, where: RecordStore | Path) -> None:
        self.where = where

    def load(self) -> dict[str, MirroredImage]:
        if isinstance(self.where, Path):
            data = self.where.read_bytes() if self.where.is_file() else None
        else:
            data = self.where.load("mirrors", "state")
        raw = json.loads(data) if data else {}
        return {key: MirroredImage.model_validate(value) for key, value in raw.items()}

    def save(self, images: dict[str, MirroredImage]) -> None:
        data = {k: v.model_dump(mode="json") for k, v in images.items()}
        text = json.dumps(data, indent=2).encode()
        if not isinstance(self.where, Path):
            self.where.save("mirrors", "state", text)
            return
        self.where.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.where.parent, prefix=".mirrors-")
        with os.fdopen(fd, "wb") as f:
            f.write(text)
        os.replace(tmp, self.where)


def config_commit(path: Path) -> str | None:
    """The last git commit that changed `path`, or None when it is not in a git repository."""
    done = subprocess.run(
        ["git", "-C", str(path.resolve().parent), "log", "-1", "--format=%H", "--", path.name],
        capture_output=True,
        text=True,
        check=False,
    )
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def readable_tag(source_tag: str, digest: str) -> str:
    """`<source tag>-<first 12 hex of the digest>`, e.g. `7.2-3f2a9c1b4d5e` (at most 128 chars)."""
    return f"{source_tag[:115]}-{digest.removeprefix('sha256:')[:12]}"


def source_registry(entry: MirrorEntry) -> Registry:
    """The source's registry, with the entry's credentials when it has any."""
    domain = parse_reference(entry.source).domain
    assert domain is not None  # the config requires a registry in every source
    scheme = "http" if entry.plain_http else "https"
    return Registry(
        f"{scheme}://{_API_HOSTS.get(domain, domain)}",
        entry.credentials.username,
        entry.credentials.token(),
    )


def mirror(
    entries: Sequence[MirrorEntry],
    registry: Registry,
    state: MirrorState,
    *,
    config_commit: str | None,
    now: datetime | None = None,
) -> list[MirroredImage]:
    """Check every entry's source and copy what Baton's registry does not hold yet.

    Idempotent: an unchanged source is only re-checked (`checked_at`). Raises MirrorFailed or a
    RegistryError naming the entry that could not be read or copied.
    """
    now = now or datetime.now(UTC)
    known = state.load()
    results = []
    for entry in entries:
        reference = parse_reference(entry.source)
        assert reference.tag is not None  # the config requires a tag in every source
        key = f"{entry.name}:{reference.tag}"
        with source_registry(entry) as source:
            digest = source.manifest_digest(api_path(reference), reference.tag)
            if digest is None:
                raise MirrorSourceNotFound(
                    f"images.mirror {entry.source}: the source registry has no such tag: "
                    "check the source reference"
                )
            tag = readable_tag(reference.tag, digest)
            if registry.manifest_digest(entry.name, tag) != digest:
                _copy(entry, source, f"{reference.repository}@{digest}", registry, tag)
            if registry.manifest_digest(entry.name, reference.tag) != digest:
                _copy(entry, source, f"{reference.repository}@{digest}", registry, reference.tag)
        served = registry.manifest_digest(entry.name, tag)
        if served != digest:
            raise MirrorFailed(
                f"images.mirror {entry.source}: {registry.host} serves {served or 'nothing'} "
                f"for {entry.name}:{tag} after copying {digest}: check the registry"
            )
        before = known.get(key)
        if before is not None and before.source_digest == digest:
            current = before.model_copy(update={"checked_at": now})
        else:
            current = MirroredImage(
                source=entry.source,
                source_digest=digest,
                image=f"{registry.repository(entry.name)}:{tag}",
                digest=digest,
                config_commit=config_commit,
                mirrored_at=now,
                checked_at=now,
                previous_digest=before.source_digest if before else None,
                update_waiting=before is not None,
            )
        annotations = {SOURCE: entry.source, SOURCE_DIGEST: digest}
        if current.config_commit:
            annotations[CONFIG_COMMIT] = current.config_commit
        registry.attach(entry.name, digest, ARTIFACT_TYPE, annotations)
        known[key] = current
        results.append(current)
    state.save(known)
    return results


def api_path(reference: Reference) -> str:
    """The repository path the registry's API answers to: Docker Hub's official images live
    under `library/` (`docker.io/redis` is `library/redis`)."""
    if reference.domain in _API_HOSTS and "/" not in reference.path:
        return f"library/{reference.path}"
    return reference.path


def _copy(
    entry: MirrorEntry, source: Registry, source_ref: str, registry: Registry, tag: str
) -> None:
    """`skopeo copy --all --preserve-digests`: every platform, the digest unchanged."""
    with private.scratch("mirror-") as scratch:
        authfile = scratch / "auth.json"
        source_host = parse_reference(entry.source).domain
        assert source_host is not None  # the config requires a registry in every source
        write_auth_file(authfile, {source_host: source, registry.host: registry})
        command = [
            find_tool("skopeo"),
            "copy",
            "--all",
            "--preserve-digests",
            "--retry-times",
            "2",
            "--authfile",
            str(authfile),
            f"--src-tls-verify={str(not source.plain_http).lower()}",
            f"--dest-tls-verify={str(not registry.plain_http).lower()}",
            f"docker://{source_ref}",
            f"docker://{registry.repository(entry.name)}:{tag}",
        ]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=COPY_TIMEOUT_S,
                check=False,
                env={"PATH": os.environ.get("PATH", ""), "HOME": str(scratch)},
            )
        except subprocess.TimeoutExpired:
            raise MirrorFailed(
                f"images.mirror {entry.source}: copying took longer than {COPY_TIMEOUT_S}s"
            ) from None
    if done.returncode != 0:
        last = next((x for x in reversed(done.stderr.splitlines()) if x.strip()), "no output")
        raise MirrorFailed(f"images.mirror {entry.source}: skopeo copy failed: {last.strip()}")
