"""Deploy activities: render for an environment, GitOps pull requests, sync status, verification."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import AliasChoices, BaseModel, Field
from temporalio import activity

from activities.context import Context, current
from activities.errors import typed_errors
from activities.heartbeat import heartbeating, report
from baton import artifacts, private, shared_http
from baton.config import VerifyConfig
from baton.diff import TemplateDiff, describe_unstable, diff_manifests
from baton.environment_render import (
    diff_templates,
    fetch_templates,
    read_inputs,
    render_for_environment,
)
from baton.errors import ClusterConfigError, NotSynced, SyncFailed
from baton.forges.base import HeadChanged
from baton.gitops import (
    RENDERED_FROM,
    TEMPLATES_DIFF,
    GitOpsRepo,
    RenderedFrom,
    beside,
    placeholder_manifests,
    revert_branch,
    rollout_branch,
)
from baton.gitops_merge import BaseMovedMerge, Rerender
from baton.models import GitOpsPullRequest, Rendered, RolloutInput, SyncOutcome
from baton.render import holds_objects
from baton.sensitivity import sensitive_changes
from baton.sync import judge


class ProposeInput(BaseModel):
    rollout: RolloutInput
    rendered: Rendered
    body: str


class MergeInput(BaseModel):
    rollout: RolloutInput
    pr: GitOpsPullRequest


class CloseInput(BaseModel):
    rollout: RolloutInput
    pr: GitOpsPullRequest
    reason: str


class SyncCheckInput(BaseModel):
    """Is `merged_revision` (or, from an event, `revision`, maybe a descendant) synced?"""

    rollout: RolloutInput
    # The plugin cannot see that AliasChoices leaves the field required by name.
    merged_revision: str = Field(  # type: ignore[pydantic-alias]
        # Inputs recorded before the rename carry `merge_commit`.
        validation_alias=AliasChoices("merged_revision", "merge_commit"),
    )
    since: datetime | None = None
    revision: str | None = None


class VerifyInput(BaseModel):
    """What must serve: the artifact's commit, or in a rollback what ran before (maybe nothing)."""

    rollout: RolloutInput
    commit: str | None = Field(default=None, description="None: the artifact's commit")
    rolled_back_from: str | None = Field(
        default=None,
        description="a rollback with no known previous commit: this one must no longer serve",
    )
    removed: bool = Field(
        default=False,
        description="the rollback removed the app: no answer at all counts as rolled back",
    )


class ApplyInput(BaseModel):
    rollout: RolloutInput
    revision: str


class RevertInput(BaseModel):
    rollout: RolloutInput
    revision: str = Field(  # type: ignore[pydantic-alias]
        validation_alias=AliasChoices("revision", "merge_commit"),
        description="the GitOps revision to revert",
    )
    body: str


class Revert(BaseModel):
    """The revert of a rollout's GitOps change: its PR, or the head when nothing was left to revert."""

    pr: GitOpsPullRequest | None = None
    head: str | None = None
    previous_commit: str | None = None
    removed: bool = Field(
        default=False, description="the app had no objects there before: the revert removes it"
    )


IMAGE_DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})")


def _ask_cluster(request):
    """Run one cluster request; configuration and permission errors fail at once, with the fix.

    A retry cannot repair a bad kubeconfig, a missing Kustomization, a missing RBAC grant or a
    broken inventory, so waiting for the sync timeout would only hide the message.
    """
    from baton.cluster.applied import InventoryUnreadable
    from baton.cluster.kubernetes import (
        ClusterForbidden,
        ClusterUnauthorized,
        KubeconfigError,
        ObjectNotFound,
    )

    try:
        return request()
    except (
        KubeconfigError,
        ClusterUnauthorized,
        ClusterForbidden,
        ObjectNotFound,
        InventoryUnreadable,
    ) as exc:
        raise ClusterConfigError(f"cannot use the cluster: {exc}") from None


@activity.defn
@heartbeating
@typed_errors
def render_environment(input: RolloutInput) -> Rendered:
    """Render the artifact's chart with the environment's values, or its Kustomize bundle with
    the environment's overlay (image by digest either way), and diff it: rendered objects, and
    the templates and inputs they came from."""
    return _render(current(), input)


