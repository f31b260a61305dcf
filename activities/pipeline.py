"""Pipeline activities: checks, image build and push, artifact publication. Each is idempotent."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel
from temporalio import activity

from activities.context import Context, current
from activities.errors import typed_errors
from activities.heartbeat import heartbeating, report
from baton import artifacts, bundles, checks, images
from baton.config import AppConfig
from baton.errors import CheckConfigError
from baton.models import Artifact, CheckResult, PinnedImage

CheckKind = Literal["lint", "test", "long_test", "dockerfile", "templates", "rendered"]


class CheckInput(BaseModel):
    app: AppConfig
    repo: str
    commit: str
    kind: CheckKind


class BuildInput(BaseModel):
    app: AppConfig
    repo: str
    commit: str
    push: bool


class PublishInput(BaseModel):
    app: AppConfig
    repo: str
    commit: str


def _commands(result_name: str, commands: list[str], input: CheckInput) -> CheckResult:
    """Run the app's configured commands in order; the first failure decides."""
    ctx = current()
    workdir = ctx.checkout(input.repo, input.commit)
    if not commands:
        return CheckResult(
            name=result_name,
            passed=True,
            exit_code=None,
            duration_s=0,
            summary="no commands configured",
            excerpt="",
        )
    for command in commands:
        result = checks.run_check(
            result_name,
            command,
            workdir,
            timeout_s=input.app.check_timeout_s,
            on_progress=report,
            logs=ctx.logs,
        )
        if not result.passed:
            break
    return result  # commands is not empty, so the loop ran


@activity.defn
@heartbeating
@typed_errors
def run_check(input: CheckInput) -> CheckResult:
    """One pipeline step at one commit; a failing check is a result, not an error."""
    ctx = current()
    app = input.app
    if input.kind in ("lint", "test", "long_test"):
        commands = {"lint": app.commands.lint, "test": app.commands.test}
        return _commands(input.kind, commands.get(input.kind, app.commands.long_test), input)
    workdir = ctx.checkout(input.repo, input.commit)
    if input.kind == "dockerfile":
        return _dockerfile(workdir, app, ctx)
    if input.kind == "templates":
        if app.chart:
            values = [workdir / app.test_values] if app.test_values else []
            return checks.helm_lint(
                workdir / app.chart,
                values,
                on_progress=report,
                logs=ctx.logs,
                registry=ctx.registry,
            )
        assert app.kustomize is not None  # the config holds a chart or a kustomization
        return checks.kustomize_build(workdir / app.kustomize, root=workdir, logs=ctx.logs)
    if input.kind == "rendered":
        digest = _pushed_digest(ctx, app, input.commit)
        return checks.render_and_validate(
            "rendered",
            ctx.renderer(app, workdir),
            release=app.name,
            namespace="ci",
            # A Kustomize app's test inputs are a component its renderer already includes.
            values_files=[workdir / app.test_values] if app.test_values and app.chart else [],
            image=PinnedImage(
                repository=ctx.image_repository(app), digest=digest, tag=readable_tag(input.commit)
            ),
            logs=ctx.logs,
        )
    raise CheckConfigError(f"unknown check kind {input.kind!r}")


def _dockerfile(workdir: Path, app: AppConfig, ctx: Context) -> CheckResult:
    """hadolint, then whether this machine's builder can build the Dockerfile at all: a
    Dockerfile that needs a newer BuildKit fails here, before any build, naming the line."""
    dockerfile = workdir / app.context / app.dockerfile
    lint = checks.hadolint(dockerfile, repository_root=workdir, on_progress=report, logs=ctx.logs)
    if not lint.passed:
        return lint
    try:
        images.check_buildable(dockerfile)
    except images.BuildKitRequired as exc:
        return lint.model_copy(update={"passed": False, "exit_code": None, "summary": str(exc)})
    return lint


def _pushed_digest(ctx: Context, app: AppConfig, commit: str) -> str:
    """The digest of the app's image pushed for `commit`; the step needs it in the registry."""
    digest = ctx.registry.manifest_digest(app.image, commit)
    if digest is None:
        raise CheckConfigError(
            f"{app.image}:{commit} is not in the registry: build and push it first"
        )
    return digest


