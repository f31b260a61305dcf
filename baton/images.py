"""Building and pushing container images with the local docker engine.

Builds use host networking (no bridge networks exist on Baton's hosts) and the engine's layer
cache, so building the same inputs again is quick and yields the same image. A push is only
reported once the registry itself serves the pushed digest.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
from pydantic import BaseModel

from baton.errors import ConfigurationError, InfrastructureError
from baton.logs import LogStore, Progress, follow
from baton.models import LogRef
from baton.registry import Registry

PROGRESS_EVERY_S = 5
LAST_LINES = 20


class BuiltImage(BaseModel):
    image_id: str  # sha256:<64 hex>, the engine's image id
    tags: list[str]
    log_ref: LogRef  # the full build output in the LogStore


class EngineUnavailable(InfrastructureError):
    """No docker engine answers."""


class ImageBuildFailed(ConfigurationError):
    """The Dockerfile did not build; `last_lines` is the end of the build's own output."""

    def __init__(self, message: str, last_lines: Sequence[str], log_ref: LogRef) -> None:
        super().__init__(message)
        self.last_lines = list(last_lines)
        self.log_ref = log_ref


class ImagePushFailed(InfrastructureError):
    """The engine could not push an image, or the registry does not serve what was pushed."""


def docker_client() -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (default: the local socket)."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(
            f"cannot reach the docker engine ({exc}): start it (`make docker`) or set DOCKER_HOST"
        ) from None
    return client


def build_image(
    context_dir: Path,
    tags: Sequence[str],
    *,
    dockerfile: str = "Dockerfile",
    buildargs: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    on_progress: Progress | None = None,
    client: docker.DockerClient | None = None,
    logs: LogStore | None = None,
) -> BuiltImage:
    """Build `dockerfile` (relative to `context_dir`) and give the image every tag in `tags`."""
    if not tags:
        raise ValueError("build_image needs at least one tag")
    client = client or docker_client()
    logs = logs or LogStore.default()
    output: list[str] = []
    image_id = None
    try:
        stream = client.api.build(
            path=str(context_dir),
            dockerfile=dockerfile,
            tag=tags[0],
            buildargs=dict(buildargs or {}),
            labels=dict(labels or {}),
            network_mode="host",
            decode=True,
            rm=True,
            forcerm=True,
        )
        for item in _reporting(stream, on_progress, f"build {tags[0]}"):
            if "error" in item:
                output.append(item["error"].rstrip() + "\n")
                raise _build_failed(tags[0], item["error"], output, logs)
            output.append(item.get("stream", ""))
            image_id = (item.get("aux") or {}).get("ID", image_id)
    except docker.errors.APIError as exc:
        # The engine refused the build outright: no Dockerfile, a bad build argument...
        raise _build_failed(tags[0], exc.explanation, output, logs) from None
    image_id = image_id or client.api.inspect_image(tags[0])["Id"]
    for extra in tags[1:]:
        repository, tag = _split_tag(extra)
        client.api.tag(image_id, repository, tag)
    return BuiltImage(image_id=image_id, tags=list(tags), log_ref=logs.put("".join(output)))


def push_image(
    image: str,
    registry: Registry,
    name: str,
    tag: str,
    *,
    on_progress: Progress | None = None,
    client: docker.DockerClient | None = None,
) -> str:
    """Tag `image` (an id or reference) as `<registry>/<name>:<tag>`, push it, return its digest.

    The digest is the one the engine reports, checked against what the registry serves.
    """
    client = client or docker_client()
    repository = registry.repository(name)
    try:
        client.api.tag(image, repository, tag)
        stream = client.api.push(
            repository, tag=tag, stream=True, decode=True, auth_config=registry.auth_config
        )
        digest = None
        for item in _reporting(stream, on_progress, f"push {repository}:{tag}"):
            if "error" in item:
                raise ImagePushFailed(f"pushing {repository}:{tag} failed: {item['error'].strip()}")
            digest = (item.get("aux") or {}).get("Digest", digest)
    except docker.errors.APIError as exc:
        raise ImagePushFailed(f"pushing {repository}:{tag} failed: {exc.explanation}") from None
    if digest is None:
        raise ImagePushFailed(f"pushing {repository}:{tag} reported no digest")
    served = registry.manifest_digest(name, tag)
    if served != digest:
        raise ImagePushFailed(
            f"registry {registry.host} serves {served or 'nothing'} for {name}:{tag}, "
            f"but the push reported {digest}: another push may have raced this one; retry"
        )
    return digest


def _build_failed(tag: str, error: str, output: list[str], logs: LogStore) -> ImageBuildFailed:
    text = "".join(output)
    last_lines = [line for line in text.splitlines() if line.strip()][-LAST_LINES:]
    return ImageBuildFailed(f"building {tag} failed: {error.strip()}", last_lines, logs.put(text))


def _reporting(
    stream: Iterable[dict[str, Any]],
    on_progress: Progress | None,
    what: str,
) -> Iterator[dict[str, Any]]:
    """The items of a build or push stream, calling `on_progress` at least every few seconds."""
    started = last_report = time.monotonic()
    latest = ""
    for item in follow(stream, every_s=1.0):
        if item is not None:
            status = item.get("stream") or item.get("status") or ""
            if status.strip():
                latest = " ".join(filter(None, [status.strip(), item.get("id")]))
            yield item
        now = time.monotonic()
        if on_progress is not None and now - last_report >= PROGRESS_EVERY_S:
            on_progress(f"{what}: {now - started:.0f}s: {latest[:120]}".rstrip(": "))
            last_report = now


def _split_tag(reference: str) -> tuple[str, str]:
    # The tag follows the last colon, unless that colon belongs to a registry port.
    repository, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest"
    return repository, tag
