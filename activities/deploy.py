"""Deploy activities: render for an environment, GitOps pull requests, sync status, verification."""

from __future__ import annotations

import hashlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import current
from baton import artifacts
from baton.gitops import rollout_branch
from baton.models import GitOpsPullRequest, Rendered, RolloutInput, SyncOutcome
from baton.render import HelmRenderer, diff_manifests, validate_manifests
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
    rollout: RolloutInput
    merge_commit: str
    since: datetime | None = None
    revision: str | None = None


class VerifyInput(BaseModel):
    rollout: RolloutInput


def _fail(message: str) -> ApplicationError:
    """An error retrying cannot fix: bad configuration or content."""
    return ApplicationError(message, non_retryable=True, type="DeployConfigError")


@activity.defn
def render_environment(input: RolloutInput) -> Rendered:
    """Render the artifact's chart with the environment's values (image by digest) and diff it."""
    ctx = current()
    app, env, artifact = input.app, input.environment, input.artifact
    gitops = ctx.gitops
    values_path = gitops.values_path(app, env)
    values = gitops.read(values_path)
    if values is None:
        raise _fail(
            f"{values_path} is missing in the GitOps repository {gitops.config.repo}: "
            f"add {env.name}'s values for {app.name} there"
        )
    with tempfile.TemporaryDirectory(prefix="baton-render-") as tmp:
        values_file = Path(tmp) / "values.yaml"
        values_file.write_text(values)
        chart = artifacts.fetch_chart(artifact, Path(tmp) / "chart", ctx.registry)
        manifests = HelmRenderer(chart).render(
            app.name, env.namespace, values_files=[values_file], image=artifact.pinned_image
        )
    problems = validate_manifests(manifests)
    if problems:
        raise _fail(f"rendered manifests for {env.name} are invalid: {'; '.join(problems[:5])}")
    path = gitops.manifests_path(app, env)
    diff = diff_manifests(gitops.read(path) or "", manifests)
    return Rendered(
        path=path,
        content_ref=ctx.blobs.put(manifests),
        content_hash=hashlib.sha256(manifests.encode()).hexdigest(),
        diff_markdown=diff.to_markdown(),
        changed_objects=len(diff.changes),
    )


@activity.defn
def gitops_head(input: RolloutInput) -> str:
    """The GitOps base branch's head: what to wait for when the manifests did not change."""
    return current().gitops.head()


@activity.defn
def propose_gitops_change(input: ProposeInput) -> GitOpsPullRequest:
    """Push the rollout's branch and open its PR; looked up by head branch first, never two PRs."""
    ctx = current()
    rollout = input.rollout
    app, env, commit = rollout.app, rollout.environment, rollout.artifact.commit
    repo = ctx.config.gitops.repo
    branch = rollout_branch(app.name, env.name, commit)
    pr = ctx.forge.find_pull_request(repo, branch)
    if pr is None:
        content = ctx.blobs.get(input.rendered.content_ref)
        message = f"Deploy {app.name} {commit[:12]} to {env.name}"
        ctx.gitops.propose(branch, input.rendered.path, content, message)
        pr = ctx.forge.open_pull_request(
            repo, branch, ctx.config.gitops.base_branch, message, input.body, author="baton"
        )
    return GitOpsPullRequest(
        number=pr.number, url=pr.html_url, head_branch=pr.head_branch, head_sha=pr.head_sha
    )


@activity.defn
def merge_gitops_pr(input: MergeInput) -> str:
    """Merge the approved GitOps PR at the approved head; returns the merge commit M."""
    ctx = current()
    repo = ctx.config.gitops.repo
    merge = ctx.forge.merge_pull_request(repo, input.pr.number, input.pr.head_sha)
    ctx.forge.delete_branch(repo, input.pr.head_branch)
    return merge


@activity.defn
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
def is_descendant(input: SyncCheckInput) -> bool:
    """Whether `revision` is the merge commit or a descendant of it in the GitOps repository."""
    assert input.revision is not None
    return current().gitops.is_ancestor(input.merge_commit, input.revision)


@activity.defn
def check_sync(input: SyncCheckInput) -> SyncOutcome:
    """One look at the environment's sync status; raises (and is retried with backoff) until synced."""
    ctx = current()
    rollout = input.rollout
    status = ctx.cluster(rollout.environment).sync_status(rollout.environment, rollout.app.name)
    since = input.since or datetime.min.replace(tzinfo=UTC)
    verdict = judge(
        status,
        input.merge_commit,
        since,
        lambda sha: ctx.gitops.is_ancestor(input.merge_commit, sha),
    )
    if verdict.verdict == "failed":
        raise ApplicationError(verdict.reason, type="SyncFailed", non_retryable=True)
    if verdict.verdict == "waiting":
        raise ApplicationError(f"not synced yet: {verdict.reason}", type="NotSynced")
    return SyncOutcome(synced=True, revision=verdict.revision, reason=verdict.reason)


@activity.defn
def verify_endpoint(input: VerifyInput) -> SyncOutcome:
    """Check the environment's endpoint until it answers as expected or the timeout passes."""
    verify = input.rollout.environment.verify
    assert verify is not None
    commit = input.rollout.artifact.commit
    expected = verify.expected_body.replace("{commit}", commit) if verify.expected_body else None
    deadline = time.monotonic() + verify.timeout_s
    last = "no answer yet"
    while True:
        try:
            answer = httpx.get(verify.url, timeout=5)
            last = f"{answer.status_code} {answer.text[:200]!r}"
            if answer.status_code == verify.expected_status and (
                expected is None or expected in answer.text
            ):
                return SyncOutcome(
                    synced=True, revision=commit, reason="verified", message=f"{verify.url}: {last}"
                )
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        activity.heartbeat(last)
        if time.monotonic() > deadline:
            return SyncOutcome(
                synced=False,
                reason="verification failed",
                message=f"{verify.url} did not answer {verify.expected_status}"
                + (f" containing {expected!r}" if expected else "")
                + f" within {verify.timeout_s}s; last answer: {last}",
            )
        time.sleep(1)
