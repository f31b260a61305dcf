"""Rollout health in the sync status, and environments without Flux (`sync.kind: apply`),
against the fake API server with its deployment controller and scripted Flux."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from baton.cluster.applied import Applied, AppliedCluster, InventoryUnreadable, inventory_name
from baton.cluster.kubernetes import ApplyFailed, FluxCluster
from baton.config import EnvironmentConfig, SyncConfig
from baton.sync import Judgement, judge
from tests.conftest import descends_from, eventually, git
from tests.fakes.kube_api import FakeDeploymentController, FakeFlux, FakeKubeAPI, flux_syncing
from tests.fixtures.manifests import web_deployment

KS = "sample-app-staging"
MANIFESTS = "rendered/staging/sample-app/manifests.yaml"
FLUX = EnvironmentConfig(name="staging", namespace="staging", sync=SyncConfig(kind="flux"))
APPLY = EnvironmentConfig(name="staging", namespace="staging", sync=SyncConfig(kind="apply"))


def manifests(tag: str, *, config: str | None = "settings") -> str:
    """A Deployment `web` running image tag `tag`, and optionally a ConfigMap named `config`."""
    documents = [web_deployment(tag)]
    if config:
        documents.append(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {config}}}\n")
    return "---\n".join(documents)


def release(repo: Path, content: str) -> str:
    """Commit `content` as staging's manifests; returns the commit."""
    (repo / MANIFESTS).parent.mkdir(parents=True, exist_ok=True)
    (repo / MANIFESTS).write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "release")
    return git(repo, "rev-parse", "HEAD")


def until(
    cluster: FluxCluster | AppliedCluster,
    env: EnvironmentConfig,
    merge: str,
    merged_at: datetime,
    repo: Path,
    verdict: str,
) -> Judgement:
    """Poll the sync status until `judge` gives `verdict`; the judgement."""
    return eventually(
        lambda: judge(
            cluster.sync_status(env, "sample-app"), merge, merged_at, descends_from(repo, merge)
        ),
        lambda result: result.verdict == verdict,
        what=f"the sync to be {verdict}",
    )


def flux_applied(api: FakeKubeAPI, merge: str) -> dict:
    """The Kustomization, once Flux reports `merge` applied."""
    return eventually(
        lambda: api.get("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", KS),
        lambda ks: ks.get("status", {}).get("lastAppliedRevision") == f"main@sha1:{merge}",
        what=f"Flux to apply {merge[:12]}",
    )


@pytest.fixture
def controller(api: FakeKubeAPI) -> Iterator[FakeDeploymentController]:
    with FakeDeploymentController(api, delay=0.3) as controller:
        yield controller


@pytest.fixture
def gitops(make_repo: Callable[..., Path]) -> Path:
    return make_repo("gitops", {MANIFESTS: "# nothing deployed yet\n"})


# Flux without health checks of its own: Ready means "applied", Baton waits for the rollout


@pytest.fixture
def flux(api: FakeKubeAPI, gitops: Path) -> Iterator[FakeFlux]:
    with flux_syncing(
        api,
        gitops,
        KS,
        apply_delay=0.1,
        interval="60s",
        path="./rendered/staging/sample-app",
        wait=False,
        target_namespace="staging",
    ) as flux:
        yield flux


def test_flux_ready_waits_for_the_deployments_in_its_inventory_to_roll_out(
    api: FakeKubeAPI, flux: FakeFlux, flux_cluster: FluxCluster, gitops: Path
) -> None:
    merged_at = datetime.now(UTC)
    merge = release(gitops, manifests("1"))
    flux_cluster.request_reconcile(FLUX, "sample-app")

    # Flux applied the revision and says Ready; the Deployment has not rolled out yet (no
    # deployment controller runs until the test plays it).
    ks = flux_applied(api, merge)
    assert {"id": "staging_web_apps_Deployment", "v": "v1"} in ks["status"]["inventory"]["entries"]
    waiting = judge(
        flux_cluster.sync_status(FLUX, "sample-app"), merge, merged_at, descends_from(gitops, merge)
    )
    assert waiting.verdict == "waiting"
    assert waiting.reason.startswith("not Ready yet: Waiting for deployment")

    api.set_deployment_rollout("staging", "web")
    synced = until(flux_cluster, FLUX, merge, merged_at, gitops, "synced")
    assert (synced.revision, synced.reason) == (merge, "ReconciliationSucceeded")


