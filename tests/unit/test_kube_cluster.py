"""The Kubernetes/Flux cluster adapter: status mapping, rollout rules, and against the fake API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from baton.cluster.kubernetes import (
    ClusterForbidden,
    ClusterUnauthorized,
    ClusterUnreachable,
    Conflict,
    FluxCluster,
    KubeconfigError,
    ObjectNotFound,
    ObjectRef,
    RolloutFailed,
    deployment_rollout,
    sync_status_from,
)
from baton.config import ConfigError, EnvironmentConfig, SyncConfig, parse_config
from baton.sync import judge
from tests.conftest import PATIENCE_S, descends_from, eventually, git
from tests.fakes.kube_api import Failure, FakeFlux, FakeKubeAPI, flux_syncing
from tests.fixtures.manifests import web_deployment

OLD, M = "a" * 40, "b" * 40
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
KS = "sample-app-staging"
APPLY_DELAY = 0.5
# Flux's own poll, far longer than any wait (PATIENCE_S): only a reconcile request starts a sync.
FLUX_INTERVAL_S = round(10 * PATIENCE_S)


def kustomization(generation: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": KS, "namespace": "flux-system", "generation": generation},
        "spec": {"sourceRef": {"kind": "GitRepository", "name": "gitops"}},
        "status": status,
    }


def condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


# Status mapping


def test_ready_kustomization_maps_to_shas_generations_and_read_time() -> None:
    obj = kustomization(
        lastAppliedRevision=f"main@sha1:{M}",
        lastAttemptedRevision=f"main@sha1:{M}",
        observedGeneration=2,
        conditions=[
            condition("Ready", "True", "ReconciliationSucceeded", f"Applied revision: {M}")
        ],
    )
    status = sync_status_from(obj, None, NOW)
    assert status is not None
    assert (status.last_applied_revision, status.last_attempted_revision) == (M, M)
    assert (status.ready, status.ready_reason, status.stalled) == (
        True,
        "ReconciliationSucceeded",
        False,
    )
    assert (status.generation, status.observed_generation, status.observed_at) == (2, 2, NOW)
    assert status.applied(M)


def test_kustomization_never_attempted_has_no_status() -> None:
    assert sync_status_from(kustomization(), None, NOW) is None


def test_reconciling_kustomization_is_neither_ready_nor_failed() -> None:
    obj = kustomization(
        lastAppliedRevision=f"main@sha1:{OLD}",
        lastAttemptedRevision=f"main@sha1:{M}",
        conditions=[
            condition("Reconciling", "True", "Progressing"),
            condition("Ready", "Unknown", "Progressing", "Reconciliation in progress"),
        ],
    )
    status = sync_status_from(obj, None, NOW)
    assert status is not None and status.ready is None
    assert judge(status, M, NOW, lambda sha: sha == M).verdict == "waiting"


def test_stalled_kustomization_fails_with_its_message() -> None:
    obj = kustomization(
        lastAttemptedRevision=f"main@sha1:{M}",
        conditions=[
            condition("Stalled", "True", "BuildFailed", "kustomize build failed: accumulating"),
            condition("Ready", "False", "BuildFailed", "kustomize build failed: accumulating"),
        ],
    )
    status = sync_status_from(obj, None, NOW)
    assert status is not None and status.stalled
    result = judge(status, M, NOW, lambda sha: sha == M)
    assert (result.verdict, result.reason) == (
        "failed",
        "Stalled: kustomize build failed: accumulating",
    )


def test_stalled_source_stalls_the_sync_and_says_why() -> None:
    obj = kustomization(
        lastAppliedRevision=f"main@sha1:{OLD}",
        observedGeneration=2,
        conditions=[condition("Ready", "True", "ReconciliationSucceeded")],
    )
    source = {
        "metadata": {"name": "gitops", "namespace": "flux-system"},
        "status": {"conditions": [condition("Stalled", "True", "URLInvalid", "bad URL")]},
    }
    status = sync_status_from(obj, source, NOW)
    assert status is not None and status.stalled
    assert status.ready_message == "GitRepository flux-system/gitops: URLInvalid: bad URL"


# Deployment rollout rules (kubectl rollout status)


def deployment(want: int = 3, generation: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "generation": generation},
        "spec": {"replicas": want},
        "status": {"observedGeneration": generation, **status},
    }


@pytest.mark.parametrize(
    ("obj", "done", "reason"),
    [
        (
            deployment(observedGeneration=1),
            False,
            "Waiting for deployment spec update to be observed...",
        ),
        (
            deployment(updatedReplicas=1, availableReplicas=1),
            False,
            'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
        ),
        (
            deployment(replicas=4, updatedReplicas=3, availableReplicas=3),
            False,
            'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...',
        ),
        (
            deployment(replicas=3, updatedReplicas=3, availableReplicas=2),
            False,
            'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...',
        ),
        (
            deployment(replicas=3, updatedReplicas=3, availableReplicas=3),
            True,
            'deployment "web" successfully rolled out',
        ),
    ],
)
def test_rollout_follows_kubectl_rules(obj: dict[str, Any], done: bool, reason: str) -> None:
    assert deployment_rollout(obj) == (done, reason)


def test_rollout_past_its_progress_deadline_fails() -> None:
    stuck = deployment(
        updatedReplicas=1,
        conditions=[condition("Progressing", "False", "ProgressDeadlineExceeded", "timed out")],
    )
    with pytest.raises(RolloutFailed, match='deployment "web" exceeded its progress deadline'):
        deployment_rollout(stuck)


# Against the fake API server and its scripted Flux


def commit(repo: Path, name: str) -> str:
    (repo / "rendered" / name).write_text(name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", name)
    return git(repo, "rev-parse", "HEAD")


STAGING = EnvironmentConfig(name="staging", namespace="staging", sync=SyncConfig(kind="flux"))


@pytest.fixture
def gitops(make_repo: Callable[..., Path]) -> Path:
    return make_repo("gitops", {"rendered/staging/sample-app/manifests.yaml": "{}\n"})


def kustomization_status(api: FakeKubeAPI) -> dict[str, Any]:
    """What Flux last reported on the Kustomization (nothing before its first reconcile)."""
    obj = api.get("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", KS)
    return obj.get("status", {})


@pytest.fixture
def flux(api: FakeKubeAPI, gitops: Path) -> Iterator[FakeFlux]:
    """Flux syncing the GitOps repository every FLUX_INTERVAL_S, its first revision applied."""
    path = "./rendered/staging/sample-app"
    interval = f"{FLUX_INTERVAL_S}s"
    with flux_syncing(
        api, gitops, KS, apply_delay=APPLY_DELAY, interval=interval, path=path
    ) as flux:
        yield flux


def test_status_from_before_the_merge_never_passes_even_ready(
    flux: FakeFlux, flux_cluster: FluxCluster, gitops: Path
) -> None:
    before = flux_cluster.sync_status(STAGING, "sample-app")
    assert before is not None and before.ready is True
    merged_at = datetime.now(UTC)
    merge = commit(gitops, "m")
    descends = descends_from(gitops, merge)

    assert judge(before, merge, merged_at, descends).reason == "status predates the merge"
    after = flux_cluster.sync_status(STAGING, "sample-app")
    assert after is not None and after.ready is True and after.observed_at > merged_at
    result = judge(after, merge, merged_at, descends)
    assert result.verdict == "waiting" and result.reason.startswith("applied revision is")


def test_later_descendant_revision_releases_the_gate(
    flux: FakeFlux, flux_cluster: FluxCluster, gitops: Path
) -> None:
    merged_at = datetime.now(UTC)
    merge = commit(gitops, "m")
    child = commit(gitops, "child")
    flux_cluster.request_reconcile(STAGING, "sample-app")

    def judgement():
        status = flux_cluster.sync_status(STAGING, "sample-app")
        return judge(status, merge, merged_at, descends_from(gitops, merge))

    result = eventually(judgement, lambda r: r.verdict == "synced", what="the sync")
    assert result.revision == child


def test_ready_false_on_the_awaited_revision_fails_with_flux_reason_within_one_poll(
    flux: FakeFlux, flux_cluster: FluxCluster, api: FakeKubeAPI, gitops: Path
) -> None:
    merged_at = datetime.now(UTC)
    merge = commit(gitops, "m")
    flux.fail(Failure(revision=merge, message="timeout waiting for: [Deployment/staging/web]"))
    flux_cluster.request_reconcile(STAGING, "sample-app")

    def reported_failure(status: dict[str, Any]) -> bool:
        ready = {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready")
        return status.get("lastAttemptedRevision") == f"main@sha1:{merge}" and ready == "False"

    # Flux has reported the failure: the next poll must see it.
    eventually(lambda: kustomization_status(api), reported_failure, what="Flux to report it")

    status = flux_cluster.sync_status(STAGING, "sample-app")
    result = judge(status, merge, merged_at, descends_from(gitops, merge))
    assert result.verdict == "failed"
    assert result.reason == "HealthCheckFailed: timeout waiting for: [Deployment/staging/web]"


def test_reconcile_request_syncs_without_waiting_for_the_poll_interval(
    flux: FakeFlux, flux_cluster: FluxCluster, gitops: Path
) -> None:
    merged_at = datetime.now(UTC)
    merge = commit(gitops, "m")
    descends = descends_from(gitops, merge)

    def verdict() -> str:
        return judge(
            flux_cluster.sync_status(STAGING, "sample-app"), merge, merged_at, descends
        ).verdict

    time.sleep(APPLY_DELAY + 1)
    assert verdict() == "waiting"  # without a request, Flux waits for its interval
    flux_cluster.request_reconcile(STAGING, "sample-app")
    # Synced within PATIENCE_S, far less than the interval: the request started the sync.
    eventually(verdict, lambda v: v == "synced", what="the requested sync")


def test_reconcile_request_fetches_the_source_and_lets_its_new_revision_start_the_sync(
    flux: FakeFlux, flux_cluster: FluxCluster, api: FakeKubeAPI, gitops: Path
) -> None:
    commit(gitops, "m")
    flux_cluster.request_reconcile(STAGING, "sample-app")
    patches = [(path, ctype) for method, path, ctype, _ in api.requests if method == "PATCH"]
    assert patches == [
        (
            "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/gitops",
            "application/merge-patch+json",
        )
    ]
    source = api.get("source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "gitops")
    assert "reconcile.fluxcd.io/requestedAt" in source["metadata"]["annotations"]
    assert "baton" in {entry["manager"] for entry in source["metadata"]["managedFields"]}


def test_reconcile_request_without_a_new_revision_annotates_the_kustomization(
    flux: FakeFlux, flux_cluster: FluxCluster, api: FakeKubeAPI
) -> None:
    flux_cluster.request_reconcile(STAGING, "sample-app")
    patched = [path.rsplit("/", 1)[-1] for method, path, *_ in api.requests if method == "PATCH"]
    assert patched == ["gitops", KS]
    obj = eventually(
        lambda: api.get("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", KS),
        lambda obj: "lastHandledReconcileAt" in obj["status"],
        what="Flux to handle the request",
    )
    requested = obj["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"]
    assert obj["status"]["lastHandledReconcileAt"] == requested


def test_reconcile_request_retries_when_the_object_changed_since_read(
    flux: FakeFlux, flux_cluster: FluxCluster, api: FakeKubeAPI
) -> None:
    api.interfere("kustomizations", "flux-system", KS, times=2)
    flux_cluster.request_reconcile(STAGING, "sample-app")
    codes = [code for method, path, _, code in api.requests if method == "PATCH" and KS in path]
    assert codes == [409, 409, 200]

    api.interfere("kustomizations", "flux-system", KS, times=100)
    with pytest.raises(Conflict, match=f"Kustomization flux-system/{KS} changed under each"):
        flux_cluster.request_reconcile(STAGING, "sample-app")


def test_server_side_apply_creates_then_updates_and_takes_over_fields(
    api: FakeKubeAPI, flux_cluster: FluxCluster
) -> None:
    [web] = flux_cluster.apply(web_deployment("1"), "default")
    assert (web, str(web)) == (
        ObjectRef("default", "web", "apps", "Deployment", "v1"),
        "Deployment/default/web",
    )
    assert web.id == "default_web_apps_Deployment"
    created = api.get("apps/v1", "Deployment", "default", "web")
    assert created["metadata"]["generation"] == 1
    [entry] = created["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("baton", "Apply")

    api.write(
        api.resource("apps/v1", "Deployment"),
        "default",
        "web",
        "patch",
        {"spec": {"replicas": 5}},
        content_type="application/strategic-merge-patch+json",
        manager="kubectl-scale",
    )
    flux_cluster.apply(web_deployment("2"), "default")
    updated = api.get("apps/v1", "Deployment", "default", "web")
    container = updated["spec"]["template"]["spec"]["containers"][0]
    assert (updated["spec"]["replicas"], container["image"]) == (2, "registry.local/web:2")
    assert updated["metadata"]["generation"] == 3
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    owners = {e["manager"]: e["fieldsV1"] for e in updated["metadata"]["managedFields"]}
    assert "f:replicas" in owners["baton"]["f:spec"] and "kubectl-scale" not in owners


def test_rollout_status_reads_the_deployment(api: FakeKubeAPI, flux_cluster: FluxCluster) -> None:
    flux_cluster.apply(web_deployment("1"), "default")
    assert flux_cluster.rollout_status("default", "web").reason.startswith(
        "Waiting for deployment spec"
    )
    api.set_deployment_rollout("default", "web", updated=2, available=1)
    assert flux_cluster.rollout_status("default", "web") == (
        False,
        'Waiting for deployment "web" rollout to finish: 1 of 2 updated replicas are available...',
    )
    api.set_deployment_rollout("default", "web")
    assert flux_cluster.rollout_status("default", "web").done
    api.set_deployment_rollout("default", "web", updated=1, deadline_exceeded=True)
    with pytest.raises(RolloutFailed):
        flux_cluster.rollout_status("default", "web")


def test_apply_of_an_unknown_kind_says_to_install_the_crd(flux_cluster: FluxCluster) -> None:
    manifest = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    with pytest.raises(Exception, match="serves no Widget in example.com/v1: fix the apiVersion"):
        flux_cluster.apply(manifest, "default")


# Errors a user can hit


def test_missing_kustomization_names_the_config_field(
    api: FakeKubeAPI, flux_cluster: FluxCluster
) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        flux_cluster.sync_status(STAGING, "sample-app")
    assert str(caught.value) == (
        f"Kustomization flux-system/{KS} not found: check environments.staging.sync.kustomization"
        " (default <app>-<environment>) and environments.staging.sync.namespace"
    )


def test_forbidden_read_says_to_grant_the_permission(
    api: FakeKubeAPI, flux_cluster: FluxCluster
) -> None:
    api.forbid("get", "kustomizations")
    with pytest.raises(ClusterForbidden, match='cannot get resource "kustomizations".*RBAC'):
        flux_cluster.sync_status(STAGING, "sample-app")


def test_wrong_token_is_unauthorized(tmp_path: Path) -> None:
    with FakeKubeAPI(token="right") as api:
        api.token = "wrong"
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        api.token = "right"
        with pytest.raises(ClusterUnauthorized, match="rejected Baton's credentials"):
            FluxCluster.connect(kubeconfig).sync_status(STAGING, "sample-app")


def test_stopped_api_server_is_unreachable(api: FakeKubeAPI, tmp_path: Path) -> None:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    api.stop()
    with pytest.raises(ClusterUnreachable, match="cannot reach the Kubernetes API at http://127"):
        FluxCluster.connect(kubeconfig).sync_status(STAGING, "sample-app")


def test_unknown_context_is_a_kubeconfig_error(api: FakeKubeAPI, tmp_path: Path) -> None:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    with pytest.raises(KubeconfigError, match="check environments\\[\\].sync.kubeconfig"):
        FluxCluster.connect(kubeconfig, "prod")


# The fake behaves like an API server where Baton relies on it


def test_fake_bumps_generation_on_spec_changes_only_and_rejects_stale_writes(
    api: FakeKubeAPI, flux_cluster: FluxCluster
) -> None:
    flux_cluster.apply(web_deployment("1"), "default")
    rt = api.resource("apps/v1", "Deployment")
    first = api.get("apps/v1", "Deployment", "default", "web")
    annotated = api.write(
        rt,
        "default",
        "web",
        "patch",
        {"metadata": {"annotations": {"a": "b"}}},
        content_type="application/merge-patch+json",
    )
    assert annotated["metadata"]["generation"] == 1
    stale = {
        "metadata": {"resourceVersion": first["metadata"]["resourceVersion"]},
        "spec": {"replicas": 3},
    }
    with pytest.raises(Exception, match="the object has been modified"):
        api.write(rt, "default", "web", "patch", stale, content_type="application/merge-patch+json")
    ks = api.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    with pytest.raises(Exception, match="unknown format"):
        api.write(
            ks,
            "flux-system",
            KS,
            "patch",
            {},
            content_type="application/strategic-merge-patch+json",
        )


def test_kubeconfig_on_a_local_environment_is_rejected() -> None:
    text = """
apps: [{name: app, repo: app, chart: chart, image: app}]
environments:
  - {name: dev, namespace: dev, sync: {kind: local, kubeconfig: /etc/kubeconfig}}
"""
    with pytest.raises(
        ConfigError, match="environments\\[0\\].sync: kubeconfig and context are only"
    ):
        parse_config(text)
