"""Publishing a Kustomize app as a Flux OCI artifact in a real registry, and rendering from it."""

from __future__ import annotations

import json
import secrets
import shutil
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from baton.artifacts import ArtifactStore
from baton.bundles import (
    CONFIG_TYPE,
    CONTENT_TYPE,
    MANIFEST_TYPE,
    BundleInvalid,
    fetch_bundle,
    package_bundle,
    publish_bundle,
)
from baton.models import PinnedImage
from baton.registry import Registry
from baton.render import KustomizeRenderer
from tests.fixtures.kustomize import IMAGE, OVERLAY, write, write_environment

pytestmark = pytest.mark.docker

IMAGE_DIGEST = "sha256:" + "c" * 64


@pytest.fixture
def reg(registry_client):
    return registry_client


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def publish(reg: Registry, root: Path, store: ArtifactStore, commit: str, app: str = "web"):
    return publish_bundle(
        app,
        commit,
        root,
        OVERLAY,
        f"{reg.host}/{app}",
        IMAGE_DIGEST,
        reg,
        source=app,
        store=store,
    )


def test_published_bundle_is_a_flux_artifact_recorded_by_its_digest(reg, kustomize_app, store):
    commit = secrets.token_hex(20)
    artifact = publish(reg, kustomize_app, store, commit)

    assert artifact.kustomize_ref == f"oci://{reg.host}/kustomize/web"
    assert artifact.kustomize_path == OVERLAY
    assert artifact.kustomize_digest == reg.manifest_digest("kustomize/web", commit)
    assert store.load("web", commit) == artifact
    manifest = json.loads(reg.manifest("kustomize/web", artifact.kustomize_digest))
    assert manifest["mediaType"] == MANIFEST_TYPE
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [CONTENT_TYPE]
    assert manifest["annotations"]["org.opencontainers.image.revision"] == f"sha1:{commit}"
    layer = reg.blob("kustomize/web", manifest["layers"][0]["digest"])
    with tarfile.open(fileobj=BytesIO(layer), mode="r:gz") as tar:
        files = sorted(m.name for m in tar.getmembers() if m.isfile())
    # The overlay and what it reaches, at their repository paths; nothing else of the repository.
    assert files == [
        "deploy/base/deployment.yaml",
        "deploy/base/kustomization.yaml",
        "deploy/base/service.yaml",
        "deploy/components/tracing/env.yaml",
        "deploy/components/tracing/kustomization.yaml",
        "deploy/components/tracing/tracing.conf",
        f"{OVERLAY}/kustomization.yaml",
        f"{OVERLAY}/replicas.json",
        f"{OVERLAY}/resources.yaml",
    ]


def test_cd_renders_the_fetched_bundle_as_it_renders_the_source(
    reg, kustomize_app, store, tmp_path
):
    artifact = publish(reg, kustomize_app, store, secrets.token_hex(20))
    dev = write_environment(tmp_path / "dev")
    image = PinnedImage(repository=artifact.image, digest=artifact.image_digest)

    fetched = fetch_bundle(artifact, tmp_path / "fetched", reg) / artifact.kustomize_path

    def rendered(kustomization: Path) -> str:
        renderer = KustomizeRenderer(kustomization, image_name=IMAGE, components=[dev])
        return renderer.render("web", "dev", image=image)

    assert rendered(fetched) == rendered(kustomize_app / OVERLAY)


def test_same_files_give_the_same_layer_in_a_fresh_checkout(reg, kustomize_app, store, tmp_path):
    copy = shutil.copytree(kustomize_app, tmp_path / "fresh-checkout")
    (copy / "src/app.py").write_text("print('a change outside the bundle')\n")
    assert package_bundle(copy, OVERLAY) == package_bundle(kustomize_app, OVERLAY)

    commit = secrets.token_hex(20)
    first = publish(reg, kustomize_app, store, commit)
    again = publish(reg, copy, store, commit)
    assert again.kustomize_digest == first.kustomize_digest


def test_a_kustomization_reaching_outside_the_repository_is_refused(reg, tmp_path, store):
    root = write(tmp_path / "app", {"deploy/kustomization.yaml": "resources: [../../shared]\n"})
    write(tmp_path / "shared", {"kustomization.yaml": "resources: []\n"})
    with pytest.raises(BundleInvalid) as refused:
        publish_bundle(
            "web", "a" * 40, root, "deploy", f"{reg.host}/web", IMAGE_DIGEST, reg, store=store
        )
    assert "outside the repository" in str(refused.value)
    assert not refused.value.retryable
    assert reg.manifest_digest("kustomize/web", "a" * 40) is None