def _render(ctx: Context, input: RolloutInput) -> Rendered:
    app, env, artifact = input.app, input.environment, input.artifact
    gitops = ctx.gitops.of(env.name)
    path, *also_paths = gitops.manifests_paths(app, env)
    deployed = gitops.read(path) or ""
    previous = RenderedFrom.parse(gitops.read(beside(path, RENDERED_FROM)))
    record = RenderedFrom.of(artifact, env.name, read_inputs(gitops, app, env))
    # In the worker's private directory: what a killed worker leaves is removed at the next start.
    with private.scratch("render-") as tmp:
        published = fetch_templates(artifact, Path(tmp) / "new", ctx.registry)
        result = render_for_environment(
            app,
            env,
            published,
            inputs=record.inputs,
            image=artifact.pinned_image,
            deployed=deployed,
            registry=ctx.registry,
            registry_url=ctx.config.registry.url,
            source=f"{artifact.chart_ref}:{artifact.chart_version}" if app.chart else None,
        )
        unrecorded = previous is None and holds_objects(deployed)
        templates, unavailable = _diff_templates(
            ctx, previous, record, published, Path(tmp) / "old", unrecorded=unrecorded
        )
    manifests = result.manifests
    diff = diff_manifests(deployed, manifests)
    full = templates.to_unified()
    return Rendered(
        path=path,
        also_paths=also_paths,
        content_ref=ctx.blobs.put(manifests),
        content_hash=hashlib.sha256(manifests.encode()).hexdigest(),
        diff_markdown=diff.to_markdown(),
        changed_objects=len(diff.changes),
        sensitive=sensitive_changes(deployed, manifests, ctx.config.registry.url),
        unstable=describe_unstable(result.unstable),
        template_diff_markdown=unavailable
        or templates.to_markdown(full_diff=beside(path, TEMPLATES_DIFF) if full else None),
        rendered_from_ref=ctx.blobs.put(record.to_text()),
        template_diff_ref=ctx.blobs.put(full) if full else None,
        omitted=result.omitted,
    )


def _diff_templates(
    ctx: Context,
    previous: RenderedFrom | None,
    record: RenderedFrom,
    published: Path,
    scratch: Path,
    *,
    unrecorded: bool,
) -> tuple[TemplateDiff, str]:
    """The template diff from what the environment runs (`previous`; None: nothing), and a note
    when its templates cannot be had: `unrecorded` (deployed before Baton kept a record), or
    gone from the registry."""
    if unrecorded:
        note = f"{record.environment} runs manifests rendered before Baton recorded their "
        note += "templates: no template diff this time."
        return TemplateDiff(), note
    old = None
    if previous is not None and previous.templates == record.templates:
        old = published  # only the inputs changed: no need to fetch the same templates again
    elif previous is not None:
        try:
            old = fetch_templates(previous.artifact(), scratch, ctx.registry)
        except artifacts.ArtifactError as exc:
            note = f"The templates {record.environment} runs cannot be compared: {exc}"
            return TemplateDiff(), note
    return diff_templates(previous, old, record, published), ""


@activity.defn
@heartbeating
@typed_errors
def gitops_head(input: RolloutInput) -> str:
    """The GitOps base branch's head: what to wait for when the manifests did not change."""
    return current().gitops.of(input.environment.name).head()


@activity.defn
@heartbeating
@typed_errors
def propose_gitops_change(input: ProposeInput) -> GitOpsPullRequest:
    """Push the rollout's branch and open its PR; looked up by head branch first, never two PRs."""
    ctx = current()
    rollout = input.rollout
    app, env, commit = rollout.app, rollout.environment, rollout.artifact.commit
    repo = ctx.config.gitops.repo
    branch = rollout_branch(app.name, env.name, commit)
    pr = ctx.forge.find_pull_request(repo, branch)
    if pr is None:
        rendered = input.rendered
        message = f"Deploy {app.name} {commit[:12]} to {env.name}"
        files = _files(ctx, rendered)
        content = files.pop(rendered.path)
        gitops = ctx.gitops.of(env.name)
        gitops.propose(branch, rendered.path, content, message, also=files)
        pr = ctx.forge.open_pull_request(
            repo, branch, gitops.config.base_branch, message, input.body, author="baton"
        )
    return GitOpsPullRequest(
        number=pr.number, url=pr.html_url, head_branch=pr.head_branch, head_sha=pr.head_sha
    )


