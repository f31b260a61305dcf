"""A Kustomize app's artifact: its kustomization and everything it loads, as a Flux OCI artifact.

CI publishes the bundle and CD renders from it, never from the app repository, as it does with a
Helm app's chart. The bundle is what `flux push artifact` makes, so Flux's `OCIRepository` can
also consume it (`spec.url` = the artifact's `kustomize_ref`, `spec.ref.digest`, and a
Kustomization with `path` = `kustomize_path`):

- manifest `application/vnd.oci.image.manifest.v1+json`, config
  `application/vnd.cncf.flux.config.v1+json` (`{}`), one layer
  `application/vnd.cncf.flux.content.v1.tar+gzip` (Flux RFC-0003, fluxcd/flux2#3575);
- annotations `org.opencontainers.image.created`, `.source` and `.revision` (`sha1:<commit>`), as
  `flux push artifact --source --revision` sets them.

The layer holds, at their paths in the repository, the directories of the app's kustomization and
of every local kustomization it reaches through `resources`, `components` and `bases` (files a
kustomization loads must sit under its own directory: kustomize's default load restrictor). The
tarball is reproducible: sorted entries, fixed times and owners, gzip without a timestamp, so the
same files give the same layer digest in any checkout; the manifest's creation time is the
commit's. Publishing is idempotent: a tag already in the registry is reused, never pushed again.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from baton.artifacts import (
    FIXED_MTIME,
    ArtifactError,
    ArtifactStore,
    check_commit,
    record_artifact,
)
from baton.errors import ConfigurationError
from baton.models import Artifact
from baton.registry import Registry, candidate
from baton.render import KustomizeRenderer, RenderFailed

BUNDLES_NAMESPACE = "kustomize"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.cncf.flux.config.v1+json"
CONTENT_TYPE = "application/vnd.cncf.flux.content.v1.tar+gzip"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# The fields whose entries may name other kustomization directories (kustomize's `resources`
# accepts files, directories and URLs; `bases` is its deprecated predecessor).
REFERENCE_FIELDS = ("resources", "components", "bases")


class BundleInvalid(ConfigurationError):
    """The app's kustomization cannot be bundled: it reaches outside the repository, or it does
    not build from the bundle alone."""


def kustomization_file(directory: Path) -> Path | None:
    """The kustomization file of `directory`, under any of the names kustomize accepts."""
    return next(
        (directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file()),
        None,
    )


def bundle_directories(root: Path, kustomize_path: str) -> list[PurePosixPath]:
    """The kustomization directories (relative to `root`) that `kustomize_path` builds from.

    Raises BundleInvalid when a directory has no kustomization file or lies outside `root`.
    """
    root = root.resolve()
    found: list[PurePosixPath] = []
    pending = [(root / kustomize_path).resolve()]
    while pending:
        directory = pending.pop()
        relative = _inside(root, directory, kustomize_path)
        if relative in found:
            continue
        file = kustomization_file(directory)
        if file is None:
            raise BundleInvalid(
                f"{relative} (reached from {kustomize_path}) has no kustomization.yaml: "
                "add one or fix the reference"
            )
        found.append(relative)
        for entry in _references(file):
            target = (directory / entry).resolve()
            if "://" not in entry and target.is_dir():
                pending.append(target)
    return sorted(found)


def package_bundle(root: Path, kustomize_path: str) -> bytes:
    """The layer: a gzipped tarball of the kustomization's directories, reproducible."""
    directories = bundle_directories(root, kustomize_path)
    files: set[PurePosixPath] = set()
    for directory in directories:
        for path in (root / directory).rglob("*"):
            relative = path.relative_to(root)
            if path.is_file() and not path.is_symlink() and ".git" not in relative.parts:
                files.add(PurePosixPath(relative.as_posix()))
    buffer = io.BytesIO()
    stamp = int(FIXED_MTIME.timestamp())
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for entry in _with_parents(sorted(files)):
            info = tarfile.TarInfo(str(entry.path))
            info.mtime, info.uid, info.gid, info.uname, info.gname = stamp, 0, 0, "", ""
            if entry.is_dir:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = (root / entry.path).read_bytes()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def unpack_bundle(layer: bytes, dest: Path) -> Path:
    """Unpack a bundle layer into `dest` (regular files and directories only); returns `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tar:
        # The data filter refuses absolute paths, `..`, links out of dest and device files.
        tar.extractall(dest, filter="data")
    return dest


def publish_bundle(
    app: str,
    commit: str,
    root: Path,
    kustomize_path: str,
    image: str,
    image_digest: str,
    registry: Registry,
    *,
    commit_time: datetime | None = None,
    source: str = "",
    metadata: Mapping[str, str] | None = None,
    store: ArtifactStore | None = None,
) -> Artifact:
    """Push the app's kustomization for `commit` as `kustomize/<app>:<commit>` and record it.
    The bundle CI staged while its checks ran (`stage_bundle`) is copied, not pushed again.

    Before pushing, the bundle is unpacked and built on its own, so a kustomization that loads
    anything the bundle lacks fails here (BundleInvalid), not at its first rollout.
    """
    check_commit(commit)
    name = f"{BUNDLES_NAMESPACE}/{app}"
    digest = registry.publish(
        name,
        commit,
        lambda: push_bundle(root, kustomize_path, registry, name, commit, commit_time, source),
    )
    published = {
        "kustomize_ref": f"oci://{registry.host}/{name}",
        "kustomize_tag": commit,
        "kustomize_digest": digest,
        "kustomize_path": kustomize_path,
    }
    return record_artifact(app, commit, image, image_digest, published, metadata, store)


def stage_bundle(
    app: str, commit: str, root: Path, kustomize_path: str, registry: Registry, source: str
) -> str:
    """Push the app's kustomization for `commit` as a candidate (`candidates/kustomize/<app>`),
    the bytes `publish_bundle` would push, which then copies it; its digest. Idempotent."""
    check_commit(commit)
    name = candidate(f"{BUNDLES_NAMESPACE}/{app}")
    staged = registry.manifest_digest(name, commit)
    return staged or push_bundle(root, kustomize_path, registry, name, commit, None, source)


def push_bundle(
    root: Path,
    kustomize_path: str,
    registry: Registry,
    name: str,
    commit: str,
    commit_time: datetime | None,
    source: str,
) -> str:
    """Package, build on its own (BundleInvalid) and push the kustomization as `name:commit`;
    its digest."""
    layer = package_bundle(root, kustomize_path)
    _check_builds(layer, kustomize_path)
    config = b"{}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": _descriptor(CONFIG_TYPE, config, registry.push_blob(name, config)),
        "layers": [_descriptor(CONTENT_TYPE, layer, registry.push_blob(name, layer))],
        "annotations": {
            "org.opencontainers.image.created": _rfc3339(commit_time or FIXED_MTIME),
            "org.opencontainers.image.revision": f"sha1:{commit}",
            "org.opencontainers.image.source": source,
        },
    }
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return registry.push_manifest(name, commit, body, MANIFEST_TYPE)


def fetch_bundle(artifact: Artifact, dest: Path, registry: Registry) -> Path:
    """Pull the artifact's bundle (by digest) and unpack it into `dest`; returns `dest`, where
    the kustomization is at `artifact.kustomize_path`."""
    if not (artifact.kustomize_ref and artifact.kustomize_digest and artifact.kustomize_path):
        raise ArtifactError(
            f"the artifact of {artifact.app} {artifact.commit[:12]} holds no Kustomize bundle: "
            "publish it again (re-run CI) after configuring the app with kustomize"
        )
    name = artifact.kustomize_ref.removeprefix("oci://").split("/", 1)[1]
    missing = ArtifactError(
        f"bundle {name}@{artifact.kustomize_digest} of {artifact.app} {artifact.commit[:12]} is "
        f"not in registry {registry.host}: publish the artifact again (re-run CI)"
    )
    manifest = registry.manifest(name, artifact.kustomize_digest)
    if manifest is None:
        raise missing
    layers = [
        layer
        for layer in json.loads(manifest).get("layers", [])
        if layer.get("mediaType") == CONTENT_TYPE
    ]
    if len(layers) != 1:
        raise ArtifactError(
            f"{name}@{artifact.kustomize_digest} has no single {CONTENT_TYPE} layer"
        )
    layer = registry.blob(name, layers[0]["digest"])
    if layer is None:
        raise missing
    return unpack_bundle(layer, Path(dest))


def _check_builds(layer: bytes, kustomize_path: str) -> None:
    with tempfile.TemporaryDirectory(prefix="baton-bundle-") as tmp:
        overlay = unpack_bundle(layer, Path(tmp)) / kustomize_path
        try:
            KustomizeRenderer(overlay).render("", "")
        except RenderFailed as exc:
            raise BundleInvalid(
                f"{kustomize_path} does not build from its bundle alone ({exc}): keep every file "
                "it loads under the directory of the kustomization that loads it"
            ) from None


def _references(file: Path) -> list[str]:
    try:
        kustomization = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BundleInvalid(f"cannot read {file}: {' '.join(str(exc).split())}") from None
    if not isinstance(kustomization, dict):
        raise BundleInvalid(f"{file} is not a YAML mapping")
    entries: list[Any] = []
    for field in REFERENCE_FIELDS:
        entries += kustomization.get(field) or []
    return [str(e) for e in entries if isinstance(e, str)]


def _inside(root: Path, directory: Path, kustomize_path: str) -> PurePosixPath:
    try:
        return PurePosixPath(directory.relative_to(root).as_posix())
    except ValueError:
        raise BundleInvalid(
            f"{kustomize_path} reaches {directory}, outside the repository: keep every "
            "kustomization it uses in the repository"
        ) from None


class _Entry:
    def __init__(self, path: PurePosixPath, is_dir: bool) -> None:
        self.path, self.is_dir = path, is_dir


def _with_parents(files: list[PurePosixPath]) -> Iterator[_Entry]:
    """Each file preceded by its not yet listed parent directories, in a stable order."""
    listed: set[PurePosixPath] = set()
    for file in files:
        for parent in reversed(file.parents[:-1]):
            if parent not in listed:
                listed.add(parent)
                yield _Entry(parent, True)
        yield _Entry(file, False)


def _descriptor(media_type: str, data: bytes, digest: str) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
