"""The sync gate on Flux/Kubernetes: the real `check_sync` activity, the GitOps repository on the
local forge with merge commits made by merging pull requests, and the fake API server's Flux."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import activities.context as activity_context
from activities.context import Context
from activities.deploy import ApplyInput, SyncCheckInput, apply_manifests, check_sync
from baton.cluster.kubernetes import FluxCluster
from baton.config import parse_config
from baton.models import RolloutInput, SyncOutcome
from baton.settings import Settings
from tests.conftest import PATIENCE_S, eventually
from tests.fakes.kube_api import Failure, FakeFlux, FakeKubeAPI
from tests.fakes.records import fake_artifact
from tests.fixtures.ports import closed_port

APPLY_DELAY = 0.5
# Flux's own poll, far longer than any wait (PATIENCE_S): only a reconcile request starts a sync.
FLUX_INTERVAL_S = round(10 * PATIENCE_S)
MANIFESTS = "rendered/staging/sample-app/manifests.yaml"
CONFIG = """
apps:
  - {{name: sample-app, repo: sample-app, chart: chart, image: sample-app}}
environments:
  - name: staging
    namespace: staging
    sync: {{kind: flux, kubeconfig: {kubeconfig}, context: fake, timeout_s: 60}}
  - name: dev
    namespace: default
    sync: {{kind: apply, kubeconfig: {kubeconfig}, context: fake, timeout_s: 60}}
"""


@dataclass
class FluxStack:
    context: Context
    flux: FakeFlux

    @property
    def staging(self):
        return self.context.config.environment("staging")

    def merge(self, content: str, path: str = MANIFESTS) -> tuple[str, datetime]:
        """Propose `content` as the manifests at `path` (default: staging's) and merge the pull
        request: (M, merged at)."""
        forge, branch = self.context.forge, f"baton/sample-app/staging/{uuid.uuid4().hex[:12]}"
        self.context.gitops.propose(branch, path, content, "Deploy sample-app")
        pr = forge.open_pull_request("gitops", branch, "main", "Deploy", "", author="baton")
        merged_at = datetime.now(UTC)
        return forge.merge_pull_request("gitops", pr.number, pr.head_sha), merged_at

    def check(self, merge: str, merged_at: datetime, env: str = "staging") -> SyncCheckInput:
        rollout = RolloutInput(
            change_id="change-1",
            app=self.context.config.app("sample-app"),
            environment=self.context.config.environment(env),
            artifact=fake_artifact(
                "sample-app", "c" * 40, registry="127.0.0.1:5000", created_at=merged_at
            ),
            author="alice",
        )
        return SyncCheckInput(rollout=rollout, merged_revision=merge, since=merged_at)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[FluxStack]:
    seed = tmp_path / "seed"
    (seed / MANIFESTS).parent.mkdir(parents=True)
    (seed / MANIFESTS).write_text("# nothing deployed yet\n")
    saved = activity_context._current
    with FakeKubeAPI() as api, FakeFlux(api, apply_delay=APPLY_DELAY) as flux:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        settings = Settings(home=tmp_path / "home", api_port=closed_port())
        context = Context(settings, parse_config(CONFIG.format(kubeconfig=kubeconfig)))
        context.forge.create_repo("gitops", from_dir=seed)
        flux.add_sync(
            context.forge.repo_path("gitops"),
            "sample-app-staging",
            interval=f"{FLUX_INTERVAL_S}s",
            path="./rendered/staging/sample-app",
        )
        head = f"main@sha1:{context.gitops.head()}"
        eventually(
            lambda: api.get(
                "kustomize.toolkit.fluxcd.io/v1",
                "Kustomization",
                "flux-system",
                "sample-app-staging",
            ),
            lambda ks: ks.get("status", {}).get("lastAppliedRevision") == head,
            what="Flux to apply the first revision",
        )
        activity_context.install(context)
        try:
            yield FluxStack(context, flux)
        finally:
            activity_context._current = saved
        assert not flux.errors


def poll_check_sync(check: SyncCheckInput) -> object:
    """Run check_sync until it stops answering NotSynced: its outcome, or the error it raised."""

    def attempt() -> object:
        try:
            return ActivityEnvironment().run(check_sync, check)
        except ApplicationError as exc:
            return exc

    return eventually(
        attempt,
        lambda outcome: not (isinstance(outcome, ApplicationError) and outcome.type == "NotSynced"),
        what="the sync check to settle",
    )


def test_merge_commit_is_synced_after_a_reconcile_request_not_the_next_poll(
    stack: FluxStack,
) -> None:
    merge, merged_at = stack.merge("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: v2}\n")
    check = stack.check(merge, merged_at)
    with pytest.raises(ApplicationError, match="not synced yet: applied revision is"):
        ActivityEnvironment().run(check_sync, check)  # Flux's next poll is a minute away

    cluster = stack.context.cluster(stack.staging)
    assert isinstance(cluster, FluxCluster) and stack.context.cluster(stack.staging) is cluster
    cluster.request_reconcile(stack.staging, "sample-app")
    outcome = poll_check_sync(check)

    # Synced within PATIENCE_S, far less than Flux's interval: the request started the sync.
    assert outcome == SyncOutcome(synced=True, revision=merge, reason="ReconciliationSucceeded")


def test_failing_revision_fails_the_sync_check_with_flux_reason(stack: FluxStack) -> None:
    merge, merged_at = stack.merge("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n")
    stack.flux.fail(
        Failure(revision=merge, message="timeout waiting for: [Deployment/staging/sample-app]")
    )
    stack.context.cluster(stack.staging).request_reconcile(stack.staging, "sample-app")
    outcome = poll_check_sync(stack.check(merge, merged_at))

    assert isinstance(outcome, ApplicationError)
    assert (outcome.type, outcome.non_retryable) == ("SyncFailed", True)
    assert (
        outcome.message == "HealthCheckFailed: timeout waiting for: [Deployment/staging/sample-app]"
    )


def test_apply_activity_applies_the_merge_and_refuses_a_missing_path(stack: FluxStack) -> None:
    """sync.kind apply: the real activity, the GitOps repository on the forge, the fake API."""
    before = stack.context.gitops.head()  # dev's manifests are not there yet
    merge, merged_at = stack.merge(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n",
        "rendered/dev/sample-app/manifests.yaml",
    )
    rollout = stack.check(merge, merged_at, env="dev").rollout

    applied = ActivityEnvironment().run(
        apply_manifests, ApplyInput(rollout=rollout, revision=merge)
    )
    assert applied == f"applied 1 object(s) at {merge[:12]}"
    outcome = ActivityEnvironment().run(check_sync, stack.check(merge, merged_at, env="dev"))
    assert outcome == SyncOutcome(synced=True, revision=merge, reason="Applied")

    with pytest.raises(ApplicationError) as missing:
        ActivityEnvironment().run(apply_manifests, ApplyInput(rollout=rollout, revision=before))
    assert (missing.value.type, missing.value.non_retryable) == ("ApplyFailed", True)
    assert missing.value.message == (
        f"rendered/dev/sample-app/manifests.yaml is not in the GitOps repository at "
        f"{before[:12]}: nothing to apply"
    )
