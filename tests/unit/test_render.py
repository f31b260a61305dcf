"""Rendering with helm and kustomize, and offline validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.models import PinnedImage
from baton.render import (
    HelmRenderer,
    KustomizeRenderer,
    ManifestError,
    RenderFailed,
    split_objects,
    validate_manifests,
)
from tests.fixtures.manifests import DEPLOYMENT

SAMPLE_CHART = Path(__file__).resolve().parents[2] / "examples" / "sample-app" / "chart"
TEST_VALUES = SAMPLE_CHART / "ci" / "test-values.yaml"
OLD = PinnedImage(repository="127.0.0.1:5000/sample-app", digest="sha256:" + "a" * 64)
NEW = PinnedImage(repository="127.0.0.1:5000/sample-app", digest="sha256:" + "b" * 64)


def _container(rendered: str, key: str = "Deployment/web-sample-app") -> dict:
    return split_objects(rendered)[key]["spec"]["template"]["spec"]["containers"][0]


def test_helm_render_pins_the_image_by_digest():
    rendered = HelmRenderer(SAMPLE_CHART).render(
        "web", "dev", values_files=[TEST_VALUES], image=NEW
    )

    assert _container(rendered)["image"] == NEW.ref
    assert validate_manifests(rendered) == []


def test_helm_overrides_are_strings_even_with_commas_and_braces():
    overrides = {"greeting": "hello, {world}", "service.port": "8081"}

    rendered = HelmRenderer(SAMPLE_CHART).render("web", "dev", overrides=overrides)

    env = {e["name"]: e["value"] for e in _container(rendered)["env"]}
    assert env["APP_GREETING"] == "hello, {world}"
    assert env["PORT"] == "8081"


def test_helm_render_failure_carries_helms_message(tmp_path):
    with pytest.raises(RenderFailed, match=r"helm template of .* failed: .*Chart\.yaml"):
        HelmRenderer(tmp_path).render("web", "dev")


def test_validation_catches_a_wrongly_typed_field():
    problems = validate_manifests(DEPLOYMENT.replace("replicas: 2", 'replicas: "x"'))

    assert problems == ["Deployment/web: spec.replicas: 'x' is not of type 'integer', 'null'"]


def test_validation_is_strict_about_unknown_fields():
    problems = validate_manifests(DEPLOYMENT.replace("replicas: 2", "replicas: 2\n  replica: 3"))

    assert problems == [
        "Deployment/web: spec: Additional properties are not allowed ('replica' was unexpected)"
    ]


def test_validation_skips_kinds_without_a_schema():
    flux = (
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: apps}\n"
    )

    assert validate_manifests(flux) == []


def test_validation_reports_objects_defined_twice():
    problems = validate_manifests(DEPLOYMENT + "---\n" + DEPLOYMENT)

    assert problems == ["Deployment/web: defined more than once"]


def test_split_objects_rejects_duplicates():
    with pytest.raises(ManifestError, match="Deployment/web more than once"):
        split_objects(DEPLOYMENT + "---\n" + DEPLOYMENT)


def test_kustomize_render_sets_namespace_pins_image_and_applies_patches(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "kustomization.yaml").write_text("resources: [deploy.yaml]\n")
    (base / "deploy.yaml").write_text(DEPLOYMENT)
    patch = tmp_path / "replicas.yaml"
    patch.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 5}\n"
    )

    rendered = KustomizeRenderer(base, image_name="sample-app").render(
        "", "prod", values_files=[patch], image=NEW
    )

    deployment = split_objects(rendered)["Deployment/prod/web"]
    assert deployment["spec"]["replicas"] == 5
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == NEW.ref


def test_kustomize_refuses_value_overrides(tmp_path):
    with pytest.raises(RenderFailed, match="patch file"):
        KustomizeRenderer(tmp_path).render("", "dev", overrides={"replicas": "2"})
