"""An environment of two Flux clusters where one fails to sync is rolled back in both.

EnvironmentRollout on a real Temporal server with the real GitOps and sync activities: the GitOps
repository on the local forge, and two fake Kubernetes API servers each running Flux (one per
cluster, each syncing its own `gitops.path`). Only the render is a stand-in (it needs no
published chart here): it reports what the real one would, the same manifests for each cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import activities.context as activity_context
from activities import ACTIVITIES, deploy
from activities.context import Context
from baton.config import parse_config
from baton.models import Rendered, RolloutInput, RolloutStatus
from baton.settings import Settings
from baton.temporal import TaskQueues
from tests.conftest import eventually, until
from tests.fakes.kube_api import Failure, FakeFlux, FakeKubeAPI
from tests.fakes.records import fake_artifact
from tests.fixtures.gitops import rendered_for
from tests.fixtures.ports import closed_port
from workflows.rollout import EnvironmentRollout

RUNNING = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {version: '1'}\n"
NEW = RUNNING.replace("'1'", "'2'")
PATHS = {name: f"rendered/prod/{name}/sample-app" for name in ("eu", "us")}
CONFIG = """
apps:
  - {{name: sample-app, repo: sample-app, chart: chart, image: sample-app}}
gitops: {{path: 'rendered/{{env}}/{{cluster}}/{{app}}'}}
environments:
  - name: prod
    namespace: default
    clusters:
      - {{name: eu, sync: {{kind: flux, kubeconfig: {eu}, context: fake, timeout_s: 60}}}}
      - {{name: us, sync: {{kind: flux, kubeconfig: {us}, context: fake, timeout_s: 60}}}}
"""


@dataclass
class Clusters:
    context: Context
    flux: dict[str, FakeFlux]

    def applied(self, name: str) -> str | None:
        """What the cluster's Kustomization last applied (Flux's `<branch>@sha1:<sha>`)."""
        ks = self.flux[name].api.get(
            "kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", "sample-app-prod"
        )
        return ks.get("status", {}).get("lastAppliedRevision")


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[Clusters]:
    seed = tmp_path / "seed"
    for path in PATHS.values():
        (seed / path).mkdir(parents=True)
        (seed / path / "manifests.yaml").write_text(RUNNING)
    saved = activity_context._current
    with (
        FakeKubeAPI() as eu_api,
        FakeFlux(eu_api) as eu,
        FakeKubeAPI() as us_api,
        FakeFlux(us_api) as us,
    ):
        kubeconfigs = {
            name: api.write_kubeconfig(tmp_path / f"kubeconfig-{name}")
            for name, api in (("eu", eu_api), ("us", us_api))
        }
        settings = Settings(home=tmp_path / "home", api_port=closed_port())
        context = Context(settings, parse_config(CONFIG.format(**kubeconfigs)))
        context.forge.create_repo("gitops", from_dir=seed)
        world = Clusters(context, {"eu": eu, "us": us})
        head = f"main@sha1:{context.gitops.head()}"
        for name, flux in world.flux.items():
            flux.add_sync(
                context.forge.repo_path("gitops"),
                "sample-app-prod",
                interval="1s",
                path=f"./{PATHS[name]}",
            )
            eventually(lambda n=name: world.applied(n), lambda seen: seen == head, what=name)
        activity_context.install(context)
        try:
            yield world
        finally:
            activity_context._current = saved


@activity.defn(name="render_environment")
def render_environment(input: RolloutInput) -> Rendered:
    """What the real render reports for prod: the new manifests, for each cluster's path."""
    return rendered_for(activity_context.current(), input.app, input.environment, NEW)


@pytest.fixture
async def workers(temporal_env: WorkflowEnvironment, clusters: Clusters) -> AsyncIterator[Client]:
    deploying = Worker(
        temporal_env.client,
        task_queue=TaskQueues.DEPLOY,
        # The real deploy activities, but the render.
        activities=[render_environment]
        + [a for a in ACTIVITIES[TaskQueues.DEPLOY] if a is not deploy.render_environment],
        activity_executor=ThreadPoolExecutor(4),
    )
    flows = Worker(
        temporal_env.client, task_queue=TaskQueues.WORKFLOWS, workflows=[EnvironmentRollout]
    )
    async with deploying, flows:
        yield temporal_env.client


async def test_one_cluster_failing_to_sync_rolls_the_environment_back_in_both(
    workers: Client, clusters: Clusters
) -> None:
    # us fails every new revision until the rollout's own merge is known.
    clusters.flux["us"].fail(Failure(message="timeout waiting for: [Deployment/default/web]"))
    context = clusters.context
    input = RolloutInput(
        change_id="change/sample-app/1",
        app=context.config.app("sample-app"),
        environment=context.config.environment("prod"),
        artifact=fake_artifact("sample-app", "f" * 40, registry="127.0.0.1:5000"),
        author="alice",
    )
    handle = await workers.start_workflow(
        EnvironmentRollout.run,
        input,
        id=f"rollout/test/{uuid.uuid4()}",
        task_queue=TaskQueues.WORKFLOWS,
    )
    failed = await until(
        lambda: handle.query(EnvironmentRollout.status),
        lambda status: any(s.name == "us: sync" and s.outcome == "failed" for s in status.timeline),
        "us to fail its sync",
    )
    merge = failed.revision
    assert merge is not None
    # From now on only the rollout's merge fails in us: its revert applies there.
    clusters.flux["us"].failures[:] = [Failure(revision=merge)]

    result = await handle.result()

    assert result.outcome == "failed"
    assert result.reason.startswith("us: sync failed: HealthCheckFailed: ")
    assert result.rollback is not None and result.rollback.outcome == "rolled back"
    revert = result.rollback.revert_revision
    assert revert is not None
    # One revert of the one commit that wrote both clusters; each cluster runs it.
    assert context.gitops.read(f"{PATHS['eu']}/manifests.yaml", revert) == RUNNING
    assert context.gitops.read(f"{PATHS['us']}/manifests.yaml", revert) == RUNNING
    assert clusters.applied("eu") == clusters.applied("us") == f"main@sha1:{revert}"
    final: RolloutStatus = await handle.query(EnvironmentRollout.status)
    outcomes = {s.name: s.outcome for s in final.timeline if s.name != "note"}
    assert outcomes["eu: sync"] == "succeeded" and outcomes["us: sync"] == "failed"
    assert outcomes["rollback: eu: sync"] == outcomes["rollback: us: sync"] == "succeeded"
