"""The stores workers hand things to each other through: a real registry, and the local ones."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from baton.artifacts import ArtifactStore
from baton.config import Credentials, RegistryConfig
from baton.models import Artifact
from baton.registry import Registry
from baton.settings import Settings
from baton.store import (
    BlobNotFound,
    FileBlobStore,
    FileRecordStore,
    RegistryBlobStore,
    RegistryRecordStore,
    Stores,
)
from tests.fixtures.docker import LocalRegistry

MANIFESTS = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sample-app\n"
COMMIT = "a" * 40
DIGEST = "sha256:" + "5" * 64


def _artifact(commit: str = COMMIT, digest: str = DIGEST) -> Artifact:
    return Artifact(
        app="sample-app",
        commit=commit,
        image="127.0.0.1:5000/sample-app",
        image_digest=digest,
        image_ref=f"127.0.0.1:5000/sample-app@{digest}",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.fixture(params=["registry", "file"])
def blobs(request, tmp_path: Path):
    if request.param == "file":
        return FileBlobStore(tmp_path / "blobs")
    return RegistryBlobStore(request.getfixturevalue("registry_client"))


@pytest.fixture(params=["registry", "file"])
def records(request, tmp_path: Path):
    if request.param == "file":
        return FileRecordStore(tmp_path / "records")
    return RegistryRecordStore(request.getfixturevalue("registry_client"), prefix="test/records")


def test_a_blob_is_read_back_by_its_sha256_from_another_client(blobs, registry: LocalRegistry):
    ref = blobs.put(MANIFESTS)
    assert ref == "sha256:" + hashlib.sha256(MANIFESTS.encode()).hexdigest()
    assert blobs.put(MANIFESTS) == ref  # storing the same text again changes nothing
    if isinstance(blobs, RegistryBlobStore):  # a worker elsewhere, with a client of its own
        # Referenced by a tagged manifest, so the registry's garbage collection keeps it.
        assert blobs.registry.has_tag(blobs.repository, ref.removeprefix("sha256:"))
        with Registry(registry.url, registry.username, registry.password) as other:
            assert RegistryBlobStore(other).get(ref) == MANIFESTS
    assert blobs.get(ref) == MANIFESTS


def test_an_unknown_or_malformed_reference_is_one_clear_not_found(blobs):
    with pytest.raises(BlobNotFound, match="re-run the step"):
        blobs.get("sha256:" + "0" * 64)
    with pytest.raises(BlobNotFound):
        blobs.get("../../etc/passwd")


def test_records_are_replaced_and_listed(records):
    assert records.load("reconcile", "heads") is None
    assert records.keys("artifacts/sample-app") == []
    records.save("reconcile", "heads", json.dumps({"sample-app": "1" * 40}).encode())
    records.save("reconcile", "heads", json.dumps({"sample-app": "2" * 40}).encode())
    assert json.loads(records.load("reconcile", "heads") or b"") == {"sample-app": "2" * 40}
    records.save("artifacts/sample-app", COMMIT, b"{}")
    records.save("artifacts/sample-app", "b" * 40, b"{}")
    assert records.keys("artifacts/sample-app") == [COMMIT, "b" * 40]


def test_a_record_key_that_is_no_tag_is_refused(records):
    with pytest.raises(ValueError, match="tag-shaped key"):
        records.save("reconcile", "heads/main", b"{}")


def test_artifact_records_travel_through_the_registry(registry_client: Registry):
    store = ArtifactStore(RegistryRecordStore(registry_client, prefix="test/artifact-records"))
    saved = store.save(_artifact())
    assert store.load("sample-app", COMMIT) == saved
    assert store.save(_artifact()) == saved  # the same content: kept as is
    assert store.commits("sample-app") == [COMMIT]
    assert store.load("sample-app", "c" * 40) is None


def test_workers_use_the_registry_unless_told_to_keep_to_their_home(
    tmp_path: Path, registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BATON_STORE")  # the default: the registry
    monkeypatch.setenv("TEST_REGISTRY_PASSWORD", registry.password)
    config = RegistryConfig(
        url=registry.host,
        credentials=Credentials(username=registry.username, token_env="TEST_REGISTRY_PASSWORD"),
    )
    shared = Stores.configured(Settings(), config)
    ref = shared.logs.put("step output\n")
    assert not (tmp_path / "home").exists()  # nothing on this worker's disk
    assert Stores.configured(Settings(), config).logs.get(ref) == "step output\n"
    monkeypatch.setenv("BATON_STORE", "home")
    local = Stores.configured(Settings(), config)
    assert local.logs.put("step output\n") == ref
    assert (tmp_path / "home" / "logs" / "steps").is_dir()
