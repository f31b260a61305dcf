"""Flux's wire formats, shared by Baton's ingress, its Kubernetes adapter and the local cluster runtime.

- Revisions: `<branch>@sha1:<40 hex>` (Flux v2.0+), `sha1:<hex>` (a commit alone) and the older
  `<branch>/<sha>`; Baton works with the bare commit sha.
- Events: the JSON the notification-controller forwards to a `generic(-hmac)` provider, with the
  revision under metadata `revision` (current) or `<api group>/revision` (older controllers).
- `generic-hmac` signatures: `X-Signature: <sha1|sha256|sha512>=<hex HMAC of the body>`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

KUSTOMIZATION_API_VERSION = "kustomize.toolkit.fluxcd.io/v1"
KUSTOMIZE_CONTROLLER = "kustomize-controller"

Severity = Literal["info", "error"]
Reason = Literal[
    "Progressing",
    "ReconciliationSucceeded",
    "ReconciliationFailed",
    "HealthCheckFailed",
    "BuildFailed",
    "ArtifactFailed",
]

_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")
_SIGNATURE_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


def parse_revision(value: str | None) -> str | None:
    """The commit sha (lowercase) in a Flux revision string, or None when it names no git commit.

    `main@sha1:<sha>`, `v1.2.0@sha1:<sha>`, `sha1:<sha>`, the older `main/<sha>` and a bare sha
    are accepted; OCI digests (`latest@sha256:...`) are not commits and give None.
    """
    if not value:
        return None
    text = value.strip().rsplit("@", 1)[-1]
    if text.startswith("sha1:"):
        text = text.removeprefix("sha1:")
    elif "/" in text:
        text = text.rsplit("/", 1)[-1]
    return text.lower() if _SHA1.match(text) else None


def format_revision(branch: str, sha: str) -> str:
    """The revision string Flux reports for commit `sha` on `branch`: `<branch>@sha1:<sha>`."""
    return f"{branch}@sha1:{sha}"


def event_revision(event: Mapping[str, Any]) -> str | None:
    """The commit sha a Flux event reports, from metadata `revision` or `<api group>/revision`."""
    metadata = event.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    if "revision" in metadata:
        return parse_revision(str(metadata["revision"]))
    for key, value in metadata.items():
        if isinstance(key, str) and key.endswith("/revision"):
            return parse_revision(str(value))
    return None


def event_cluster(event: Mapping[str, Any]) -> str | None:
    """The cluster a Flux event comes from: metadata `cluster`, which the cluster's Alert adds
    with `spec.eventMetadata: {cluster: NAME}` (notification-controller `combineEventMetadata`);
    None when it names none."""
    metadata = event.get("metadata")
    cluster = metadata.get("cluster") if isinstance(metadata, Mapping) else None
    return cluster if isinstance(cluster, str) and cluster else None


def sign_generic_hmac(secret: str, body: bytes) -> str:
    """The `X-Signature` value a `generic-hmac` provider sends: `sha256=<hex HMAC of body>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_generic_hmac(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` (`<sha1|sha256|sha512>=<hex>`) is the HMAC of `body` keyed with `secret`."""
    if not header or "=" not in header:
        return False
    algorithm, _, received = header.strip().partition("=")
    digest = _SIGNATURE_HASHES.get(algorithm.lower())
    if digest is None:
        return False
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    # Bytes: compare_digest refuses non-ASCII str, and a header may carry any latin-1 text.
    return hmac.compare_digest(expected.encode(), received.strip().lower().encode())


def kustomization_event(
    name: str,
    namespace: str,
    revision_sha: str,
    branch: str,
    reason: Reason,
    message: str,
    severity: Severity,
    *,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """The Event the notification-controller forwards for a Kustomization's reconciliation.

    The uid is derived from namespace and name, so every event of one Kustomization names the same
    object, as a real cluster's do.
    """
    when = (timestamp or datetime.now(UTC)).astimezone(UTC)
    return {
        "involvedObject": {
            "apiVersion": KUSTOMIZATION_API_VERSION,
            "kind": "Kustomization",
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kustomization/{namespace}/{name}")),
        },
        "severity": severity,
        "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "message": message[:39_000],
        "reason": reason,
        "metadata": {"revision": format_revision(branch, revision_sha)},
        "reportingController": KUSTOMIZE_CONTROLLER,
        "reportingInstance": f"{KUSTOMIZE_CONTROLLER}-{socket.gethostname()}",
    }
