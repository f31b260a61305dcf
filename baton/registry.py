"""An OCI registry, through the distribution API: does a tag exist, and what is its digest?

Images are pushed through the docker engine, charts through helm and mirrored images through
skopeo; this adapter is how Baton checks what the registry actually serves, so a recorded digest
is the registry's word, not the pusher's. It writes what no tool here pushes itself, following
distribution-spec v1.1 ("Pushing blobs": POST then PUT with `?digest=`; "Pushing manifests":
PUT; "Pulling": GET by digest): Kustomize bundles (`baton.bundles`) and annotations-only
artifacts attached to an image (`attach`). It copies what CI staged as a candidate into the
repository CD reads (`copy`, `candidate`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from baton import private
from baton.config import RegistryConfig
from baton.errors import InfrastructureError
from baton.references import InvalidReference, check_digest, check_repository, check_tag

# The same set on every request: the digest belongs to whichever representation is returned.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
SMALL_BLOB_BYTES = 64 * 1024
"""Up to this size, `Registry.push_blob` uploads a blob without asking first whether the registry
has it: one more upload of a log or record costs less than a HEAD each time."""
REMEMBERED_BLOBS = 4096
"""How many blobs a `Registry` client remembers having seen in the registry."""
COPY_CONCURRENCY = 8
"""Requests `Registry.copy` makes at once (the blobs of one manifest, its tags)."""
CANDIDATES_NAMESPACE = "candidates"
"""Where CI stages what it builds while its checks run: `candidates/<repository>`."""
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(InfrastructureError):
    """The registry could not answer a question about an image or chart."""


class RegistryAuthError(RegistryError):
    """The registry refused Baton's credentials (or Baton has none)."""

    retryable = False


class RegistryUnreachable(RegistryError):
    """Nothing answered at the registry's address."""


