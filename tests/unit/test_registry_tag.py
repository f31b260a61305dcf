"""Registry.tag: the push step's readable tag, given to the pushed manifest in the registry;
Registry.copy: a candidate CI staged, copied into the repository CD reads (a real registry)."""

from __future__ import annotations

import json

import pytest

from baton.registry import MANIFEST_TYPES, Registry, RegistryError
from tests.unit.test_case_23_kustomize_app_publishes import push_image

pytestmark = pytest.mark.docker


def test_a_pushed_manifest_gets_a_second_tag_without_a_second_push(
    registry_client: Registry,
) -> None:
    digest = push_image(registry_client, "tagged/app", "c" * 40)

    assert registry_client.tag("tagged/app", digest, "git-cccccccccccc") == digest
    assert registry_client.manifest_digest("tagged/app", "git-cccccccccccc") == digest
    # Again: the same manifest under the same tag.
    assert registry_client.tag("tagged/app", digest, "git-cccccccccccc") == digest
    descriptor = registry_client.descriptor("tagged/app", "git-cccccccccccc")
    assert descriptor is not None
    assert descriptor["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


def test_a_manifest_the_registry_lacks_cannot_be_tagged(registry_client: Registry) -> None:
    missing = "sha256:" + "d" * 64
    with pytest.raises(RegistryError, match=f"has no manifest tagged/app@{missing} to tag"):
        registry_client.tag("tagged/app", missing, "git-dddddddddddd")


def test_a_candidate_is_copied_with_its_blobs_under_its_tags_and_the_same_digest(
    registry_client: Registry,
) -> None:
    layer = registry_client.push_blob("candidates/web", b"a layer CI built")
    config = registry_client.push_blob("candidates/web", b'{"os": "linux"}')
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPES[1],
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": 15,
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 16}
        ],
    }
    body = json.dumps(manifest).encode()
    digest = registry_client.push_manifest("candidates/web", "c" * 40, body, MANIFEST_TYPES[1])

    tags = ["c" * 40, "git-cccccccccccc"]
    assert registry_client.copy("candidates/web", digest, "web", tags) == digest

    for tag in tags:
        assert registry_client.manifest_digest("web", tag) == digest
    assert registry_client.blob("web", layer) == b"a layer CI built"
    assert registry_client.blob("web", config) == b'{"os": "linux"}'
    # Again (a retried step): nothing changes.
    assert registry_client.copy("candidates/web", digest, "web", tags) == digest
    assert registry_client.manifest_digest("web", tags[0]) == digest


def test_an_index_is_copied_with_the_manifests_it_lists(registry_client: Registry) -> None:
    image = push_image(registry_client, "candidates/multi", "amd64")
    descriptor = registry_client.descriptor("candidates/multi", image)
    index = {"schemaVersion": 2, "mediaType": MANIFEST_TYPES[0], "manifests": [descriptor]}
    digest = registry_client.push_manifest(
        "candidates/multi", "v1", json.dumps(index).encode(), MANIFEST_TYPES[0]
    )

    registry_client.copy("candidates/multi", digest, "multi", ["v1"])

    assert registry_client.manifest_digest("multi", "v1") == digest
    assert registry_client.manifest("multi", image) is not None


def test_a_candidate_the_registry_lacks_cannot_be_copied(registry_client: Registry) -> None:
    missing = "sha256:" + "d" * 64
    with pytest.raises(RegistryError, match=f"has no manifest candidates/web@{missing} to copy"):
        registry_client.copy("candidates/web", missing, "web", ["v1"])


def test_a_blob_the_source_lacks_is_not_mounted_from_nowhere(registry_client: Registry) -> None:
    # distribution starts an upload (202) where it cannot mount; there is nothing to upload.
    missing = "sha256:" + "e" * 64
    with pytest.raises(RegistryError, match=f"has no blob candidates/web@{missing} to copy"):
        registry_client.mount_blob("candidates/web", missing, "web")


def test_publish_keeps_what_is_there_else_copies_the_candidate_else_pushes(
    registry_client: Registry,
) -> None:
    pushes: list[str] = []

    def push() -> str:
        pushes.append("pushed")
        return push_image(registry_client, "published/app", "v1")

    staged = push_image(registry_client, "candidates/published/app", "v2")

    assert registry_client.publish("published/app", "v2", push) == staged  # the candidate
    assert registry_client.manifest_digest("published/app", "v2") == staged
    assert pushes == []
    pushed = registry_client.publish("published/app", "v1", push)  # no candidate: pushed
    assert pushes == ["pushed"]
    assert registry_client.publish("published/app", "v1", push) == pushed  # held: kept
    assert pushes == ["pushed"]
