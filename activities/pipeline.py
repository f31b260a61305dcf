"""Pipeline activities: checks, image build and push, artifact publication. Each is idempotent."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import current
from baton import checks
from baton.checks import CheckResult
from baton.config import AppConfig
from baton.models import Artifact

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


def _heartbeat(message: str) -> None:
    activity.heartbeat(message)


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
    result = None
    for command in commands:
        result = checks.run_check(
            result_name,
            command,
            workdir,
            timeout_s=input.app.check_timeout_s,
            on_progress=_heartbeat,
            logs=ctx.logs,
        )
        if not result.passed:
            break
    return result


@activity.defn
def run_check(input: CheckInput) -> CheckResult:
    """One pipeline step at one commit; a failing check is a result, not an error."""
    ctx = current()
    app = input.app
    if input.kind in ("lint", "test", "long_test"):
        commands = {"lint": app.commands.lint, "test": app.commands.test}
        return _commands(input.kind, commands.get(input.kind, app.commands.long_test), input)
    workdir = ctx.checkout(input.repo, input.commit)
    if input.kind == "dockerfile":
        return checks.hadolint(workdir / app.dockerfile, on_progress=_heartbeat, logs=ctx.logs)
    if input.kind == "templates":
        if app.chart:
            values = [workdir / app.test_values] if app.test_values else []
            return checks.helm_lint(
                workdir / app.chart, values, on_progress=_heartbeat, logs=ctx.logs
            )
        return checks.kustomize_build(workdir / app.kustomize, logs=ctx.logs)
    if input.kind == "rendered":
        digest = ctx.registry.manifest_digest(app.image, input.commit)
        if digest is None:
            raise ApplicationError(
                f"{app.image}:{input.commit} is not in the registry: build and push it first",
                non_retryable=True,
            )
        return checks.render_and_validate(
            "rendered",
            ctx.renderer(app, workdir),
            release=app.name,
            namespace="ci",
            values_files=[workdir / app.test_values] if app.test_values else [],
            overrides=ctx.image_overrides(app, digest),
            logs=ctx.logs,
        )
    raise ApplicationError(f"unknown check kind {input.kind!r}", non_retryable=True)


@activity.defn
def build_image(input: BuildInput) -> CheckResult:
    """Build the app's image at the commit; when `push`, push it tagged with the commit."""
    ctx = current()
    workdir = ctx.checkout(input.repo, input.commit)
    return ctx.images.build_and_maybe_push(
        input.app, workdir, input.commit, push=input.push, on_progress=_heartbeat
    )


@activity.defn
def publish_artifact(input: PublishInput) -> Artifact:
    """Publish the template bundle and the image reference by digest for CD."""
    ctx = current()
    workdir = ctx.checkout(input.repo, input.commit)
    return ctx.publish(input.app, workdir, input.commit, on_progress=_heartbeat)