class Registry:
    """A registry at `url` (`http://127.0.0.1:5000`, `https://ghcr.io`), credentials optional."""

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        timeout_s: float = 30,
    ) -> None:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self.username = username
        self.password = password
        self._client = httpx.Client(
            base_url=self.url,
            auth=_RegistryAuth(username, password),
            timeout=timeout_s,
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        # Blobs (repository, digest) this client pushed or found, not asked for again.
        self._present: set[tuple[str, str]] = set()

    @classmethod
    def configured(cls, config: RegistryConfig, *, pull_only: bool = False) -> Registry:
        """The registry `config` names, with its credentials (from the environment, never git):
        the push ones, or with `pull_only` those readers use (`RegistryConfig.pulling`)."""
        scheme = "http" if config.plain_http else "https"
        credentials = config.pulling() if pull_only else config.credentials
        return cls(f"{scheme}://{config.url}", credentials.username, credentials.token())

    @property
    def plain_http(self) -> bool:
        return self.url.startswith("http://")

    @property
    def auth_config(self) -> dict[str, str] | None:
        """Credentials in the shape the docker SDK's `auth_config` takes."""
        if self.username is None:
            return None
        return {"username": self.username, "password": self.password or ""}

    def repository(self, name: str) -> str:
        """The full repository reference for `name` on this registry, e.g. `127.0.0.1:5000/app`."""
        return f"{self.host}/{name}"

    def manifest_digest(self, name: str, reference: str) -> str | None:
        """The digest of the manifest `name:reference` (a tag or a digest), or None if absent."""
        _check_reference(name, reference)
        path = f"/v2/{name}/manifests/{reference}"
        response = self._request("HEAD", path, name)
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        # The header is only a SHOULD in distribution-spec 1.1: hash the manifest ourselves.
        response = self._request("GET", path, name)
        if response.status_code == 404:
            return None
        return f"sha256:{hashlib.sha256(response.content).hexdigest()}"

    def push_blob(self, name: str, data: bytes) -> str:
        """Upload `data` as a blob of `name`; its digest. Skipped when this client pushed or
        found it there before, or, for a blob over SMALL_BLOB_BYTES, when the registry says it
        has it (a HEAD first). A blob gone since (deleted, garbage collected) fails the next
        manifest that names it once (`push_manifest`); the push after uploads it again."""
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        _check_reference(name, digest)
        if (name, digest) in self._present:
            return digest
        if (
            len(data) <= SMALL_BLOB_BYTES
            or self._request("HEAD", f"/v2/{name}/blobs/{digest}", name).status_code != 200
        ):
            started = self._request("POST", f"/v2/{name}/blobs/uploads/", name, expect=(202,))
            self._upload(name, started, digest, data)
        if len(self._present) >= REMEMBERED_BLOBS:
            self._present.clear()  # a long-lived worker's memory stays bounded
        self._present.add((name, digest))
        return digest

    def mount_blob(self, source: str, digest: str, name: str) -> None:
        """Make blob `source@digest` a blob of `name` too, without downloading it: a cross-
        repository mount (distribution-spec "Mounting a blob from another repository"), or,
        where the registry starts an upload instead (it may decline mounts), an upload of the
        blob read from `source`. Raises RegistryError when `source` lacks the blob."""
        _check_reference(name, digest)
        if self._request("HEAD", f"/v2/{name}/blobs/{digest}", name).status_code == 200:
            return
        started = self._request(
            "POST",
            f"/v2/{name}/blobs/uploads/",
            name,
            params={"mount": digest, "from": source},
            expect=(201, 202),
        )
        if started.status_code == 201:
            return
        data = self.blob(source, digest)
        if data is None:
            raise RegistryError(f"registry {self.host} has no blob {source}@{digest} to copy")
        self._upload(name, started, digest, data)

    def publish(self, name: str, tag: str, push: Callable[[], str]) -> str:
        """The digest of `name:tag` as CI publishes it: the one the registry holds already,
        else a copy of the candidate CI staged (`candidates/<name>:<tag>`), else the one
        `push()` pushes and returns. Idempotent where `push` is."""
        digest = self.manifest_digest(name, tag)
        if digest is not None:
            return digest
        staged = self.manifest_digest(candidate(name), tag)
        if staged is not None:
            return self.copy(candidate(name), staged, name, [tag])
        return push()

    def copy(self, source: str, digest: str, name: str, tags: Sequence[str]) -> str:
        """Copy manifest `source@digest` into repository `name` of this registry under `tags`
        (by digest alone when none): its blobs mounted (`mount_blob`), an index's manifests
        first, the bytes and so the digest unchanged; `crane copy` within one registry.
        Idempotent. Raises RegistryError when `source` lacks the manifest."""
        response = self._verified_response(f"/v2/{source}/manifests/{digest}", source, digest)
        if response is None:
            raise RegistryError(f"registry {self.host} has no manifest {source}@{digest} to copy")
        media_type = response.headers.get("Content-Type", MANIFEST_TYPES[1]).split(";")[0]
        manifest = json.loads(response.content)
        config = [manifest["config"]] if "config" in manifest else []
        # What a manifest refers to must be in `name` before it; each set at once, as crane does.
        _at_once(
            [
                partial(self.copy, source, child["digest"], name, [])
                for child in manifest.get("manifests", [])
            ]
            + [
                partial(self.mount_blob, source, blob["digest"], name)
                for blob in config + manifest.get("layers", [])
            ]
        )
        _at_once(
            [
                partial(self.push_manifest, name, reference, response.content, media_type)
                for reference in tags or [digest]
            ]
        )
        return digest

    def push_manifest(self, name: str, tag: str, manifest: bytes, media_type: str) -> str:
        """PUT `manifest` as `name:tag`; the digest the registry serves it under. When the
        registry refuses it, the blobs of `name` this client saw are asked for again next time:
        one it lacks now (MANIFEST_BLOB_UNKNOWN) is uploaded by the next `push_blob`."""
        _check_reference(name, tag)
        try:
            response = self._request(
                "PUT",
                f"/v2/{name}/manifests/{tag}",
                name,
                content=manifest,
                headers={"Content-Type": media_type},
                expect=(201,),
            )
        except RegistryError:
            self._present = {seen for seen in self._present if seen[0] != name}
            raise
        digest = f"sha256:{hashlib.sha256(manifest).hexdigest()}"
        served = response.headers.get("Docker-Content-Digest", digest)
        if served != digest:
            raise RegistryError(
                f"registry {self.host} stored {name}:{tag} as {served}, not {digest}: "
                "it rewrote the manifest"
            )
        return digest

    def tag(self, name: str, digest: str, tag: str) -> str:
        """Tag the manifest `name@digest` as `name:tag` too: one PUT of the manifest the
        registry holds, nothing uploaded again; its digest. Idempotent."""
        _check_reference(name, digest)
        response = self._request("GET", f"/v2/{name}/manifests/{digest}", name)
        if response.status_code == 404:
            raise RegistryError(f"registry {self.host} has no manifest {name}@{digest} to tag")
        media_type = response.headers.get("Content-Type", MANIFEST_TYPES[3]).split(";")[0]
        tagged = self.push_manifest(name, tag, response.content, media_type)
        if tagged != digest:
            raise RegistryError(
                f"registry {self.host} served {tagged} for {name}@{digest}: the content is corrupt"
            )
        return tagged

    def manifest(self, name: str, digest: str) -> bytes | None:
        """The manifest `name@digest`, checked against its digest; None when absent."""
        return self._verified(f"/v2/{name}/manifests/{digest}", name, digest)

    def blob(self, name: str, digest: str) -> bytes | None:
        """The blob `name@digest`, checked against its digest; None when absent."""
        return self._verified(f"/v2/{name}/blobs/{digest}", name, digest)

    def descriptor(self, name: str, reference: str) -> dict[str, object] | None:
        """The OCI descriptor (`mediaType`, `digest`, `size`) of manifest `name:reference`."""
        _check_reference(name, reference)
        response = self._request("GET", f"/v2/{name}/manifests/{reference}", name)
        if response.status_code == 404:
            return None
        return {
            "mediaType": response.headers.get("Content-Type", MANIFEST_TYPES[1]).split(";")[0],
            "digest": f"sha256:{hashlib.sha256(response.content).hexdigest()}",
            "size": len(response.content),
        }

    def attach(
        self, name: str, subject: str, artifact_type: str, annotations: dict[str, str]
    ) -> str:
        """Attach an annotations-only OCI artifact to manifest `name@subject`; its digest.

        The artifact names `subject` as its subject (OCI image-spec 1.1) and is listed in the
        image index tagged `sha256-<hex>`, the referrers tag schema distribution-spec 1.1 gives
        for registries without the referrers API, where `oras discover` and `cosign` look.
        Attaching the same annotations twice changes nothing.
        """
        target = self.descriptor(name, subject)
        if target is None:
            raise RegistryError(f"{self.host} has no manifest {name}@{subject} to attach to")
        empty = self.push_blob(name, b"{}")
        empty_descriptor = {"mediaType": EMPTY_TYPE, "digest": empty, "size": 2}
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPES[1],
            "artifactType": artifact_type,
            "config": empty_descriptor,
            "layers": [empty_descriptor],
            "subject": target,
            "annotations": annotations,
        }
        body = json.dumps(manifest, sort_keys=True).encode()
        digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
        self.push_manifest(name, digest, body, MANIFEST_TYPES[1])
        tag = subject.replace(":", "-")
        index = self._request("GET", f"/v2/{name}/manifests/{tag}", name)
        listed = index.json().get("manifests", []) if index.status_code == 200 else []
        if all(entry.get("digest") != digest for entry in listed):
            listed.append(
                {
                    "mediaType": MANIFEST_TYPES[1],
                    "digest": digest,
                    "size": len(body),
                    "artifactType": artifact_type,
                    "annotations": annotations,
                }
            )
            referrers = {"schemaVersion": 2, "mediaType": MANIFEST_TYPES[0], "manifests": listed}
            self.push_manifest(name, tag, json.dumps(referrers).encode(), MANIFEST_TYPES[0])
        return digest

    def referrers(self, name: str, subject: str) -> list[dict[str, Any]]:
        """The descriptors of artifacts attached to `name@subject` (referrers tag schema)."""
        response = self._request("GET", f"/v2/{name}/manifests/{subject.replace(':', '-')}", name)
        return list(response.json().get("manifests", [])) if response.status_code == 200 else []

    def tags(self, name: str) -> list[str]:
        """The tags of repository `name` (distribution-spec "Listing Tags", following `Link`
        pages); empty when the repository does not exist."""
        _check_reference(name, "latest")
        found: list[str] = []
        path: str | None = f"/v2/{name}/tags/list?n=1000"
        while path:
            response = self._request("GET", path, name)
            if response.status_code == 404:
                return found
            found += response.json().get("tags") or []
            path = response.links.get("next", {}).get("url")
        return found

    def has_tag(self, name: str, tag: str) -> bool:
        """Whether `name:tag` exists."""
        return self.manifest_digest(name, tag) is not None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _upload(self, name: str, started: httpx.Response, digest: str, data: bytes) -> None:
        """Finish the upload `started` (a 202 with its Location) in one PUT of `data`."""
        location = started.headers.get("Location", "")
        if not location:
            raise RegistryError(
                f"registry {self.host} started an upload to {name} without a Location"
            )
        # The Location may carry its own query (upload state), which the digest joins.
        self._request(
            "PUT",
            str(httpx.URL(location).copy_merge_params({"digest": digest})),
            name,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
            expect=(201,),
        )

    def _verified(self, path: str, name: str, digest: str) -> bytes | None:
        response = self._verified_response(path, name, digest)
        return None if response is None else response.content

    def _verified_response(self, path: str, name: str, digest: str) -> httpx.Response | None:
        """The answer to a GET of `path` (content addressed by `digest`), its content checked
        against the digest; None when absent."""
        _check_reference(name, digest)
        response = self._request("GET", path, name)
        if response.status_code == 404:
            return None
        actual = f"sha256:{hashlib.sha256(response.content).hexdigest()}"
        if actual != digest:
            raise RegistryError(
                f"registry {self.host} served {actual} for {name}@{digest}: the content is corrupt"
            )
        return response

    def _request(
        self,
        method: str,
        path: str,
        name: str,
        *,
        expect: tuple[int, ...] = (200, 404),
        **kwargs: Any,
    ) -> httpx.Response:
        try:
            # Blob GETs may be redirected to the storage backend (S3, GCS).
            response = self._client.request(method, path, follow_redirects=True, **kwargs)
        except httpx.TransportError as exc:
            raise RegistryUnreachable(
                f"cannot reach registry {self.host} ({exc}): check that it runs and that the "
                "registry url in the config is right"
            ) from None
        if response.status_code == 401:
            if self.username is None:
                raise RegistryAuthError(
                    f"registry {self.host} requires credentials: set a username and password "
                    "for it in the config"
                )
            raise RegistryAuthError(
                f"registry {self.host} rejected the credentials for user {self.username}: "
                "check the username and password"
            )
        if response.status_code == 403:
            access = "pull" if method in ("GET", "HEAD") else "push"
            raise RegistryAuthError(
                f"registry {self.host} denied user {self.username} access to {name}: "
                f"grant the user {access} access to that repository"
            )
        if response.status_code not in expect:
            raise RegistryError(
                f"registry {self.host} answered {response.status_code} to {method} {path}: "
                f"{response.text[:200]}"
            )
        return response


