"""Registry.push_blob: what it asks the registry before an upload, and a blob the registry lost
after this client saw it (a real registry)."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from baton.registry import SMALL_BLOB_BYTES, Registry, RegistryError
from baton.store import push_artifact
from tests.fixtures.docker import LocalRegistry

pytestmark = pytest.mark.docker

EMPTY = f"sha256:{hashlib.sha256(b'{}').hexdigest()}"


@pytest.fixture
def requests(registry_client: Registry) -> list[str]:
    """`METHOD path` of each request the client makes from now on."""
    made: list[str] = []
    registry_client._client.event_hooks["request"].append(
        lambda request: made.append(f"{request.method} {request.url.path}")
    )
    return made


def test_a_log_is_pushed_in_three_requests_once_the_empty_config_is_known(
    registry_client: Registry, requests: list[str]
) -> None:
    push_artifact(registry_client, "blobs/logs", None, b"first log")
    requests.clear()

    push_artifact(registry_client, "blobs/logs", None, b"second log")

    # The layer uploaded without a HEAD first (it is small), the empty config not asked for
    # again, then the manifest.
    assert [r.split(" ")[0] for r in requests] == ["POST", "PUT", "PUT"]
    assert "/manifests/" in requests[-1]


def test_a_large_blob_the_registry_has_is_not_uploaded_again(
    registry_client: Registry, requests: list[str]
) -> None:
    data = b"x" * (SMALL_BLOB_BYTES + 1)
    digest = registry_client.push_blob("blobs/large", data)
    other = Registry(registry_client.url, registry_client.username, registry_client.password)
    other._client.event_hooks["request"].append(
        lambda request: requests.append(f"other {request.method}")
    )
    requests.clear()

    assert other.push_blob("blobs/large", data) == digest

    # Asked, not uploaded (the first request may meet the registry's challenge, and is made again).
    assert requests and set(requests) == {"other HEAD"}


def test_a_blob_the_registry_lost_is_uploaded_again_after_one_refused_manifest(
    registry_client: Registry, registry: LocalRegistry
) -> None:
    push_artifact(registry_client, "blobs/lost", "one", b"1")
    # The registry loses the empty config after this client pushed it (deleted, collected).
    with httpx.Client(auth=(registry.username, registry.password)) as admin:
        deleted = admin.delete(f"{registry.url}/v2/blobs/lost/blobs/{EMPTY}")
    assert deleted.status_code == 202

    with pytest.raises(RegistryError, match="answered 400 to PUT"):
        push_artifact(registry_client, "blobs/lost", "two", b"2")
    push_artifact(registry_client, "blobs/lost", "two", b"2")  # the activity's retry

    assert registry_client.manifest_digest("blobs/lost", "two") is not None
    assert registry_client.blob("blobs/lost", EMPTY) == b"{}"
