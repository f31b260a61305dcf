"""Publishing the CI artifact (chart as OCI in the real registry) and fetching it back for CD."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from baton.artifacts import (
    ArtifactStore,
    chart_version,
    fetch_chart,
    package_chart,
    publish_artifact,
)
from baton.render import HelmRenderer, split_objects

pytestmark = pytest.mark.docker

SAMPLE_CHART = Path(__file__).resolve().parents[2] / "examples" / "sample-app" / "chart"
IMAGE_DIGEST = "sha256:" + "c" * 64


@pytest.fixture
def reg(registry_client):
    return registry_client


@pytest.fixture
def commit() -> str:
    """A commit of the test's own, so chart versions never collide in the session registry."""
    return secrets.token_hex(20)


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def _publish(reg, commit, store, chart=SAMPLE_CHART):
    return publish_artifact(
        "sample-app", commit, chart, reg.repository("sample-app"), IMAGE_DIGEST, reg, store=store
    )


def test_published_chart_comes_back_and_renders_the_pinned_image(reg, commit, store, tmp_path):
    artifact = _publish(reg, commit, store)

    assert artifact.chart_ref == f"oci://{reg.host}/charts/sample-app"
    assert artifact.chart_version == f"0.1.0-g{commit[:12]}"
    assert artifact.chart_digest == reg.manifest_digest("charts/sample-app", artifact.chart_version)
    assert artifact.image_ref == f"{reg.host}/sample-app@{IMAGE_DIGEST}"
    assert store.load("sample-app", commit) == artifact

    chart = fetch_chart(artifact, tmp_path / "fetched", reg)

    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert (meta["version"], meta["appVersion"]) == (artifact.chart_version, commit[:12])
    rendered = HelmRenderer(chart).render("web", "dev", image=artifact.pinned_image)
    deployment = split_objects(rendered)["Deployment/web-sample-app"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == artifact.image_ref


def test_publishing_the_same_commit_twice_gives_the_same_artifact(reg, commit, store):
    first = _publish(reg, commit, store)
    second = _publish(reg, commit, store)

    assert second == first  # same refs, same digests, and the record keeps its created_at


def test_chart_digest_is_stable_for_identical_content_in_a_fresh_checkout(
    reg, registry, commit, store, tmp_path
):
    first = _publish(reg, commit, store)
    # Drop the tag, so the second publish really packages and pushes again.
    deleted = httpx.delete(
        f"{registry.url}/v2/charts/sample-app/manifests/{first.chart_digest}",
        auth=(registry.username, registry.password),
    )
    assert deleted.status_code == 202
    assert reg.manifest_digest("charts/sample-app", first.chart_version) is None
    # A fresh checkout: same content, every file with a new mtime.
    checkout = tmp_path / "checkout" / "chart"
    shutil.copytree(SAMPLE_CHART, checkout)
    for path in checkout.rglob("*"):
        os.utime(path, (1_900_000_000, 1_900_000_000))

    again = _publish(reg, commit, ArtifactStore(tmp_path / "other-store"), chart=checkout)

    assert again.chart_digest == first.chart_digest


def test_packaging_ignores_file_times(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(SAMPLE_CHART, copy)
    for path in copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))

    one = package_chart(SAMPLE_CHART, "0.1.0-gabc", "abc", tmp_path / "one")
    two = package_chart(copy, "0.1.0-gabc", "abc", tmp_path / "two")

    assert hashlib.sha256(one.read_bytes()).digest() == hashlib.sha256(two.read_bytes()).digest()


def test_packaging_stamps_the_commit_time_when_given(tmp_path):
    when = datetime(2025, 6, 1, tzinfo=UTC)

    package = package_chart(SAMPLE_CHART, "0.1.0-gabc", "abc", tmp_path, mtime=when)

    assert package.stat().st_mtime == when.timestamp()


def test_chart_version_is_a_semver_prerelease_of_the_charts_own():
    assert chart_version("0.1.0", "0123456789abcdef") == "0.1.0-g0123456789ab"
    assert chart_version("2.0.0-rc.1+build", "0123456789abcdef") == "2.0.0-rc.1.g0123456789ab"
