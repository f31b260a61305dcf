"""Kubernetes environments on the real stack: one applied by Baton (`sync.kind: apply`), one
reconciled by Flux (`sync.kind: flux`, without Flux health checks), both behind the fake API server
with its deployment controller; Temporal, forge, registry, API and worker are real.

A first change rolls out to both. A second change's Deployment in dev exceeds its progress
deadline: the sync gate fails with that reason, the rollback applies the revert, the Deployment
serves the first change's image again, and staging is never touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from baton.cluster.applied import inventory_name
from baton.temporal import rollout_id
from tests.e2e.stack import E2EStack, running_stack
from tests.fakes.kube_api import FakeDeploymentController, FakeFlux, FakeKubeAPI
from workflows.rollout import EnvironmentRollout

pytestmark = pytest.mark.docker

DEPLOYMENT = "apps/v1", "Deployment"


@dataclass
class KubeStack:
    stack: E2EStack
    api: FakeKubeAPI
    controller: FakeDeploymentController

    def deployment(self, namespace: str) -> dict:
        """The app's one Deployment in `namespace`."""
        (deployment,) = self.api.store.list(self.api.resource(*DEPLOYMENT), namespace)
        return deployment

    def image(self, namespace: str) -> str:
        return self.deployment(namespace)["spec"]["template"]["spec"]["containers"][0]["image"]


def kubernetes_environments(kubeconfig: Path):
    def edit(config: dict) -> None:
        envs = {env["name"]: env for env in config["environments"]}
        dev, staging = envs["dev"], envs["staging"]
        for env in (dev, staging):
            env.pop("verify")  # nothing serves behind the fake API server
            env["approvals"] = {"required": 0}
        dev["sync"] = {"kind": "apply", "kubeconfig": str(kubeconfig), "timeout_s": 60}
        staging["sync"] = {"kind": "flux", "kubeconfig": str(kubeconfig), "timeout_s": 60}
        config["environments"] = [dev, staging]
        config["promotion"] = ["dev", "staging"]

    return edit


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[KubeStack]:
    workdir = tmp_path_factory.mktemp("baton")
    with FakeKubeAPI() as api, FakeDeploymentController(api, delay=0.5) as controller:
        for namespace in ("dev", "staging"):
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        kubeconfig = api.write_kubeconfig(workdir / "kubeconfig")
        edit = kubernetes_environments(kubeconfig)
        with (
            running_stack(workdir, base_image, edit) as stack,
            FakeFlux(api, apply_delay=0.5) as flux,
        ):
            flux.add_sync(
                stack.forge().repo_path("gitops"),
                "sample-app-staging",
                interval="10m",
                path="./rendered/staging/sample-app",
                wait=False,
                target_namespace="staging",
            )
            yield KubeStack(stack, api, controller)
            assert not flux.errors


def test_apply_and_flux_environments_roll_out_and_a_stuck_rollout_is_rolled_back(
    kube: KubeStack,
) -> None:
    stack, api = kube.stack, kube.api
    done = ("completed", "failed")

    first, first_commit = stack.release("e2e-k8s-first")
    change = stack.wait(first, lambda d: d.change.state in done, timeout=600).change
    assert change.state == "completed", change.reason
    pinned = change.artifact.image_ref
    assert kube.image("dev") == kube.image("staging") == pinned

    # dev: applied by Baton, with its inventory; staging: applied by Flux.
    dev = kube.deployment("dev")
    assert dev["metadata"]["managedFields"][0]["manager"] == "baton"
    inventory = api.get("v1", "ConfigMap", "dev", inventory_name("sample-app"))["data"]
    dev_merge = change.rollouts[0].revision
    assert inventory["revision"] == dev_merge
    name = dev["metadata"]["name"]
    assert {"id": f"dev_{name}_apps_Deployment", "v": "v1"} in json.loads(inventory["entries"])
    assert kube.deployment("staging")["metadata"]["managedFields"][0]["manager"] == (
        "kustomize-controller"
    )

    # The next generation of dev's Deployment never becomes available.
    stuck = dev["metadata"]["generation"] + 1
    kube.controller.script("dev", name, stuck, updated=1, available=0, deadline_exceeded=True)
    second, second_commit = stack.release("e2e-k8s-second")
    change = stack.wait(second, lambda d: d.change.state in done, timeout=600).change

    assert change.state == "failed"
    assert change.reason.startswith(
        f'dev: failed: sync failed: ProgressDeadlineExceeded: deployment "{name}" exceeded its '
        "progress deadline"
    ), change.reason
    assert f"rolled back to {first_commit[:12]} (GitOps PR #" in change.reason
    assert [r.environment for r in change.rollouts] == ["dev"]

    # The revert was applied: dev runs the first change's image again, rolled out; staging
    # never saw the second change.
    assert kube.image("dev") == pinned
    rolled_back = kube.deployment("dev")
    assert rolled_back["metadata"]["generation"] == stuck + 1
    assert rolled_back["status"]["observedGeneration"] == stuck + 1
    assert kube.image("staging") == pinned
    staging_prs = [
        p.head_branch
        for p in stack.forge().list_pull_requests("gitops")
        if p.head_branch.startswith("baton/sample-app/staging/")
    ]
    assert not [b for b in staging_prs if second_commit[:12] in b]

    status = stack.run(
        lambda client: client.get_workflow_handle(
            rollout_id("sample-app", "dev", second_commit)
        ).query(EnvironmentRollout.status)
    )
    stages = {s.name: s.outcome for s in status.timeline if s.name != "note"}
    assert (stages["apply"], stages["sync"]) == ("succeeded", "failed")
    for stage in ("rollback: revert PR", "rollback: merge", "rollback: apply", "rollback: sync"):
        assert stages[stage] == "succeeded", status.timeline
