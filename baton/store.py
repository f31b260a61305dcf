"""Where one activity leaves what another reads, on whichever worker: a store every worker reaches.

Workers share nothing but Temporal and the outside systems, never a disk: rendered manifests,
step logs, artifact records and the reconciler's baseline travel by reference through the OCI
registry Baton already runs. Two shapes:

- `BlobStore`: content-addressed text, keyed by `sha256:<hex>` of its UTF-8 bytes (a `LogRef`).
  `RegistryBlobStore` keeps each text as a blob of one repository (distribution-spec v1.1
  "Pushing blobs" / "Pulling blobs"); `baton.logs.LogStore` is the same protocol on a local
  directory, for one process alone (tests, `baton render`).
- `RecordStore`: small named records (JSON bytes) under a kind, that may be replaced and listed.
  `RegistryRecordStore` keeps record `key` of kind `kind` as the OCI artifact
  `baton/records/<kind>:<key>` (artifactType `application/vnd.baton.record.v1+json`, one layer
  holding the bytes); listing is the registry's tag list. `FileRecordStore` is the local one.

Processes that only read (the API's board) open `StoreReaders`: the same stores without their
writing methods, signed in with the registry's pull credentials (`registry.pull_credentials`), so
that they never hold the push password and no code path of theirs can write.

Every blob is the layer of a tagged artifact (a blob's tag is its hex digest), so the registry's
garbage collection (`registry garbage-collect`, which deletes blobs no manifest references) keeps
them; the registry's own retention expires them. `baton store gc` expires the blobs of the S3
store and of BATON_HOME's (`ExpiringBlobStore.expire`): a put of what is there refreshes its age.

baton.yaml's `store: {kind: s3, bucket, ...}` keeps the same blobs and records in an S3-compatible
bucket instead (`baton.s3store`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from baton.config import RegistryConfig, StoreConfig
from baton.errors import InfrastructureError
from baton.models import LogRef
from baton.registry import MANIFEST_TYPES, Registry
from baton.settings import Settings

BLOBS_REPOSITORY = "baton/blobs"
LOGS_REPOSITORY = "baton/logs"
RECORDS_REPOSITORY = "baton/records"
RECORD_TYPE = "application/vnd.baton.record.v1+json"
_REF = re.compile(r"^sha256:([0-9a-f]{64})$")
# An OCI tag (distribution-spec): what a record key must be.
_KEY = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_KIND = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


class BlobNotFound(InfrastructureError):
    """A blob reference names nothing the store holds (or is not a `sha256:<hex>` reference)."""

    def __init__(self, ref: str, where: object) -> None:
        super().__init__(
            f"{ref} is not in {where}: the store was emptied or the reference is wrong; "
            "re-run the step to produce it again"
        )


class BlobReader(Protocol):
    """Content-addressed text, read: `get` gives the text of a `sha256:<hex>` back."""

    def get(self, ref: LogRef) -> str: ...


class BlobStore(BlobReader, Protocol):
    """Content-addressed text: `put` returns `sha256:<hex>`, `get` gives the text back."""

    def put(self, text: str) -> LogRef: ...


@runtime_checkable
class ExpiringBlobStore(BlobStore, Protocol):
    """A blob store that can delete what was last stored before a time (`baton store gc`): the
    S3 store and BATON_HOME's; the registry keeps what it holds (its own retention expires it)."""

    def expire(self, before: datetime, *, dry_run: bool = False) -> int: ...


class RecordReader(Protocol):
    """Named records of a kind (`artifacts/sample-app`, `reconcile`), read."""

    def load(self, kind: str, key: str) -> bytes | None: ...

    def keys(self, kind: str) -> list[str]: ...


class RecordStore(RecordReader, Protocol):
    """Named records of a kind, replaced on save."""

    def save(self, kind: str, key: str, data: bytes) -> None: ...


def digest_of(ref: LogRef, where: object) -> str:
    """The hex digest of a `sha256:<hex>` reference; BlobNotFound for anything else."""
    match = _REF.match(ref)
    if match is None:
        raise BlobNotFound(ref, where)
    return match.group(1)


