"""Registry.tag: the push step's readable tag, given to the pushed manifest in the registry."""

from __future__ import annotations

import pytest

from baton.registry import Registry, RegistryError
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