def _files(ctx: Context, rendered: Rendered) -> dict[str, str | None]:
    """What a GitOps PR writes for `rendered`: the manifests, and beside them what they were
    rendered from and the full template diff (None: delete an outdated one)."""
    manifests = ctx.blobs.get(rendered.content_ref)
    files: dict[str, str | None] = {}
    for path in (rendered.path, *rendered.also_paths):  # each of the environment's clusters
        files[path] = manifests
        if rendered.rendered_from_ref is not None:  # rendered before Baton kept the record
            files[beside(path, RENDERED_FROM)] = ctx.blobs.get(rendered.rendered_from_ref)
            files[beside(path, TEMPLATES_DIFF)] = (
                ctx.blobs.get(rendered.template_diff_ref) if rendered.template_diff_ref else None
            )
    return files


@activity.defn
@heartbeating
@typed_errors
def merge_gitops_pr(input: MergeInput) -> str:
    """Merge the approved GitOps PR at the approved head; returns the merge commit M.

    When another merge landed on the base branch first and the forge refuses this one, or the
    base changed what the rollout rendered from, Baton's branch is moved onto the base's head
    (rendered again when needed) and merged there: see `baton.gitops_merge`.
    """
    ctx = current()
    rollout = input.rollout
    app, env = rollout.app, rollout.environment
    gitops = ctx.gitops.of(env.name)

    def render() -> tuple[dict[str, str | None], str, list[str]]:
        rendered = _render(ctx, rollout)
        return _files(ctx, rendered), rendered.content_hash, rendered.sensitive

    rerender = None  # a revert is replayed, never rendered
    if input.pr.head_branch == rollout_branch(app.name, env.name, rollout.artifact.commit):
        inputs = gitops.overlay_path(app, env) if app.kustomize else gitops.values_path(app, env)
        rerender = Rerender(gitops.manifests_path(app, env), [inputs], render)
    try:
        merge = BaseMovedMerge(gitops, ctx.forge).merge(
            input.pr.number, input.pr.head_sha, rerender
        )
    except HeadChanged as moved:
        if rerender is None or moved.content_hash is not None:
            raise
        raise _pushed(ctx, gitops, rerender.manifests, moved) from None
    ctx.forge.delete_branch(ctx.config.gitops.repo, input.pr.head_branch)
    return merge


def _pushed(ctx: Context, gitops: GitOpsRepo, path: str, moved: HeadChanged) -> HeadChanged:
    """Someone else pushed to the rollout's PR: `moved` with what its head holds now, the
    manifests' sha256 and why they are security-sensitive against what the environment runs,
    so that the approvals are asked again on that content, not on Baton's render."""
    manifests = gitops.read(path, moved.actual) or ""
    sensitive = sensitive_changes(gitops.read(path) or "", manifests, ctx.config.registry.url)
    return HeadChanged(
        moved.repo,
        moved.number,
        moved.expected,
        moved.actual,
        content_hash=hashlib.sha256(manifests.encode()).hexdigest(),
        sensitive=sensitive,
    )


@activity.defn
@heartbeating
@typed_errors
def revert_gitops_change(input: RevertInput) -> Revert:
    """Open the PR that puts the environment's manifests back as they were before the merge.

    Looked up by head branch first, never two PRs. When the base branch holds the old manifests
    already (someone reverted by hand), there is nothing to open: the head is what to sync.
    When the app had no objects in the environment before (its first deploy there), a placeholder
    without objects takes the manifests' place, so the environment's path stays.
    """
    ctx = current()
    rollout = input.rollout
    app, env, commit = rollout.app, rollout.environment, rollout.artifact.commit
    repo = ctx.config.gitops.repo
    gitops = ctx.gitops.of(env.name)
    path, *also_paths = gitops.manifests_paths(app, env)
    previous = gitops.before(path, input.revision)
    removed = not holds_objects(previous)
    placeholder = placeholder_manifests(app.name, env.name, commit)
    wanted = placeholder if removed else previous
    revert = Revert(previous_commit=_deployed_commit(ctx, app.name, previous), removed=removed)
    branch = revert_branch(app.name, env.name, commit)
    pr = ctx.forge.find_pull_request(repo, branch)
    if pr is None:
        on_base = gitops.read(path)
        if on_base == wanted or (removed and on_base is not None and not holds_objects(on_base)):
            return revert.model_copy(update={"head": gitops.head()})
        message = f"Revert {app.name} {commit[:12]} in {env.name}"
        # The revert undoes the one commit that wrote every cluster's path; what the manifests
        # were rendered from goes back with them.
        also: dict[str, str | None] = {}
        for other in also_paths:
            before = gitops.before(other, input.revision)
            also[other] = before if holds_objects(before) else placeholder
        records = (
            beside(p, name) for p in (path, *also_paths) for name in (RENDERED_FROM, TEMPLATES_DIFF)
        )
        also |= {record: gitops.before(record, input.revision) for record in records}
        gitops.propose(branch, path, wanted, message, also=also)
        pr = ctx.forge.open_pull_request(
            repo, branch, gitops.config.base_branch, message, input.body, author="baton"
        )
    return revert.model_copy(
        update={
            "pr": GitOpsPullRequest(
                number=pr.number, url=pr.html_url, head_branch=pr.head_branch, head_sha=pr.head_sha
            )
        }
    )


