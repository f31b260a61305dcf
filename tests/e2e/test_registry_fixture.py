"""The Docker fixtures work together: build FROM the local base image, push with auth, read back."""

from __future__ import annotations

from pathlib import Path

import docker
import httpx
import pytest

from tests.fixtures.docker import LocalRegistry

pytestmark = pytest.mark.docker

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json"
)

DOCKERFILE = """\
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}
RUN python3 -c "print('built from the local base')" > /built.txt
CMD ["python3", "-c", "print(open('/built.txt').read())"]
"""


def _push(client: docker.DockerClient, repository: str, tag: str, registry: LocalRegistry) -> str:
    """Push and return the manifest digest the engine reports; any error in the stream fails."""
    digest = None
    for event in client.api.push(
        repository, tag=tag, stream=True, decode=True, auth_config=registry.auth_config
    ):
        assert "error" not in event, event["error"]
        digest = event.get("aux", {}).get("Digest", digest)
    assert digest is not None, "push reported no digest"
    return digest


def test_pushed_image_is_served_by_digest_with_basic_auth(
    docker_client: docker.DockerClient,
    base_image: str,
    registry: LocalRegistry,
    tmp_path: Path,
) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    repository, tag = f"{registry.host}/baton-test/hello", "e2e"
    image, _ = docker_client.images.build(
        path=str(tmp_path),
        tag=f"{repository}:{tag}",
        buildargs={"BASE_IMAGE": base_image},
        network_mode="host",
        rm=True,
        forcerm=True,
    )
    try:
        output = docker_client.containers.run(image.id, network_mode="host", remove=True)
        assert output.decode().strip() == "built from the local base"

        pushed_digest = _push(docker_client, repository, tag, registry)

        manifest_url = f"{registry.url}/v2/baton-test/hello/manifests/{tag}"
        served = httpx.head(
            manifest_url,
            headers={"Accept": MANIFEST_TYPES},
            auth=(registry.username, registry.password),
        )
        assert served.status_code == 200
        assert served.headers["Docker-Content-Digest"] == pushed_digest

        anonymous = httpx.head(manifest_url, headers={"Accept": MANIFEST_TYPES})
        assert anonymous.status_code == 401
        # htpasswd auth challenges for Basic credentials directly, with no token service.
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    finally:
        # The tag only: a suite running beside this one may hold the same image (same ID).
        docker_client.images.remove(f"{repository}:{tag}")
