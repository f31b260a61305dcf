"""Building the sample app on the real engine and pushing it to a real registry with auth."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from baton.images import ImageBuildFailed, ImagePushFailed, build_image, push_image
from baton.logs import LogStore
from baton.registry import Registry, RegistryAuthError

pytestmark = pytest.mark.docker

SAMPLE_APP = Path(__file__).resolve().parents[2] / "examples" / "sample-app"


@pytest.fixture
def image_name() -> str:
    """A repository name of the test's own, so tests sharing the session registry never collide."""
    return f"baton-test/app-{secrets.token_hex(4)}"


@pytest.fixture
def commit() -> str:
    """An app commit of the test's own: the image differs from one a suite beside this one builds,
    which removing it afterwards must not pull from under that suite."""
    return secrets.token_hex(6)


@pytest.fixture
def logs(tmp_path) -> LogStore:
    return LogStore(tmp_path / "logs")


@pytest.fixture
def built(docker_client, base_image, registry, image_name, commit, logs):
    tag = f"{registry.host}/{image_name}:build"
    image = build_image(
        SAMPLE_APP,
        [tag],
        buildargs={"BASE_IMAGE": base_image, "APP_COMMIT": commit},
        client=docker_client,
        logs=logs,
    )
    yield image
    # Only this test's tags: a suite running beside this one builds the very same image (same
    # inputs, same ID), so removing the image by ID would pull it from under that suite.
    for name in docker_client.images.get(image.image_id).tags:
        if image_name in name:
            docker_client.images.remove(name)


def test_build_tags_the_image_and_rebuilding_the_same_inputs_gives_the_same_image(
    docker_client, base_image, registry, built, image_name, commit, logs
):
    again = build_image(
        SAMPLE_APP,
        [f"{registry.host}/{image_name}:build", f"{image_name}:{commit}"],
        buildargs={"BASE_IMAGE": base_image, "APP_COMMIT": commit},
        client=docker_client,
        logs=logs,
    )

    assert again.image_id == built.image_id
    assert docker_client.images.get(f"{image_name}:{commit}").id == built.image_id
    env = docker_client.images.get(built.image_id).attrs["Config"]["Env"]
    assert f"APP_COMMIT={commit}" in env
    assert "Successfully built" in logs.get(again.log_ref)


def test_pushed_digest_is_the_one_the_registry_serves(
    docker_client, registry, built, image_name, commit
):
    with Registry(registry.url, registry.username, registry.password) as reg:
        digest = push_image(built.image_id, reg, image_name, commit, client=docker_client)

        assert digest.startswith("sha256:")
        assert reg.manifest_digest(image_name, commit) == digest
        assert reg.has_tag(image_name, commit)
        assert not reg.has_tag(image_name, "never-pushed")
        # Pushing the same image again changes nothing.
        assert push_image(built.image_id, reg, image_name, commit, client=docker_client) == digest


def test_build_failure_carries_the_builds_own_last_lines(docker_client, base_image, tmp_path, logs):
    (tmp_path / "Dockerfile").write_text(
        'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo "compiling" && exit 7\n'
    )

    with pytest.raises(ImageBuildFailed, match="returned a non-zero code: 7") as failure:
        build_image(
            tmp_path,
            ["baton-test/broken:1"],
            buildargs={"BASE_IMAGE": base_image},
            client=docker_client,
            logs=logs,
        )

    assert "compiling" in failure.value.last_lines
    assert "compiling" in logs.get(failure.value.log_ref)


def test_build_progress_is_reported_during_a_quiet_step(docker_client, base_image, tmp_path, logs):
    (tmp_path / "Dockerfile").write_text(
        f'ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo "{secrets.token_hex(4)}" && sleep 6\n'
    )
    reports: list[str] = []

    image = build_image(
        tmp_path,
        ["baton-test/quiet:1"],
        buildargs={"BASE_IMAGE": base_image},
        on_progress=reports.append,
        client=docker_client,
        logs=logs,
    )
    docker_client.images.remove(image.image_id, force=True)

    assert reports, "no progress during a 6 s step"
    assert reports[0].startswith("build baton-test/quiet:1: ")


def test_push_with_wrong_credentials_fails_clearly(docker_client, registry, built, image_name):
    wrong = Registry(registry.url, registry.username, "wrong-password")

    with pytest.raises(ImagePushFailed, match="unauthorized"):
        push_image(built.image_id, wrong, image_name, "x", client=docker_client)
    with pytest.raises(
        RegistryAuthError,
        match=f"registry {registry.host} rejected the credentials for user {registry.username}",
    ):
        wrong.manifest_digest(image_name, "x")