def _deployed_commit(ctx: Context, app: str, manifests: str | None) -> str | None:
    """The app commit whose published image `manifests` pin, from Baton's artifact records."""
    digests = set(IMAGE_DIGEST.findall(manifests or ""))
    for commit in sorted(ctx.artifacts.commits(app)) if digests else ():
        artifact = ctx.artifacts.load(app, commit)
        if artifact is not None and artifact.image_digest in digests:
            return artifact.commit
    return None


@activity.defn
@heartbeating
@typed_errors
def close_gitops_pr(input: CloseInput) -> None:
    """Close an abandoned GitOps PR with a comment saying why, and delete its branch."""
    ctx = current()
    repo = ctx.config.gitops.repo
    pr = ctx.forge.get_pull_request(repo, input.pr.number)
    if pr.state == "open":
        ctx.forge.comment(repo, pr.number, f"Closed by Baton: rollout {input.reason}.")
        ctx.forge.close_pull_request(repo, pr.number)
    ctx.forge.delete_branch(repo, input.pr.head_branch)


@activity.defn
@heartbeating
@typed_errors
def is_descendant(input: SyncCheckInput) -> bool:
    """Whether `revision` is the merge commit or a descendant of it in the GitOps repository."""
    assert input.revision is not None
    return current().gitops.is_ancestor(input.merged_revision, input.revision)


@activity.defn
@heartbeating
@typed_errors
def request_reconcile(input: RolloutInput) -> None:
    """Ask the environment's cluster to reconcile now rather than at its next poll interval."""
    env = input.environment
    _ask_cluster(lambda: current().cluster(env).request_reconcile(env, input.app.name))


@activity.defn
@heartbeating
@typed_errors
def apply_manifests(input: ApplyInput) -> str:
    """Server-side apply the app's manifests at `revision` to an environment without Flux,
    prune what they no longer hold, and record the inventory the sync gate reads."""
    from baton.cluster.kubernetes import ApplyFailed

    ctx = current()
    rollout = input.rollout
    app, env = rollout.app, rollout.environment
    path = ctx.gitops.manifests_path(app, env)
    manifests = ctx.gitops.read(path, input.revision)  # a commit: the same on every branch
    if manifests is None:  # never read as "no objects": that would prune the whole app
        raise ApplyFailed(
            f"{path} is not in the GitOps repository at {input.revision[:12]}: nothing to apply"
        )
    cluster = ctx.applied_cluster(env)
    applied = _ask_cluster(
        lambda: cluster.apply_revision(
            env,
            app.name,
            manifests,
            input.revision,
            lambda sha: ctx.gitops.is_ancestor(input.revision, sha),
        )
    )
    activity.logger.info("%s in %s: %s", app.name, env.name, applied.describe())
    return applied.describe()


@activity.defn
@heartbeating
@typed_errors
def check_sync(input: SyncCheckInput) -> SyncOutcome:
    """One look at the environment's sync status; raises (and is retried with backoff) until synced."""
    ctx = current()
    rollout = input.rollout
    env = rollout.environment
    status = _ask_cluster(lambda: ctx.cluster(env).sync_status(env, rollout.app.name))
    since = input.since or datetime.min.replace(tzinfo=UTC)
    verdict = judge(
        status,
        input.merged_revision,
        since,
        lambda sha: ctx.gitops.is_ancestor(input.merged_revision, sha),
    )
    if verdict.verdict == "failed":
        raise SyncFailed(verdict.reason)
    if verdict.verdict == "waiting":
        raise NotSynced(f"not synced yet: {verdict.reason}")
    return SyncOutcome(synced=True, revision=verdict.revision, reason=verdict.reason)


