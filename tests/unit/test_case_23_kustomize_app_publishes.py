"""Case 23: a Kustomize app (base + component + generators, kustomize's examples/components.md
layout) passed the config check, the PR check and CI's rendered check, then failed every merge at
publish. Expected: carried through CD. Here the real activities take it through the PR check,
CI's rendered check and publish against a real registry, then CD's render for dev from the
published bundle and dev's overlay in the GitOps repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import context as activity_context
from activities.context import Context
from activities.deploy import render_environment
from activities.pipeline import CheckInput, PublishInput, publish_artifact, run_check
from baton.config import Credentials, RegistryConfig, load_config
from baton.environment_render import read_inputs
from baton.gitops import RenderedFrom, Templates
from baton.models import RolloutInput
from baton.registry import Registry
from baton.render import split_objects
from baton.settings import Settings
from cli.render import render
from tests.conftest import git
from tests.fakes.records import fake_artifact
from tests.fixtures.cli import run_baton
from tests.unit.test_rollback_activities import closed_port

pytestmark = pytest.mark.docker

CASE = Path(__file__).parents[1] / "fixtures" / "cases" / "23-kustomize-app-cannot-publish"
DEV_OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
patches:
  - patch: |-
      - op: add
        path: /spec/replicas
        value: 2
    target: {kind: Deployment, name: example}
"""


def push_image(registry: Registry, name: str, tag: str) -> str:
    """A minimal OCI image `name:tag` in the registry, as CI's build step leaves one."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}})
    config_digest = registry.push_blob(name, config.encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [],
    }
    body = json.dumps(manifest).encode()
    return registry.push_manifest(name, tag, body, "application/vnd.oci.image.manifest.v1+json")


@pytest.fixture
def context(tmp_path: Path, registry, monkeypatch: pytest.MonkeyPatch) -> Context:
    """The case's config on a registry of the test's own; the case's files as the app's
    repository, and a GitOps repository holding dev's overlay, on the local forge."""
    monkeypatch.setenv("CASE23_REGISTRY_PASSWORD", registry.password)
    config = load_config(CASE / "baton.yaml")
    config = config.model_copy(
        update={
            "registry": RegistryConfig(
                url=registry.host,
                credentials=Credentials(
                    username=registry.username, token_env="CASE23_REGISTRY_PASSWORD"
                ),
            )
        }
    )
    settings = Settings(home=tmp_path / "home", api_port=closed_port())
    ctx = Context(settings, config)
    ctx.forge.create_repo("example", from_dir=CASE)
    gitops = tmp_path / "gitops"
    (gitops / "environments/dev/example").mkdir(parents=True)
    (gitops / "environments/dev/example/kustomization.yaml").write_text(DEV_OVERLAY)
    ctx.forge.create_repo("gitops", from_dir=gitops)
    monkeypatch.setattr(activity_context, "_current", ctx)
    return ctx


def test_the_config_check_accepts_the_case(tmp_path: Path) -> None:
    check = run_baton(
        "config",
        "check",
        str(CASE / "baton.yaml"),
        env={"BATON_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_kustomize_app_is_published_and_rendered_for_dev(context: Context) -> None:
    app = context.config.apps[0]
    commit = git(context.forge.repo_path("example"), "rev-parse", "refs/heads/main")
    image_digest = push_image(context.registry, "example", commit)
    env = ActivityEnvironment()

    for kind in ("templates", "rendered"):
        check = env.run(run_check, CheckInput(app=app, repo="example", commit=commit, kind=kind))
        assert check.passed, f"{kind}: {check.summary}"
    artifact = env.run(publish_artifact, PublishInput(app=app, repo="example", commit=commit))

    assert artifact.image_digest == image_digest
    assert artifact.kustomize_digest == context.registry.manifest_digest(
        "kustomize/example", commit
    )
    assert artifact.kustomize_path == "deploy/overlays/community"

    rendered = env.run(
        render_environment,
        RolloutInput(
            change_id="change/example/1",
            app=app,
            environment=context.config.environment("dev"),
            artifact=artifact,
            author="alice",
        ),
    )
    objects = split_objects(context.blobs.get(rendered.content_ref))
    deployment = objects["Deployment/dev/example"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{context.registry.host}/example@{image_digest}"
    assert deployment["spec"]["replicas"] == 2  # dev's overlay
    assert any(k.startswith("Secret/dev/dbpass-") for k in objects)  # the component's generator
    assert rendered.path == "rendered/dev/example/manifests.yaml"
    assert "added: `Deployment/dev/example`" in rendered.diff_markdown
    record = RenderedFrom.parse(context.blobs.get(rendered.rendered_from_ref or ""))
    assert record is not None and record.templates == Templates.of(artifact)
    assert record.templates.kind == "bundle"
    assert record.inputs == {"environments/dev/example/kustomization.yaml": DEV_OVERLAY}
    # The template diff: the bundle's files and dev's overlay, all new to dev.
    assert rendered.template_diff_markdown.startswith(f"nothing deployed → example {commit[:12]}")
    for added in ("deploy/base/deployment.yaml", "environments/dev/example/kustomization.yaml"):
        assert f"#### added: `{added}`" in rendered.template_diff_markdown
    # `baton render` prints byte for byte what the rollout commits.
    printed = render(
        context.config,
        context.settings,
        "example",
        "dev",
        commit=commit,
        image=artifact.image_ref,
    )
    assert printed == context.blobs.get(rendered.content_ref)


def test_an_environment_without_its_overlay_fails_at_once_naming_the_file(
    context: Context,
) -> None:
    app = context.config.apps[0]
    qa = context.config.environment("dev").model_copy(update={"name": "qa", "namespace": "qa"})
    artifact = fake_artifact("example", "b" * 40, registry=context.registry.host)
    rollout = RolloutInput(
        change_id="change/example/2", app=app, environment=qa, artifact=artifact, author="alice"
    )
    with pytest.raises(ApplicationError) as failed:
        ActivityEnvironment().run(render_environment, rollout)
    assert failed.value.type == "DeployConfigError" and failed.value.non_retryable
    assert failed.value.message == (
        "environments/qa/example/kustomization.yaml is missing in the GitOps repository gitops: "
        "add qa's overlay for example there (a kustomization of kind Component)"
    )


def test_a_kustomization_given_in_place_of_the_overlays_replaces_it(context: Context) -> None:
    app, dev = context.config.apps[0], context.config.environment("dev")
    given = "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
    assert read_inputs(context.gitops, app, dev) == {
        "environments/dev/example/kustomization.yaml": DEV_OVERLAY
    }
    assert read_inputs(context.gitops, app, dev, given) == {
        "environments/dev/example/kustomization.yaml": given
    }
