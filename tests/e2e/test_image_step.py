"""The pipelines' image steps as the worker runs them (build, image_test, candidate, push,
publish): the app's repository on the local forge, the real engine and registry. An image that
fails its image_test fails that step with what the probe saw, and is never pushed; what CI
stages while its checks run stays out of the repositories CD reads until the push and publish
copy it there."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import pytest
from temporalio.testing import ActivityEnvironment

from activities import context as activity_context
from activities.context import Context
from activities.pipeline import (
    BuildInput,
    CheckInput,
    ImageInput,
    PublishInput,
    build_image,
    publish_artifact,
    push_image,
    readable_tag,
    run_check,
    stage_candidate,
    try_image,
)
from baton.artifacts import commit_version
from baton.config import parse_config
from baton.images import find_builder
from baton.registry import candidate
from baton.settings import Settings
from tests.fixtures.ports import free_port

pytestmark = pytest.mark.docker

SAMPLE_APP = Path(__file__).resolve().parents[2] / "examples" / "sample-app"


def main_head(context: Context, repo: str) -> str:
    """The commit at the head of `repo`'s main branch on the local forge."""
    path = context.forge.repo_path(repo)  # type: ignore[attr-defined]
    done = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "main"], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@pytest.fixture
def worker(tmp_path, registry, base_image, monkeypatch) -> tuple[Context, str]:
    """A build worker's context: the sample app on the local forge, images pushed to `registry`
    and probed on a port of the test's own. Returns it and the app's head commit."""
    port = free_port()
    config = parse_config(
        f"""
registry:
  url: {registry.host}
  credentials: {{username: {registry.username}, token_env: TEST_REGISTRY_PASSWORD}}
apps:
  - name: sample-app
    repo: sample-app
    chart: chart
    image: baton-test/step-{port}
    image_test:
      env: {{PORT: "{port}", HOST: 127.0.0.1}}
      http: {{port: {port}, path: /version, expected_body: '"environment": "prod"'}}
      timeout_s: 5
"""
    )
    monkeypatch.setenv("TEST_REGISTRY_PASSWORD", registry.password)
    monkeypatch.setenv("BATON_BASE_IMAGE", base_image)
    context = Context(Settings(home=tmp_path / "home", api_port=free_port()), config)
    context.forge.create_repo("sample-app", from_dir=SAMPLE_APP)
    head = main_head(context, "sample-app")
    monkeypatch.setattr(activity_context, "_current", context)
    return context, head


@pytest.fixture
def own_images(worker, docker_client) -> Iterator[None]:
    """Removes the tags the build step gives the app's image, and only those."""
    context, commit = worker
    repository = context.image_repository(context.config.apps[0])
    yield
    for tag in (commit, readable_tag(commit)):
        try:
            docker_client.images.remove(f"{repository}:{tag}")
        except docker.errors.ImageNotFound:
            pass


def test_ci_image_test_step_fails_with_what_the_probe_saw_and_the_image_is_never_pushed(
    worker, own_images
):
    context, commit = worker
    app = context.config.apps[0]
    port = app.image_test.http.port  # type: ignore[union-attr]
    build = BuildInput(app=app, repo="sample-app", commit=commit, push=False, run_image_test=False)

    built = ActivityEnvironment().run(build_image, build)
    tried = ActivityEnvironment().run(
        try_image, ImageInput(app=app, repo="sample-app", commit=commit)
    )

    assert built.passed and built.summary.startswith("built sha256:"), built.summary
    assert not tried.passed
    assert tried.name == "image_test"
    assert tried.summary.startswith(
        f"image test failed: GET http://127.0.0.1:{port}/version did not answer 200 with "
        '\'"environment": "prod"\' within 5s; it saw 200 \'{"app": "sample-app", "commit": '
        f'"{commit}"'
    )
    assert tried.log_ref is not None and tried.log_ref != built.log_ref
    assert f"GET http://127.0.0.1:{port}/version -> 200" in context.logs.get(tried.log_ref)
    assert context.registry.manifest_digest(app.image, commit) is None