def readable_tag(commit: str) -> str:
    """The human-readable tag pushed beside the commit tag."""
    return f"git-{commit[:12]}"


@activity.defn
@heartbeating
@typed_errors
def build_image(input: BuildInput) -> CheckResult:
    """Build the app's image at the commit; when `push`, push it tagged with the commit.

    Idempotent: a rebuild of the same commit comes from the engine's cache, and pushing the same
    image under the same tags leaves the registry's digest unchanged.
    """
    ctx = current()
    app = input.app
    workdir = ctx.checkout(input.repo, input.commit)
    repository = ctx.image_repository(app)
    started = time.monotonic()
    try:
        built = images.build_image(
            workdir / app.context,
            [f"{repository}:{input.commit}", f"{repository}:{readable_tag(input.commit)}"],
            dockerfile=app.dockerfile,
            buildargs={"APP_COMMIT": input.commit, **ctx.build_args()},
            labels={"org.opencontainers.image.revision": input.commit},
            secrets=_build_secrets(app),
            on_progress=report,
            logs=ctx.logs,
        )
    except (images.ImageBuildFailed, images.BuildKitRequired) as exc:
        return CheckResult(
            name="image",
            passed=False,
            exit_code=None,
            duration_s=time.monotonic() - started,
            summary=str(exc)[:300],
            excerpt="\n".join(getattr(exc, "last_lines", []))[-2000:],
            log_ref=getattr(exc, "log_ref", None),
        )
    tested = ""
    if app.image_test is not None:
        # Before the push: an image that fails its test never reaches the registry.
        tried = images.try_image(
            built.image_id,
            app.image_test,
            commit=input.commit,
            on_progress=report,
            logs=ctx.logs,
        )
        if not tried.passed:
            return tried.model_copy(
                update={"name": "image", "duration_s": time.monotonic() - started}
            )
        tested = f"; {tried.summary}"
    summary = f"built {built.image_id[:19]}{tested}"
    if input.push:
        digests = [
            images.push_image(built.image_id, ctx.registry, app.image, tag, on_progress=report)
            for tag in (input.commit, readable_tag(input.commit))
        ]
        summary = f"pushed {repository}:{input.commit[:12]} as {digests[0]}{tested}"
    return CheckResult(
        name="image",
        passed=True,
        exit_code=0,
        duration_s=time.monotonic() - started,
        summary=summary,
        excerpt="",
        log_ref=built.log_ref,
    )


def _build_secrets(app: AppConfig) -> dict[str, str]:
    """The values of the app's build secrets, read on this worker at build time."""
    values = {}
    for secret in app.build_secrets:
        value = secret.value()
        if value is None:
            where = f"environment variable {secret.env}" if secret.env else f"file {secret.file}"
            raise CheckConfigError(
                f"build secret {secret.id!r} of app {app.name}: {where} is not set on the build "
                "worker: set it there, or remove the secret from apps[].build_secrets"
            )
        values[secret.id] = value
    return values


@activity.defn
@heartbeating
@typed_errors
def publish_artifact(input: PublishInput) -> Artifact:
    """Publish the chart or Kustomize bundle and the image reference by digest for CD; CD never
    rebuilds."""
    ctx = current()
    app = input.app
    workdir = ctx.checkout(input.repo, input.commit)
    digest = _pushed_digest(ctx, app, input.commit)
    metadata = {"repo": input.repo, "tag": readable_tag(input.commit)}
    if app.kustomize is not None:
        return bundles.publish_bundle(
            app.name,
            input.commit,
            workdir,
            app.kustomize,
            ctx.image_repository(app),
            digest,
            ctx.registry,
            # The repository's name: a clone URL may carry a forge token.
            source=input.repo,
            metadata=metadata,
            store=ctx.artifacts,
        )
    assert app.chart is not None  # the config holds a chart or a kustomization
    return artifacts.publish_artifact(
        app.name,
        input.commit,
        workdir / app.chart,
        ctx.image_repository(app),
        digest,
        ctx.registry,
        metadata=metadata,
        store=ctx.artifacts,
    )
