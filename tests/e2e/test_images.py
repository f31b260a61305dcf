"""Building the sample app on the real engine and pushing it to a real registry with auth."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import docker.models.containers
import pytest

from baton.checks import hadolint
from baton.config import HttpProbe, ImageTest
from baton.images import (
    EXPIRES_LABEL,
    IMAGE_TEST_LABEL,
    BuildKitRequired,
    ImageBuildFailed,
    ImagePushFailed,
    build_image,
    find_builder,
    push_image,
    try_image,
)
from baton.logs import LogStore
from baton.registry import Registry, RegistryAuthError
from baton.tools import PROJECT_ROOT
from tests.fixtures.ports import free_port

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
    assert f"writing image {built.image_id}" in logs.get(again.log_ref)  # BuildKit's own words


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

    with pytest.raises(ImageBuildFailed, match="exit code: 7") as failure:
        build_image(
            tmp_path,
            ["baton-test/broken:1"],
            buildargs={"BASE_IMAGE": base_image},
            client=docker_client,
            logs=logs,
        )

    assert any(line.endswith(" compiling") for line in failure.value.last_lines)
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


# --- Dockerfiles as users write them (BuildKit), and images tried before anyone relies on them ---

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "cases"


@pytest.fixture
def own_tags(docker_client) -> Iterator[list[str]]:
    """Tags a test builds; afterwards only these are removed, never an image by ID."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        try:
            docker_client.images.remove(tag)
        except docker.errors.ImageNotFound:
            pass


def test_case_07_a_cache_mount_dockerfile_passes_hadolint_and_builds(
    docker_client, base_image, logs, own_tags
):
    context = CASES / "07-buildkit-dockerfile"
    lint = hadolint(context / "Dockerfile", logs=logs)
    own_tags.append(f"baton-test/buildkit-{secrets.token_hex(4)}:1")

    built = build_image(
        context, own_tags, buildargs={"BASE_IMAGE": base_image}, client=docker_client, logs=logs
    )

    assert lint.passed, lint.summary
    assert docker_client.images.get(own_tags[0]).id == built.image_id
    assert "python3 -m pip --version" in logs.get(built.log_ref)


def test_the_base_image_installs_with_pip_and_makes_venvs_as_python_slim_does(
    docker_client, base_image, tmp_path, logs, own_tags
):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "greeting.py").write_text("TEXT = 'hello'\n")
    (tmp_path / "pkg" / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "greeting"\nversion = "1.0"\n[tool.setuptools]\npy-modules = ["greeting"]\n'
    )
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY pkg /pkg\n"
        "RUN pip install --no-index --no-build-isolation /pkg && python3 -m venv /venv\n"
    )
    own_tags.append(f"baton-test/pip-venv-{secrets.token_hex(4)}:1")

    build_image(
        tmp_path, own_tags, buildargs={"BASE_IMAGE": base_image}, client=docker_client, logs=logs
    )

    seen = docker_client.containers.run(
        own_tags[0],
        [
            "sh",
            "-c",
            "python -c 'import greeting; print(greeting.TEXT)' && /venv/bin/pip --version",
        ],
        network_mode="host",
        remove=True,
    ).decode()
    assert seen.splitlines()[0] == "hello"
    assert seen.splitlines()[1].startswith("pip ")


def test_the_base_image_is_labelled_with_its_definition_and_not_rebuilt_while_it_holds(
    docker_client, base_image
):
    script = PROJECT_ROOT / "scripts" / "base-image.sh"
    definition = hashlib.sha256(script.read_bytes()).hexdigest()[:16]

    again = subprocess.run(
        [str(script)],
        env={**os.environ, "BATON_BASE_IMAGE": base_image},
        capture_output=True,
        text=True,
        check=True,
    )

    assert again.stdout == f"base-image: {base_image} already present (definition {definition})\n"
    labels = docker_client.images.get(base_image).labels
    assert labels["io.baton.base-image.definition"] == definition


def test_cache_and_secret_mounts_build_and_the_secret_stays_out_of_the_image(
    docker_client, base_image, tmp_path, logs, own_tags
):
    secret = f"s3cr3t-{secrets.token_hex(8)}"
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\n"
        "FROM ${BASE_IMAGE}\n"
        "RUN --mount=type=cache,target=/var/cache/build \\\n"
        "    echo cached > /var/cache/build/marker && ls /var/cache/build > /cache-listing\n"
        "RUN --mount=type=secret,id=token,required=true \\\n"
        "    wc -c < /run/secrets/token > /secret-length\n"
    )
    own_tags.append(f"baton-test/mounts-{secrets.token_hex(4)}:1")

    build_image(
        tmp_path,
        own_tags,
        buildargs={"BASE_IMAGE": base_image},
        secrets={"token": secret},
        client=docker_client,
        logs=logs,
    )

    seen = docker_client.containers.run(
        own_tags[0],
        ["sh", "-c", "cat /cache-listing /secret-length; ls /var/cache/build; ls /run/secrets"],
        network_mode="host",
        remove=True,
    ).decode()
    assert seen.split() == ["marker", str(len(secret))]  # the cache and /run/secrets stay out
    history = docker_client.api.history(own_tags[0])
    assert secret not in repr(history)