def test_flux_sync_fails_when_a_deployment_exceeds_its_progress_deadline(
    controller: FakeDeploymentController, flux: FakeFlux, flux_cluster: FluxCluster, gitops: Path
) -> None:
    controller.script("staging", "web", 1, updated=1, available=0, deadline_exceeded=True)
    merged_at = datetime.now(UTC)
    merge = release(gitops, manifests("1"))
    flux_cluster.request_reconcile(FLUX, "sample-app")

    failed = until(flux_cluster, FLUX, merge, merged_at, gitops, "failed")
    assert failed.revision == merge
    assert failed.reason.startswith(
        'ProgressDeadlineExceeded: deployment "web" exceeded its progress deadline'
    )


def test_without_rollout_health_flux_ready_is_enough(
    controller: FakeDeploymentController, flux: FakeFlux, flux_cluster: FluxCluster, gitops: Path
) -> None:
    controller.script("staging", "web", 1, updated=0, available=0)  # never rolls out
    env = FLUX.model_copy(update={"sync": SyncConfig(kind="flux", rollout_health=False)})
    merged_at = datetime.now(UTC)
    merge = release(gitops, manifests("1"))
    flux_cluster.request_reconcile(env, "sample-app")

    assert until(flux_cluster, env, merge, merged_at, gitops, "synced").revision == merge


def test_flux_with_wait_reports_the_stuck_rollout_itself(
    api: FakeKubeAPI, controller: FakeDeploymentController, gitops: Path, flux_cluster: FluxCluster
) -> None:
    """The fake's Flux health-checks like kustomize-controller with `wait: true`."""
    controller.script("staging", "web", 1, updated=1, available=0, deadline_exceeded=True)
    with FakeFlux(api, apply_delay=0.1) as flux:
        flux.add_sync(
            gitops,
            KS,
            interval="60s",
            path="./rendered/staging/sample-app",
            target_namespace="staging",
        )
        merged_at = datetime.now(UTC)
        merge = release(gitops, manifests("1"))
        flux_cluster.request_reconcile(FLUX, "sample-app")
        failed = until(flux_cluster, FLUX, merge, merged_at, gitops, "failed")
    assert failed.reason == (
        "HealthCheckFailed: health check failed: [Deployment/staging/web status: 'Failed']"
    )


# Kubernetes without Flux: Baton applies, prunes and keeps an inventory


@pytest.fixture
def applied(api: FakeKubeAPI, tmp_path: Path) -> AppliedCluster:
    return AppliedCluster.connect(api.write_kubeconfig(tmp_path / "kubeconfig"), "fake")


def apply(cluster: AppliedCluster, repo: Path, content: str, commit: str) -> Applied:
    """Apply `content`, released as `commit` of `repo`, to staging as the deploy activity does."""
    return cluster.apply_revision(APPLY, "sample-app", content, commit, descends_from(repo, commit))


def test_apply_records_the_inventory_and_syncs_once_rolled_out(
    api: FakeKubeAPI, applied: AppliedCluster, gitops: Path
) -> None:
    assert applied.sync_status(APPLY, "sample-app") is None  # never applied
    merged_at = datetime.now(UTC)
    merge = release(gitops, manifests("1"))

    result = apply(applied, gitops, manifests("1"), merge)

    assert result.applied == ["Deployment/staging/web", "ConfigMap/staging/settings"]
    assert result.describe() == f"applied 2 object(s) at {merge[:12]}"
    web = api.get("apps/v1", "Deployment", "staging", "web")
    assert next(e["manager"] for e in web["metadata"]["managedFields"]) == "baton"
    record = api.get("v1", "ConfigMap", "staging", inventory_name("sample-app"))["data"]
    assert record["revision"] == merge
    assert json.loads(record["entries"]) == [
        {"id": "staging_web_apps_Deployment", "v": "v1"},
        {"id": "staging_settings__ConfigMap", "v": "v1"},
    ]
    waiting = judge(
        applied.sync_status(APPLY, "sample-app"), merge, merged_at, descends_from(gitops, merge)
    )
    assert waiting.verdict == "waiting"
    assert waiting.reason.startswith("not Ready yet: Waiting for deployment")
    api.set_deployment_rollout("staging", "web")  # the deployment controller's part, played here
    assert until(applied, APPLY, merge, merged_at, gitops, "synced").reason == "Applied"


