"""Pipeline activities: checks, image build and push, artifact publication. Each is idempotent."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.context import Context, current
from activities.errors import typed_errors
from activities.heartbeat import heartbeating, report
from baton import artifacts, bundles, checks, images
from baton.batches import LONG_TESTS_CONTEXT
from baton.config import AppConfig
from baton.errors import CheckConfigError
from baton.models import Artifact, CheckResult, PinnedImage, TreeChecks
from baton.registry import candidate
from baton.temporal import (
    Queries,
    SearchAttributes,
    TaskQueues,
    Updates,
    WorkflowTypes,
    long_tests_id,
)

CheckKind = Literal["lint", "test", "long_test", "dockerfile", "templates", "rendered"]


class CheckInput(BaseModel):
    app: AppConfig
    repo: str
    commit: str
    kind: CheckKind
    niceness: int = 0
    """How much lower than the worker's the CPU priority of the check's processes is
    (`baton.checks.lowered`): the pipelines run the checks other than their longest (CI's long
    tests, the PR's unit tests), their critical path, lower, so where they share a machine the
    longest comes first."""


class BuildInput(BaseModel):
    app: AppConfig
    repo: str
    commit: str
    push: bool
    run_image_test: bool = True
    """Run the app's `image_test` inside the build step, as pipelines did before it became a step
    of its own (`try_image`); the pipelines that run that step pass False."""


class PublishInput(BaseModel):
    app: AppConfig
    repo: str
    commit: str


class ImageInput(PublishInput):
    """The app's image as the pipeline's build step built it at `commit`."""


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
            niceness=input.niceness,
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
        return _dockerfile(workdir, app, ctx, input.niceness)
    if input.kind == "templates":
        if app.chart:
            values = [workdir / app.test_values] if app.test_values else []
            return checks.helm_lint(
                workdir / app.chart,
                values,
                on_progress=report,
                logs=ctx.logs,
                registry=ctx.registry,
                niceness=input.niceness,
            )
        assert app.kustomize is not None  # the config holds a chart or a kustomization
        return checks.kustomize_build(workdir / app.kustomize, root=workdir, logs=ctx.logs)
    if input.kind == "rendered":
        digest = _image_digest(ctx, app, input.commit)
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


def _dockerfile(workdir: Path, app: AppConfig, ctx: Context, niceness: int) -> CheckResult:
    """hadolint, then whether this machine's builder can build the Dockerfile at all: a
    Dockerfile that needs a newer BuildKit fails here, before any build, naming the line."""
    dockerfile = workdir / app.context / app.dockerfile
    lint = checks.hadolint(
        dockerfile, repository_root=workdir, on_progress=report, logs=ctx.logs, niceness=niceness
    )
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


def _image_digest(ctx: Context, app: AppConfig, commit: str) -> str:
    """The digest of the app's image for `commit`: pushed, or staged as a candidate while the
    checks run (`stage_candidate`); the same manifest either way."""
    staged = ctx.registry.manifest_digest(candidate(app.image), commit)
    return staged or _pushed_digest(ctx, app, commit)


def readable_tag(commit: str) -> str:
    """The human-readable tag pushed beside the commit tag."""
    return f"git-{commit[:12]}"


@activity.defn
@heartbeating
@typed_errors
def build_image(input: BuildInput) -> CheckResult:
    """Build the app's image at the commit, tagged with the commit and its readable tag; with
    `run_image_test`, test it; when `push`, push it under both tags.

    Idempotent: a rebuild of the same commit comes from the engine's cache, and pushing the same
    image under the same tags leaves the registry's digest unchanged.
    """
    ctx = current()
    app = input.app
    started = time.monotonic()
    try:
        built = _build(ctx, app, input.repo, input.commit)
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
    if input.run_image_test and app.image_test is not None:
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
        summary = f"{_push(ctx, app, input.commit, built.image_id)}{tested}"
    return _passed("image", started, summary, built.log_ref)


@activity.defn
@heartbeating
@typed_errors
def try_image(input: ImageInput) -> CheckResult:
    """The app's `image_test` (command and/or HTTP probe) in its image built at the commit, the
    pipeline's `image_test` step: after the build, before any push. A failure is a result that
    says what the test saw; its container output and probe answers are kept by `log_ref`."""
    ctx = current()
    app = input.app
    if app.image_test is None:
        return CheckResult(
            name="image_test",
            passed=True,
            exit_code=None,
            duration_s=0,
            summary="no image_test configured",
            excerpt="",
        )
    tried = images.try_image(
        _built_image(ctx, input),
        app.image_test,
        commit=input.commit,
        on_progress=report,
        logs=ctx.logs,
    )
    return tried.model_copy(update={"name": "image_test"})


@activity.defn
@heartbeating
@typed_errors
def push_image(input: ImageInput) -> CheckResult:
    """Push the app's image built at the commit under the commit and its readable tag, the
    pipeline's `push` step: a copy of the candidate `stage_candidate` staged, where there is
    one (nothing uploaded again), else a push through the engine. Idempotent (the same image
    under the same tags)."""
    ctx = current()
    started = time.monotonic()
    app, commit = input.app, input.commit
    staged = ctx.registry.manifest_digest(candidate(app.image), commit)
    if staged is None:
        summary = _push(ctx, app, commit, _built_image(ctx, input))
    else:
        ctx.registry.copy(candidate(app.image), staged, app.image, [commit, readable_tag(commit)])
        summary = f"pushed {ctx.image_repository(app)}:{commit[:12]} as {staged} (the candidate)"
    return _passed("push", started, summary)


@activity.defn
@heartbeating
@typed_errors
def stage_candidate(input: ImageInput) -> CheckResult:
    """Stage what CI will publish for the commit while its checks still run: the image (after
    its test) in `candidates/<image>:<commit>`, and the chart or Kustomize bundle under
    `candidates/`. Nothing reaches the repositories CD reads until every check passed and the
    `push` and `publish` steps copy the candidates there (`Registry.copy`), so the rendered
    check can run beside the checks and only copies follow them. Idempotent."""
    ctx = current()
    started = time.monotonic()
    app, commit = input.app, input.commit
    image_id = _built_image(ctx, input)
    workdir = ctx.checkout(input.repo, commit)
    # The chart or bundle (helm's processes) is staged while the engine pushes the image: the
    # step takes the longer of the two, not their sum.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage-templates") as beside:
        templates = beside.submit(_stage_templates, ctx, input, workdir)
        digest = images.push_image(
            image_id, ctx.registry, candidate(app.image), commit, on_progress=report
        )
        templates.result()
    return _passed("candidate", started, f"staged {candidate(app.image)}:{commit[:12]} as {digest}")


def _stage_templates(ctx: Context, input: ImageInput, workdir: Path) -> None:
    """Stage the app's chart or Kustomize bundle at `workdir` as its candidate."""
    app = input.app
    if app.kustomize is not None:
        bundles.stage_bundle(
            app.name, input.commit, workdir, app.kustomize, ctx.registry, input.repo
        )
    else:
        assert app.chart is not None  # the config holds a chart or a kustomization
        artifacts.stage_chart(workdir / app.chart, input.commit, ctx.registry)


def _passed(name: str, started: float, summary: str, log_ref: str | None = None) -> CheckResult:
    """A step that passed, started at `started` (time.monotonic())."""
    return CheckResult(
        name=name,
        passed=True,
        exit_code=0,
        duration_s=time.monotonic() - started,
        summary=summary,
        excerpt="",
        log_ref=log_ref,
    )


def _build(ctx: Context, app: AppConfig, repo: str, commit: str) -> images.BuiltImage:
    workdir = ctx.checkout(repo, commit)
    repository = ctx.image_repository(app)
    return images.build_image(
        workdir / app.context,
        [f"{repository}:{commit}", f"{repository}:{readable_tag(commit)}"],
        dockerfile=app.dockerfile,
        buildargs={"APP_COMMIT": commit, **ctx.build_args()},
        labels={"org.opencontainers.image.revision": commit},
        secrets=_build_secrets(app),
        registries=[ctx.registry],  # FROM a mirrored image in Baton's registry
        on_progress=report,
        logs=ctx.logs,
    )


def _built_image(ctx: Context, input: ImageInput) -> str:
    """The engine's id of the image the build step tagged `<repository>:<commit>`. Built again
    from the same inputs (from the cache, or anew) where this worker's engine lacks it: the
    build step may have run on another build worker. Raises ImageBuildFailed if that fails."""
    image = images.local_image(f"{ctx.image_repository(input.app)}:{input.commit}")
    return image or _build(ctx, input.app, input.repo, input.commit).image_id


def _push(ctx: Context, app: AppConfig, commit: str, image_id: str) -> str:
    """Push `image_id` under the commit, then give the pushed manifest its readable tag in the
    registry (no second push through the engine); one line saying what was pushed."""
    digest = images.push_image(image_id, ctx.registry, app.image, commit, on_progress=report)
    ctx.registry.tag(app.image, digest, readable_tag(commit))
    return f"pushed {ctx.image_repository(app)}:{commit[:12]} as {digest}"


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
    # The push may be copying the candidate into the app's repository meanwhile: same digest.
    digest = _image_digest(ctx, app, input.commit)
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


class LongTestsInput(BaseModel):
    """The app's long tests at `commit` (`AppConfig.long_tests_ahead`)."""

    app: AppConfig
    repo: str
    commit: str


async def _long_tests_id(input: LongTestsInput) -> str:
    tree = await asyncio.to_thread(current().tree, input.repo, input.commit)
    return long_tests_id(input.app.name, tree, input.app.commands.long_test)


@activity.defn
@heartbeating
@typed_errors
async def start_long_tests(input: LongTestsInput) -> str:
    """Start the `LongTests` workflow of the commit's tree, the one already running or passed
    for it when there is one (nothing started twice); its workflow id. Workflow ids are unique
    per tree, so a PR head with the tree of a head tested before reuses that run."""
    workflow_id = await _long_tests_id(input)
    try:
        await activity.client().start_workflow(
            WorkflowTypes.LONG_TESTS,
            input,
            id=workflow_id,
            task_queue=TaskQueues.WORKFLOWS,
            # Runs that failed, were cancelled or timed out do not count: the tree is tried again.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"long tests of {input.app.name} @ {input.commit[:12]}",
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SearchAttributes.APP, input.app.name),
                    SearchAttributePair(SearchAttributes.COMMIT, input.commit),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        # A run for the tree passed already: this head's long tests are green too, and say so.
        run = activity.client().get_workflow_handle(workflow_id, result_type=CheckResult)
        passed = await run.result()
        await asyncio.to_thread(
            current().forge.set_commit_status,
            input.repo,
            input.commit,
            LONG_TESTS_CONTEXT,
            "success",
            f"{passed.summary}, the same tree"[:140],
            None,
        )
    return workflow_id


@activity.defn
@heartbeating
@typed_errors
async def long_tests_result(input: LongTestsInput) -> CheckResult | None:
    """The result of the long tests the PR pipeline started for a commit with this commit's tree
    (`start_long_tests`): waited for while they run; None when there is no such run or it did
    not pass (failed, cancelled, timed out), and CI runs them itself.

    The run's `long_tests_passed` Update answers as soon as the tests end, before the run
    reports their commit status and completes; a run that has ended already, or that started
    before the Update existed, gives its result instead."""
    handle = activity.client().get_workflow_handle(
        await _long_tests_id(input), result_type=CheckResult
    )
    report(f"waiting for {handle.id}")
    try:
        return await handle.execute_update(Updates.LONG_TESTS_PASSED, result_type=CheckResult)
    except WorkflowUpdateFailedError:
        pass  # they did not pass, or the run predates the Update: its result says which
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:  # NOT_FOUND: no such run, or it has ended
            raise
    try:
        return await handle.result()
    except WorkflowFailureError:
        return None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


@activity.defn
@heartbeating
@typed_errors
async def pull_request_checks(input: LongTestsInput) -> TreeChecks | None:
    """The checks a PR pipeline passed on a commit with this commit's tree, as it told the long
    tests it started there (`LongTests`); None when no PR pipeline did."""
    handle = activity.client().get_workflow_handle(await _long_tests_id(input))
    try:
        return await handle.query(Queries.PR_CHECKS, result_type=TreeChecks)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