def test_a_dockerfile_builds_from_an_image_in_batons_registry_with_its_credentials(
    docker_client, base_image, registry, tmp_path, logs, own_tags
):
    """A `FROM` naming a mirrored image in Baton's registry pulls it with the registry's
    credentials, which the engine itself does not hold."""
    ours = Registry(registry.url, registry.username, registry.password)
    name = f"mirror/base-{secrets.token_hex(4)}"
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Dockerfile").write_text(
        f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo {name} > /release\n"
    )
    own_tags.append(f"baton-test/{name}:1")
    base = build_image(tmp_path / "base", own_tags[-1:], buildargs={"BASE_IMAGE": base_image})
    digest = push_image(base.image_id, ours, name, "1", client=docker_client)
    own_tags.append(f"{registry.host}/{name}:1")
    docker_client.images.remove(own_tags.pop(0))
    docker_client.images.remove(own_tags.pop(0))  # the build must pull it
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(
        f"FROM {registry.host}/{name}:1@{digest}\nRUN cat /release > /built-on\n"
    )
    own_tags.append(f"baton-test/on-mirror-{secrets.token_hex(4)}:1")

    build_image(tmp_path / "app", own_tags, registries=[ours], client=docker_client, logs=logs)

    seen = docker_client.containers.run(own_tags[0], ["cat", "/built-on"], remove=True)
    assert seen.decode() == f"{name}\n"


def test_a_heredoc_builds_where_the_builder_can_and_is_refused_by_line_where_it_cannot(
    docker_client, base_image, tmp_path, logs, own_tags
):
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN <<SCRIPT\nset -e\necho heredoc > /made\nSCRIPT\n"
    )
    own_tags.append(f"baton-test/heredoc-{secrets.token_hex(4)}:1")
    build = lambda: build_image(
        tmp_path, own_tags, buildargs={"BASE_IMAGE": base_image}, client=docker_client, logs=logs
    )

    if find_builder().frontend_1_4:
        build()
        made = docker_client.containers.run(own_tags[0], ["cat", "/made"], remove=True)
        assert made.decode() == "heredoc\n"
    else:  # Docker Engine before 23 (Debian 12's 20.10): refused before anything is built
        with pytest.raises(BuildKitRequired) as refused:
            build()
        assert str(refused.value).startswith(
            "Dockerfile line 3: a heredoc (<<SCRIPT) needs Dockerfile syntax 1.4, which the "
            "builder here"
        )
        assert "run Docker Engine 23 or later on the build workers" in str(refused.value)
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(own_tags[0])


def sample_app_test(**http: object) -> ImageTest:
    """An image test probing the sample app, started on a port of the test's own."""
    port = free_port()
    return ImageTest(
        http=HttpProbe(port=port, **http),  # type: ignore[arg-type]
        env={"PORT": str(port), "HOST": "127.0.0.1"},
        timeout_s=30,
    )


def test_image_test_command_and_probe_pass_on_the_sample_app(docker_client, built, commit, logs):
    test = sample_app_test(path="/version", expected_body='"commit": "{commit}"')
    test = test.model_copy(update={"command": ["python3", "-c", "import app; print('imports')"]})

    result = try_image(built.image_id, test, commit=commit, client=docker_client, logs=logs)

    assert result.passed, result.summary
    assert result.summary == (
        "image test passed: `python3 -c import app; print('imports')` exited 0; "
        f"GET http://127.0.0.1:{test.http.port}/version answered 200"
    )
    assert "imports" in logs.get(result.log_ref)
    assert not docker_client.containers.list(all=True, filters={"ancestor": built.image_id})


def test_image_test_failure_says_what_the_probe_saw(docker_client, built, commit, logs):
    test = sample_app_test(path="/missing", expected_status=200).model_copy(update={"timeout_s": 3})

    result = try_image(built.image_id, test, commit=commit, client=docker_client, logs=logs)

    assert not result.passed
    assert result.summary == (
        f"image test failed: GET http://127.0.0.1:{test.http.port}/missing did not answer 200 "
        "within 3s; it saw 404 'not found'"
    )
    assert f"GET http://127.0.0.1:{test.http.port}/missing -> 404" in logs.get(result.log_ref)


def test_image_test_command_failure_and_an_exiting_container_are_reported(
    docker_client, built, commit, logs
):
    failing = ImageTest(command=["sh", "-c", "echo 'self-test: no config' >&2; exit 3"])
    crashing = sample_app_test().model_copy(update={"env": {"PORT": "not-a-port"}})

    command = try_image(built.image_id, failing, client=docker_client, logs=logs)
    probe = try_image(built.image_id, crashing, commit=commit, client=docker_client, logs=logs)

    assert command.summary == (
        "image test failed: `sh -c echo 'self-test: no config' >&2; exit 3` exited with code 3: "
        "self-test: no config"
    )
    assert probe.summary.startswith("image test failed: the container exited with code 1 before")
    assert "ValueError: invalid literal for int()" in probe.summary


def test_a_test_container_a_killed_worker_left_is_removed_once_past_its_time_limit(
    docker_client, built, commit, logs
):
    """A worker killed during an image test never removes its container: the sample app stays up
    on the host network, holding the port. The next image test removes it once it is past its
    time limit, and one still within it (another worker's, running) is left alone."""
    test = sample_app_test(path="/version")

    def left(expires: float, port: int) -> docker.models.containers.Container:
        labels = {IMAGE_TEST_LABEL: "true", EXPIRES_LABEL: str(int(expires))}
        env = {"PORT": str(port), "HOST": "127.0.0.1"}
        return docker_client.containers.run(
            built.image_id, detach=True, network_mode="host", environment=env, labels=labels
        )

    stale = left(time.time() - 1, test.http.port)  # on the port this test probes
    running = left(time.time() + 600, free_port())
    try:
        result = try_image(built.image_id, test, commit=commit, client=docker_client, logs=logs)
        assert result.passed, result.summary
        names = {c.name for c in docker_client.containers.list(all=True)}
        assert stale.name not in names
        assert running.name in names
    finally:
        for container in (stale, running):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