def test_next_revision_prunes_what_it_no_longer_holds(
    api: FakeKubeAPI, controller: FakeDeploymentController, applied: AppliedCluster, gitops: Path
) -> None:
    first = release(gitops, manifests("1"))
    apply(applied, gitops, manifests("1"), first)
    second = release(gitops, manifests("2", config="settings-v2"))

    result = apply(applied, gitops, manifests("2", config="settings-v2"), second)

    assert result.pruned == ["ConfigMap/staging/settings"]
    assert api.store.find(api.resource("v1", "ConfigMap"), "staging", "settings") is None
    assert api.get("v1", "ConfigMap", "staging", "settings-v2")
    image = api.get("apps/v1", "Deployment", "staging", "web")["spec"]["template"]["spec"]
    assert image["containers"][0]["image"] == "registry.local/web:2"
    # Applying the same revision again (a retried activity) changes nothing.
    again = apply(applied, gitops, manifests("2", config="settings-v2"), second)
    assert (
        again.pruned == []
        and api.get("apps/v1", "Deployment", "staging", "web")["metadata"]["generation"] == 2
    )


def test_an_older_revision_never_replaces_a_later_one(
    api: FakeKubeAPI, applied: AppliedCluster, gitops: Path
) -> None:
    first = release(gitops, manifests("1"))
    second = release(gitops, manifests("2"))
    apply(applied, gitops, manifests("2"), second)

    late = apply(applied, gitops, manifests("1"), first)

    assert late.superseded_by == second and late.applied == []
    assert late.describe() == f"skipped: the cluster runs {second[:12]}, a later revision"
    container = api.get("apps/v1", "Deployment", "staging", "web")["spec"]["template"]["spec"]
    assert container["containers"][0]["image"] == "registry.local/web:2"


def test_apply_progress_deadline_fails_the_sync(
    controller: FakeDeploymentController, applied: AppliedCluster, gitops: Path
) -> None:
    controller.script("staging", "web", 1, updated=1, available=0, deadline_exceeded=True)
    merged_at = datetime.now(UTC)
    merge = release(gitops, manifests("1"))
    apply(applied, gitops, manifests("1"), merge)

    failed = until(applied, APPLY, merge, merged_at, gitops, "failed")
    assert failed.reason.startswith('ProgressDeadlineExceeded: deployment "web" exceeded')


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: [unclosed", "the manifests are not valid YAML"),
        (
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
            (
                "Widget/w: the cluster serves no Widget in example.com/v1: fix the apiVersion or "
                "install the CRD"
            ),
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: nowhere}\n",
            "ConfigMap/c in nowhere not found: check the manifest and that its namespace exists",
        ),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "every object needs apiVersion"),
    ],
)
def test_manifests_that_cannot_be_applied_say_why(
    applied: AppliedCluster, content: str, message: str
) -> None:
    with pytest.raises(ApplyFailed) as failure:
        applied.apply_revision(APPLY, "sample-app", content, "c" * 40, lambda sha: False)
    assert message in str(failure.value)


def test_a_broken_inventory_says_how_to_recover(api: FakeKubeAPI, applied: AppliedCluster) -> None:
    api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": inventory_name("sample-app"), "namespace": "staging"},
            "data": {"revision": "c" * 40, "entries": "not json"},
        }
    )
    with pytest.raises(InventoryUnreadable, match="delete it and promote the app again"):
        applied.sync_status(APPLY, "sample-app")
