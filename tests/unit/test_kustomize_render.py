"""Rendering a Kustomize app as CD does: the app's overlay (base + component + generator + both
patch kinds) with an environment's inputs as a component, the image pinned through `images:`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from baton.local.cluster import read_workload
from baton.models import PinnedImage
from baton.render import KustomizeRenderer, RenderFailed, split_objects, validate_manifests
from tests.fixtures.kustomize import IMAGE, OVERLAY, write_environment

PINNED = PinnedImage(repository="127.0.0.1:5000/web", digest="sha256:" + "5" * 64)


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    return write_environment(tmp_path / "gitops/environments/dev/web")


def render(kustomize_app: Path, env: Path, image_name: str = IMAGE) -> dict[str, dict]:
    renderer = KustomizeRenderer(kustomize_app / OVERLAY, image_name=image_name, components=[env])
    manifests = renderer.render("web", "dev", image=PINNED)
    assert validate_manifests(manifests) == []
    return split_objects(manifests)


def container(objects: dict[str, dict]) -> dict:
    (web,) = objects["Deployment/dev/web"]["spec"]["template"]["spec"]["containers"]
    return web


def test_environment_overlay_and_app_patches_all_apply(kustomize_app: Path, dev: Path) -> None:
    objects = render(kustomize_app, dev)
    deployment = objects["Deployment/dev/web"]
    web = container(objects)
    env = {e["name"]: e.get("value") for e in web["env"]}
    assert web["image"] == PINNED.ref
    assert deployment["spec"]["replicas"] == 3  # the overlay's JSON6902 patch
    assert web["resources"]["limits"] == {"cpu": "200m", "memory": "128Mi"}  # strategic merge
    assert env["TRACING"] == "on"  # the app's component
    assert env["PORT"] == "18091"  # the environment's component
    assert deployment["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "web"}


def test_generated_config_map_has_a_hash_suffix_the_deployment_follows(
    kustomize_app: Path, dev: Path
) -> None:
    objects = render(kustomize_app, dev)
    (config,) = [k for k in objects if k.startswith("ConfigMap/dev/web-config-")]
    assert objects[config]["data"] == {"GREETING": "hello from dev"}
    ref = next(e for e in container(objects)["env"] if e["name"] == "GREETING")
    assert ref["valueFrom"]["configMapKeyRef"]["name"] == config.rsplit("/", 1)[1]

    kustomization = dev / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("from dev", "from dev, again"))
    changed = render(kustomize_app, dev)
    (new_config,) = [k for k in changed if k.startswith("ConfigMap/dev/web-config-")]
    assert new_config != config  # new content, new name: the Deployment rolls


def test_an_image_name_no_container_uses_fails_naming_the_fix(
    kustomize_app: Path, dev: Path
) -> None:
    with pytest.raises(RenderFailed) as failed:
        render(kustomize_app, dev, image_name="webapp")
    assert f"no container runs {PINNED.ref}" in str(failed.value)
    assert "set the app's image to the name the kustomization's containers use" in str(failed.value)


def test_an_environment_overlay_that_is_not_a_component_fails_in_kustomizes_words(
    kustomize_app: Path, dev: Path
) -> None:
    kustomization = dev / "kustomization.yaml"
    text = yaml.safe_load(kustomization.read_text())
    kustomization.write_text(
        yaml.safe_dump(
            {**text, "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
        )
    )
    with pytest.raises(RenderFailed) as failed:
        render(kustomize_app, dev)
    assert not failed.value.retryable
    assert "Component" in str(failed.value)
    assert "\n" not in str(failed.value)


def test_the_local_cluster_runs_the_container_with_the_generated_settings(
    kustomize_app: Path, dev: Path
) -> None:
    renderer = KustomizeRenderer(kustomize_app / OVERLAY, image_name=IMAGE, components=[dev])
    workload = read_workload(renderer.render("web", "dev", image=PINNED), "dev/web", "dev")
    assert workload is not None
    # configMapKeyRef, resolved against the generated (hash-suffixed) ConfigMap.
    assert workload.environment == {"PORT": "18091", "GREETING": "hello from dev", "TRACING": "on"}