def check_record(kind: str, key: str) -> None:
    """ValueError unless `kind` is a repository path and `key` an OCI tag."""
    if not _KIND.match(kind) or not _KEY.match(key):
        raise ValueError(f"record {kind}:{key} needs a lowercase path kind and a tag-shaped key")


class FileBlobStore:
    """Content-addressed text files under `root` (`root/ab/cdef...`): one machine's disk, for a
    process alone (tests, `baton render`); workers use `RegistryBlobStore`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def default(cls) -> FileBlobStore:
        """The store under the Baton data directory (`$BATON_HOME/logs`)."""
        return cls(Settings().home / "logs")

    def put(self, text: str) -> LogRef:
        """Store `text` and return its reference; storing the same text again is a no-op."""
        data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        try:
            os.utime(path)  # already there: its age (`expire`) counts from this use
        except FileNotFoundError:
            _write(path, data)
        return f"sha256:{digest}"

    def expire(self, before: datetime, *, dry_run: bool = False) -> int:
        """Delete the texts last stored before `before` (`baton store gc`); how many."""
        old = [
            path
            for path in self.root.glob("??/*")
            if not path.name.startswith(".tmp-") and path.stat().st_mtime < before.timestamp()
        ]
        for path in [] if dry_run else old:
            path.unlink(missing_ok=True)
        return len(old)

    def get(self, ref: LogRef) -> str:
        """The text stored under `ref`."""
        try:
            return self._path(digest_of(ref, self.root)).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BlobNotFound(ref, self.root) from None

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]


class RegistryBlobReader:
    """Blobs of repository `repository` on `registry` (default `baton/blobs`), read only."""

    def __init__(self, registry: Registry, repository: str = BLOBS_REPOSITORY) -> None:
        self.registry = registry
        self.repository = repository

    def __str__(self) -> str:
        return self.registry.repository(self.repository)

    def get(self, ref: LogRef) -> str:
        data = self.registry.blob(self.repository, f"sha256:{digest_of(ref, self)}")
        if data is None:
            raise BlobNotFound(ref, self)
        return data.decode()


class RegistryBlobStore(RegistryBlobReader):
    """Blobs of repository `repository` on `registry`, read and written."""

    def put(self, text: str) -> LogRef:
        """Push `text` as a blob, and tag an artifact holding it `<hex>` so that the registry's
        garbage collection, which deletes blobs no manifest references, keeps it."""
        layer = push_artifact(self.registry, self.repository, None, text.encode())
        return str(layer["digest"])


class RegistryRecordReader:
    """Records as OCI artifacts `<prefix>/<kind>:<key>` on `registry` (see the module doc), read
    only."""

    def __init__(self, registry: Registry, prefix: str = RECORDS_REPOSITORY) -> None:
        self.registry = registry
        self.prefix = prefix

    def load(self, kind: str, key: str) -> bytes | None:
        check_record(kind, key)
        name = f"{self.prefix}/{kind}"
        digest = self.registry.manifest_digest(name, key)
        manifest = self.registry.manifest(name, digest) if digest else None
        if manifest is None:
            return None
        layers = json.loads(manifest).get("layers") or []
        return self.registry.blob(name, layers[0]["digest"]) if layers else None

    def keys(self, kind: str) -> list[str]:
        check_record(kind, "latest")
        return sorted(self.registry.tags(f"{self.prefix}/{kind}"))


class RegistryRecordStore(RegistryRecordReader):
    """Records as OCI artifacts `<prefix>/<kind>:<key>` on `registry`, read and saved."""

    def save(self, kind: str, key: str, data: bytes) -> None:
        check_record(kind, key)
        push_artifact(self.registry, f"{self.prefix}/{kind}", key, data)


def push_artifact(registry: Registry, name: str, tag: str | None, data: bytes) -> dict[str, object]:
    """Push `data` as the one layer of an OCI artifact (artifactType RECORD_TYPE) tagged `tag`
    (None: the layer's hex digest) in repository `name`; the layer's descriptor."""
    layer: dict[str, object] = {
        "mediaType": "application/json",
        "digest": registry.push_blob(name, data),
        "size": len(data),
    }
    empty = {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": registry.push_blob(name, b"{}"),
        "size": 2,
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPES[1],
        "artifactType": RECORD_TYPE,
        "config": empty,
        "layers": [layer],
    }
    body = json.dumps(manifest, sort_keys=True).encode()
    reference = tag or str(layer["digest"]).removeprefix("sha256:")
    registry.push_manifest(name, reference, body, MANIFEST_TYPES[1])
    return layer


class FileRecordStore:
    """Records as files `<root>/<kind>/<key>.json`: one machine's, for tests and single hosts."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def save(self, kind: str, key: str, data: bytes) -> None:
        check_record(kind, key)
        _write(self.root / kind / f"{key}.json", data)

    def load(self, kind: str, key: str) -> bytes | None:
        check_record(kind, key)
        path = self.root / kind / f"{key}.json"
        return path.read_bytes() if path.is_file() else None

    def keys(self, kind: str) -> list[str]:
        check_record(kind, "latest")
        return sorted(p.stem for p in (self.root / kind).glob("*.json"))


@dataclass(frozen=True)
class Stores:
    """The stores activities hand things over through, and the API reads logs from."""

    blobs: BlobStore  # rendered manifests and their records
    logs: BlobStore  # full outputs of pipeline steps (`StepResult.log_ref`)
    records: RecordStore  # artifact records, the reconciler's baseline

    @classmethod
    def configured(
        cls, settings: Settings, registry: RegistryConfig, store: StoreConfig | None = None
    ) -> Stores:
        """The store baton.yaml's `store` names (BATON_STORE, when set, in its place): the
        registry's (the default), an S3-compatible bucket's (`baton.s3store`), or directories
        under BATON_HOME (`home`: one host running every worker, the API and the CLI)."""
        store = store or StoreConfig()
        kind = settings.store or store.kind
        if kind == "home":
            return cls.home(settings)
        if kind == "s3":
            from baton import s3store  # boto3 only where the s3 store is used

            bucket = s3store.S3Bucket(store, store.credentials)
            return cls(
                s3store.S3BlobStore(bucket, "blobs"),
                s3store.S3BlobStore(bucket, "logs"),
                s3store.S3RecordStore(bucket),
            )
        client = Registry.configured(registry)
        return cls(
            RegistryBlobStore(client, BLOBS_REPOSITORY),
            RegistryBlobStore(client, LOGS_REPOSITORY),
            RegistryRecordStore(client),
        )

    @classmethod
    def home(cls, settings: Settings) -> Stores:
        """Directories under BATON_HOME: one host running every worker, the API and the CLI."""
        return cls(
            FileBlobStore(settings.home / "blobs"),
            FileBlobStore(settings.home / "logs" / "steps"),
            FileRecordStore(settings.home / "records"),
        )


@dataclass(frozen=True)
class StoreReaders:
    """The same stores as `Stores`, for a process that only reads (the API): no writing methods,
    and signed in with the registry's pull credentials (`RegistryConfig.pulling`)."""

    blobs: BlobReader
    logs: BlobReader
    records: RecordReader

    @classmethod
    def configured(
        cls, settings: Settings, registry: RegistryConfig, store: StoreConfig | None = None
    ) -> StoreReaders:
        """What `Stores.configured` opens, to read: the registry's (with its pull credentials),
        the bucket's (with `store.read_credentials`, else `store.credentials`), or the
        directories under BATON_HOME (BATON_STORE=home)."""
        store = store or StoreConfig()
        kind = settings.store or store.kind
        if kind == "home":
            home = Stores.home(settings)
            return cls(home.blobs, home.logs, home.records)
        if kind == "s3":
            from baton import s3store

            bucket = s3store.S3Bucket(store, store.read_credentials or store.credentials)
            return cls(
                s3store.S3BlobReader(bucket, "blobs"),
                s3store.S3BlobReader(bucket, "logs"),
                s3store.S3RecordReader(bucket),
            )
        client = Registry.configured(registry, pull_only=True)
        return cls(
            RegistryBlobReader(client, BLOBS_REPOSITORY),
            RegistryBlobReader(client, LOGS_REPOSITORY),
            RegistryRecordReader(client),
        )


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a concurrent reader never sees a partial file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