def test_ci_push_step_pushes_the_image_that_passed_its_test(worker, own_images):
    context, commit = worker
    app = context.config.apps[0]
    assert app.image_test is not None and app.image_test.http is not None
    passing = app.model_copy(
        update={
            "image_test": app.image_test.model_copy(
                update={
                    "http": app.image_test.http.model_copy(
                        update={"expected_body": '"commit": "{commit}"'}
                    )
                }
            )
        }
    )
    image = ImageInput(app=passing, repo="sample-app", commit=commit)
    build = BuildInput(
        app=passing, repo="sample-app", commit=commit, push=False, run_image_test=False
    )

    ActivityEnvironment().run(build_image, build)
    tried = ActivityEnvironment().run(try_image, image)
    pushed = ActivityEnvironment().run(push_image, image)

    assert tried.passed, tried.summary
    digest = context.registry.manifest_digest(app.image, commit)
    assert digest is not None
    assert pushed.summary == f"pushed {context.image_repository(app)}:{commit[:12]} as {digest}"
    assert context.registry.manifest_digest(app.image, readable_tag(commit)) == digest


def test_ci_stages_candidates_beside_its_checks_and_the_push_and_publish_only_copy_them(
    worker, own_images
):
    context, commit = worker
    app = context.config.apps[0].model_copy(update={"image_test": None})
    image = ImageInput(app=app, repo="sample-app", commit=commit)
    registry = context.registry
    ActivityEnvironment().run(
        build_image,
        BuildInput(app=app, repo="sample-app", commit=commit, push=False, run_image_test=False),
    )

    staged = ActivityEnvironment().run(stage_candidate, image)

    digest = registry.manifest_digest(candidate(app.image), commit)
    version = commit_version(SAMPLE_APP / "chart", commit)
    chart = registry.manifest_digest(candidate("charts/sample-app"), version)
    assert staged.passed and digest is not None and chart is not None
    assert staged.summary == f"staged candidates/{app.image}:{commit[:12]} as {digest}"
    # Nothing where CD reads yet: a check may still fail.
    assert registry.manifest_digest(app.image, commit) is None
    assert registry.manifest_digest("charts/sample-app", version) is None
    # The rendered check runs beside the checks, on the candidate's digest.
    rendered = ActivityEnvironment().run(
        run_check, CheckInput(app=app, repo="sample-app", commit=commit, kind="rendered")
    )
    assert rendered.passed, rendered.summary

    pushed = ActivityEnvironment().run(push_image, image)
    published = ActivityEnvironment().run(
        publish_artifact, PublishInput(app=app, repo="sample-app", commit=commit)
    )

    repository = context.image_repository(app)
    assert pushed.summary == f"pushed {repository}:{commit[:12]} as {digest} (the candidate)"
    assert registry.manifest_digest(app.image, commit) == digest
    assert registry.manifest_digest(app.image, readable_tag(commit)) == digest
    assert published.image_ref == f"{repository}@{digest}"
    assert published.chart_digest == chart
    assert registry.manifest_digest("charts/sample-app", version) == chart
    # Again, as a retried activity would: the same digests, nothing pushed anew.
    assert ActivityEnvironment().run(stage_candidate, image).passed
    assert registry.manifest_digest(candidate(app.image), commit) == digest
    assert ActivityEnvironment().run(push_image, image).summary == pushed.summary
    again = ActivityEnvironment().run(
        publish_artifact, PublishInput(app=app, repo="sample-app", commit=commit)
    )
    assert again.chart_digest == chart


def test_pr_dockerfile_step_refuses_syntax_the_builder_lacks_before_any_build(
    worker, tmp_path, docker_client
):
    context, _ = worker
    app = context.config.apps[0]
    seed = tmp_path / "heredoc-app"
    seed.mkdir()
    (seed / "Dockerfile").write_text(
        "FROM debian:12.8\nUSER 10001\nRUN <<SCRIPT\necho built > /tmp/built\nSCRIPT\n"
    )
    context.forge.create_repo("heredoc-app", from_dir=seed)
    commit = main_head(context, "heredoc-app")

    result = ActivityEnvironment().run(
        run_check, CheckInput(app=app, repo="heredoc-app", commit=commit, kind="dockerfile")
    )

    if find_builder().frontend_1_4:
        assert result.passed, result.summary
    else:
        assert not result.passed
        assert result.summary.startswith(
            "Dockerfile line 3: a heredoc (<<SCRIPT) needs Dockerfile syntax 1.4"
        )