@activity.defn
@heartbeating
@typed_errors
def verify_endpoint(input: VerifyInput) -> SyncOutcome:
    """Check the environment's endpoint until it answers as expected or the timeout passes.

    After a rollback that removed the app, the expected answer is that the failed commit no
    longer serves: no answer at all, another status, or a body without that commit.
    """
    verify = input.rollout.environment.verify
    assert verify is not None
    commit = input.commit or (None if input.rolled_back_from else input.rollout.artifact.commit)
    accepts, wanted = _expectation(input, verify, commit)
    passed, answer = _poll_endpoint(verify.url, accepts, verify.timeout_s)
    if passed:
        return SyncOutcome(
            synced=True, revision=commit, reason="verified", message=f"{verify.url}: {answer}"
        )
    return SyncOutcome(
        synced=False,
        reason="verification failed",
        message=f"{verify.url} did not {wanted} within {verify.timeout_s}s; last answer: {answer}",
    )


RUNNING_PATIENCE_S = 30
"""How long the version running now has to answer its verification: it runs already."""


@activity.defn
@heartbeating
@typed_errors
def verify_running(input: RolloutInput) -> SyncOutcome:
    """Whether the environment's verification answers for the version that runs there now,
    before anything changes it: a check that cannot pass for a healthy deploy would otherwise
    fail the new one and revert it. Synced (reason `nothing runs yet`) when the GitOps
    repository holds no objects of the app there; the running version is the commit of the
    artifact its manifests were rendered from (Baton's record beside them, else the image digest
    they pin); unknown, only the expected status is checked. Waits at most
    `RUNNING_PATIENCE_S` seconds (or the verification's timeout, when shorter)."""
    ctx = current()
    app, env = input.app, input.environment
    verify = env.verify
    assert verify is not None
    path = ctx.gitops.manifests_path(app, env)
    deployed = ctx.gitops.read(path)
    if not holds_objects(deployed):
        return SyncOutcome(synced=True, reason="nothing runs yet")
    record = RenderedFrom.parse(ctx.gitops.read(beside(path, RENDERED_FROM)))
    running = record.commit if record else _deployed_commit(ctx, app.name, deployed)
    accepts, wanted = _expectation(VerifyInput(rollout=input), verify, running)
    patience = min(RUNNING_PATIENCE_S, verify.timeout_s)
    passed, answer = _poll_endpoint(verify.url, accepts, patience)
    version = f"the running version ({running[:12]})" if running else "the running version"
    if passed:
        return SyncOutcome(synced=True, revision=running, reason="verified", message=answer)
    return SyncOutcome(
        synced=False,
        revision=running,
        reason="verification is broken",
        message=f"verification is broken: {verify.url} does not answer for the running version: "
        f"{version} did not {wanted} within {patience}s (last answer: {answer}); fix the "
        f"verify settings of {env.name} in the configuration (url, expected_status, "
        "expected_body), then retry the change",
    )


def _poll_endpoint(
    url: str, accepts: Callable[[httpx.Response | None], bool], timeout_s: float
) -> tuple[bool, str]:
    """GET `url` every second until `accepts` its answer (None: no answer) or `timeout_s` pass;
    whether it did, and the last answer in a few words. Heartbeats the answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = shared_http.client().get(url, timeout=5)
            last = f"{answer.status_code} {answer.text[:200]!r}"
        except httpx.HTTPError as exc:
            answer, last = None, f"{type(exc).__name__}: {exc}"
        if accepts(answer):
            return True, last
        report(last)
        if time.monotonic() > deadline:
            return False, last
        time.sleep(1)


def _expectation(
    input: VerifyInput, verify: VerifyConfig, commit: str | None
) -> tuple[Callable[[httpx.Response | None], bool], str]:
    """Which answers (None: no answer) pass verification, and what was wanted, for messages."""
    gone = input.rolled_back_from
    if input.removed:
        failed = gone
        assert failed is not None

        def stopped(answer: httpx.Response | None) -> bool:
            # Nothing ran before the failed deploy: no answer at all is the rolled-back state.
            return (
                answer is None
                or answer.status_code != verify.expected_status
                or failed not in answer.text
            )

        return stopped, f"stop serving {failed[:12]!r}"
    template = verify.expected_body or ""
    if "{commit}" in template and commit is None:
        # A rollback to a commit Baton does not know: at least the failed one must be gone.
        expected = None
    else:
        expected, gone = template.replace("{commit}", commit or "") or None, None

    def serves(answer: httpx.Response | None) -> bool:
        return (
            answer is not None
            and answer.status_code == verify.expected_status
            and (expected is None or expected in answer.text)
            and (gone is None or gone not in answer.text)
        )

    wanted = f"answer {verify.expected_status}"
    wanted += f" containing {expected!r}" if expected else ""
    wanted += f" without {gone[:12]!r}" if gone else ""
    return serves, wanted
