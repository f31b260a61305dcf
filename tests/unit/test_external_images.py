"""Environments that run only images from Baton's registry (`images.allow_external: false`, the
default where `production: true`): a render referencing any other image fails, naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.config import parse_config
from baton.environment_render import render_for_environment
from baton.errors import DeployConfigError, ExternalImage
from baton.models import PinnedImage
from baton.references import mirror_entry_for, registry_of
from tests.fixtures.charts import SIDECAR_CHART, write_chart

REGISTRY = "127.0.0.1:5000"
IMAGE = PinnedImage(repository=f"{REGISTRY}/web", digest="sha256:" + "5" * 64)


def render(tmp_path: Path, values: str, *, production: bool = True, images: str = "{}"):
    """`values` rendered for prod (`production`, `images` set) as the rollout renders it."""
    config = parse_config(
        f"""
apps:
  - {{name: web, repo: web, chart: chart, image: web}}
environments:
  - {{name: prod, namespace: prod, production: {str(production).lower()}, images: {images}}}
"""
    )
    return render_for_environment(
        config.app("web"),
        config.environment("prod"),
        write_chart(tmp_path / "chart", SIDECAR_CHART),
        inputs={"environments/prod/web/values.yaml": values},
        image=IMAGE,
        deployed=None,
        registry_url=REGISTRY,
    )


def test_the_apps_own_pinned_image_passes_in_prod(tmp_path: Path) -> None:
    rendered = render(tmp_path, "{}\n")
    assert f"{REGISTRY}/web@sha256:" in rendered.manifests
    # Mirrored third-party images live in Baton's registry too.
    render(tmp_path, f"sidecar: {REGISTRY}/mirror/redis_exporter:v1.62.0\n")


def test_a_docker_hub_image_fails_a_prod_render_naming_object_container_and_mirror_entry(
    tmp_path: Path,
) -> None:
    with pytest.raises(ExternalImage) as failed:
        render(tmp_path, "sidecar: docker.io/oliver006/redis_exporter:v1.62.0\n")
    assert str(failed.value) == (
        "prod runs only images from 127.0.0.1:5000 (images.allow_external: false): "
        "Deployment/web container metrics runs docker.io/oliver006/redis_exporter:v1.62.0: "
        "add {source: docker.io/oliver006/redis_exporter:v1.62.0, name: mirror/redis_exporter} "
        "to images.mirror, run `baton images mirror` and reference 127.0.0.1:5000/mirror/..., "
        "or set images.allow_external: true on prod"
    )
    assert isinstance(failed.value, DeployConfigError) and not ExternalImage.retryable


def test_init_containers_are_checked_too(tmp_path: Path) -> None:
    with pytest.raises(ExternalImage, match=r"container volume-permissions runs busybox:1.36"):
        render(tmp_path, "init: busybox:1.36\n")
    with pytest.raises(ExternalImage, match=r"\{source: docker.io/library/busybox:1.36, name"):
        render(tmp_path, "init: busybox:1.36\n")


def test_allowed_where_allow_external_is_true_or_the_environment_is_not_production(
    tmp_path: Path,
) -> None:
    values = "sidecar: docker.io/library/redis:7\n"
    allowed = render(tmp_path, values, images="{allow_external: true}")
    assert "docker.io/library/redis:7" in allowed.manifests
    assert "docker.io/library/redis:7" in render(tmp_path / "b", values, production=False).manifests
    with pytest.raises(ExternalImage):
        render(tmp_path / "c", values, production=False, images="{allow_external: false}")


@pytest.mark.parametrize(
    ("image", "registry", "entry"),
    [
        ("redis:7", "docker.io", "{source: docker.io/library/redis:7, name: mirror/redis}"),
        (
            "docker.io/library/redis:7",
            "docker.io",
            "{source: docker.io/library/redis:7, name: mirror/redis}",
        ),
        (
            "ghcr.io/dexidp/dex:v2.41.1@sha256:" + "a" * 64,
            "ghcr.io",
            "{source: ghcr.io/dexidp/dex:v2.41.1, name: mirror/dex}",
        ),
        (
            "localhost:5001/team/api",
            "localhost:5001",
            "{source: localhost:5001/team/api:<tag>, name: mirror/api}",
        ),
    ],
)
def test_registry_and_mirror_entry_of_an_image(image: str, registry: str, entry: str) -> None:
    assert registry_of(image) == registry
    assert mirror_entry_for(image) == entry