def _at_once(calls: Sequence[Callable[[], object]]) -> None:
    """Make `calls` (requests to the registry) at the same time, on threads; the first error
    any raised is raised once all ended."""
    with ThreadPoolExecutor(max_workers=COPY_CONCURRENCY) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def candidate(name: str) -> str:
    """The repository where CI stages `name`'s image, chart or bundle until its checks pass
    (`sample-app` -> `candidates/sample-app`): nothing in `name` itself is untested."""
    return f"{CANDIDATES_NAMESPACE}/{name}"


class _RegistryAuth(httpx.Auth):
    """Answers the registry's challenge: Basic credentials, or the Bearer token flow."""

    requires_response_body = True

    def __init__(self, username: str | None, password: str | None) -> None:
        self.credentials = (username, password or "") if username is not None else None
        self.authorization: str | None = None  # reused until the registry challenges again

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.authorization:
            request.headers["Authorization"] = self.authorization
        response = yield request
        if response.status_code != 401:
            return
        scheme, _, rest = response.headers.get("WWW-Authenticate", "").partition(" ")
        basic = None
        if self.credentials is not None:
            user, password = self.credentials
            basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if scheme.lower() == "basic":
            if basic is None or request.headers.get("Authorization") == basic:
                return  # no credentials, or these were already refused
            self.authorization = basic
        elif scheme.lower() == "bearer":
            # Without credentials this asks for an anonymous token, as public registries allow.
            params = dict(_CHALLENGE_PARAM.findall(rest))
            query = {k: params[k] for k in ("service", "scope") if k in params}
            token_response = yield httpx.Request(
                "GET",
                params.get("realm", ""),
                params=query,
                headers={"Authorization": basic} if basic else {},
            )
            try:
                body = token_response.json() if token_response.status_code == 200 else {}
            except ValueError:
                body = {}
            token = body.get("token") or body.get("access_token")
            if not token:
                return
            self.authorization = f"Bearer {token}"
        else:
            return
        request.headers["Authorization"] = self.authorization
        yield request


def _check_reference(name: str, reference: str) -> None:
    try:
        check_repository(name)
        if not reference.startswith("sha256:"):
            check_tag(reference)
        else:
            check_digest(reference)
    except InvalidReference as exc:
        raise RegistryError(str(exc)) from None


def write_auth_file(
    path: Path, registries: Mapping[str, Registry], base: Mapping | None = None
) -> None:
    """Write the credentials of `registries` (by the host a reference names them by) to `path`,
    created 0600 (`private.write_secret`: `path` must not exist), in the auth file format docker's `config.json` and skopeo's `--authfile` share:
    `{"auths": {host: {"auth": base64("user:password")}}}`, over the settings in `base` (an
    existing docker config). Registries without credentials are left out."""
    config = dict(base or {})
    auths = dict(config.get("auths") or {})
    for host, registry in registries.items():
        if registry.username is not None:
            token = f"{registry.username}:{registry.password or ''}"
            auths[host] = {"auth": base64.b64encode(token.encode()).decode()}
    config["auths"] = auths
    private.write_secret(path, json.dumps(config))
