"""The local cluster runtime hosting several named clusters of one environment: each a place of
its own (status, container, network, events) serving the same manifests on its own host ports."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import docker
import docker.errors
import pytest

from baton.cluster.base import SyncStatus
from baton.cluster.local import LocalClusterStatus
from baton.config import BatonConfig, parse_config
from baton.flux import event_cluster
from baton.local import cluster as runtime
from baton.local.cluster import LocalCluster, ReconcileFailed, Target, read_workload
from baton.settings import Settings
from tests.e2e.test_local_cluster import EventReceiver
from tests.fixtures.cli import run_baton
from tests.fixtures.manifests import DEPLOYMENT
from tests.fixtures.ports import free_port
from tests.unit.test_cluster_config import APP, LOCAL

CONFIG = (
    APP
    + "gitops: {path: 'rendered/{env}/{cluster}/{app}'}\n"
    + LOCAL.replace("environments:\n", "environments:\n  - {name: dev, namespace: dev}\n")
)
HTTP = """image: web
          ports: [{name: http, containerPort: 18083}]
          readinessProbe: {httpGet: {port: http}}"""
DEPLOYMENT = DEPLOYMENT.replace("image: sample-app:latest", HTTP)


@pytest.fixture
def config() -> BatonConfig:
    return parse_config(CONFIG)


def runtime_for(config: BatonConfig, home: Path, api_port: int | None = None) -> LocalCluster:
    settings = Settings(home=home, api_port=api_port or free_port())
    return LocalCluster(config, settings, home / "gitops.git", client=object())


def targets(cluster: LocalCluster) -> dict[str, Target]:
    return {t.key: t for t in cluster.targets}


def test_each_named_cluster_is_a_place_with_its_own_path_container_and_network(
    config: BatonConfig, tmp_path: Path
) -> None:
    cluster = runtime_for(config, tmp_path)
    stack = runtime.stack_id(tmp_path)
    seen = {key: (t.path, t.container, t.network, t.cluster) for key, t in targets(cluster).items()}
    assert seen == {
        # An environment of one cluster keeps its place, container and host network.
        "dev/web": ("rendered/dev/local/web", f"baton-{stack}-dev-web", "host", None),
        "prod.eu/web": (
            "rendered/prod/eu/web",
            f"baton-{stack}-prod.eu-web",
            f"baton-{stack}-prod.eu",
            "eu",
        ),
        "prod.us/web": (
            "rendered/prod/us/web",
            f"baton-{stack}-prod.us-web",
            f"baton-{stack}-prod.us",
            "us",
        ),
    }


def test_each_cluster_probes_readiness_on_its_own_host_port(
    config: BatonConfig, tmp_path: Path
) -> None:
    workload = read_workload(DEPLOYMENT, "rendered/prod/web", "prod")
    assert workload is not None
    eu, us = (targets(runtime_for(config, tmp_path))[f"prod.{c}/web"] for c in ("eu", "us"))
    assert workload.published(eu.offset).readiness_url == "http://127.0.0.1:18183/"
    assert workload.published(us.offset).readiness_url == "http://127.0.0.1:18283/"
    # The cluster's verify.url reaches the same port the runtime publishes.
    assert str(eu.environment.verify.url) == "http://127.0.0.1:18183/version"
    # On the host network the probe is the container's own.
    assert workload.published(None).readiness_url == "http://127.0.0.1:18083/"


def test_the_adapter_reads_each_clusters_status_where_the_runtime_writes_it(
    config: BatonConfig, tmp_path: Path
) -> None:
    cluster = runtime_for(config, tmp_path)
    now = datetime.now(UTC)
    written = {
        "eu": SyncStatus(last_applied_revision="a" * 40, ready=True, observed_at=now),
        "us": SyncStatus(last_attempted_revision="a" * 40, ready=False, observed_at=now),
    }
    for name, status in written.items():
        target = targets(cluster)[f"prod.{name}/web"]
        cluster.store.write(target.place, target.app, status)

    adapter = LocalClusterStatus(tmp_path, config)
    eu, us = config.environment("prod").targets
    assert adapter.sync_status(eu, "web") == written["eu"]
    assert adapter.sync_status(us, "web") == written["us"]
    assert adapter.sync_status(config.environment("dev"), "web") is None

    # A reconcile request reaches the one cluster it names.
    adapter.request_reconcile(us, "web")
    assert [cluster._take_request(t) for t in cluster.targets] == [False, False, True]


def test_each_clusters_events_name_it_as_a_flux_alert_would(
    config: BatonConfig, tmp_path: Path
) -> None:
    receiver = EventReceiver()
    try:
        cluster = runtime_for(config, tmp_path, api_port=receiver.port)
        status = SyncStatus(ready=False, ready_message="no", observed_at=datetime.now(UTC))
        for target in cluster.targets:
            cluster._send_event(target, "b" * 40, "HealthCheckFailed", status)
    finally:
        receiver.server.shutdown()
    names = [
        (event["involvedObject"]["name"], event_cluster(event)) for _, event in receiver.events()
    ]
    assert names == [("web-dev", None), ("web-prod", "eu"), ("web-prod", "us")]


def test_a_cluster_whose_host_port_is_taken_fails_naming_the_port_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "PORT_RELEASE_S", 0.2)
    leftover = socket.socket()  # another process's server on us's host port
    leftover.bind(("127.0.0.1", 0))
    leftover.listen()
    held_port = leftover.getsockname()[1]
    config = parse_config(
        CONFIG.replace("host_port_offset: 200", f"host_port_offset: {held_port - 18083}")
    )
    cluster = runtime_for(config, tmp_path)
    workload = read_workload(DEPLOYMENT, "rendered/prod/web", "prod")
    assert workload is not None
    with pytest.raises(ReconcileFailed) as failed:
        cluster._wait_ports_free(workload, targets(cluster)["prod.us/web"])
    assert failed.value.reason == "ReconciliationFailed"
    assert str(failed.value) == (
        f"Deployment/prod/web: port {held_port} (container port 18083 + {held_port - 18083}) on "
        "127.0.0.1 is in use by a process that is not part of the local cluster: stop it or "
        "change the sync.host_port_offset of cluster us"
    )
    # The other cluster's port (18183) is its own: nothing stops it.
    cluster._wait_ports_free(workload, targets(cluster)["prod.eu/web"])
    leftover.close()


def test_a_changed_offset_is_a_new_generation_of_the_clusters_kustomization(
    config: BatonConfig, tmp_path: Path
) -> None:
    first = runtime_for(config, tmp_path).generations
    moved = parse_config(CONFIG.replace("host_port_offset: 200", "host_port_offset: 300"))
    second = runtime_for(moved, tmp_path).generations
    assert second == first | {"prod.us/web": first["prod.us/web"] + 1}
    state = json.loads((tmp_path / "cluster" / "state.json").read_text())
    assert set(state["kustomizations"]) == {"dev/web", "prod.eu/web", "prod.us/web"}


def test_dev_down_removes_the_app_containers_its_local_cluster_started_and_no_others(
    tmp_path: Path, docker_client: docker.DockerClient, base_image: str
) -> None:
    """The runtime's containers (named `baton-<stack>-<place>-<app>`, labelled `baton.app`) of
    this stack go, running or stopped, with the place's network; another stack's containers and
    one Baton did not start (no label, though named like ours) stay."""
    home, other_home = tmp_path / "home", tmp_path / "other"
    stack, other = runtime.stack_id(home), runtime.stack_id(other_home)
    network = runtime.network_name(stack, "dev.west")
    docker_client.networks.create(network, labels={"baton.stack": stack, "baton.place": "dev.west"})

    def started(name: str, labels: dict[str, str], **options: object) -> str:
        docker_client.containers.run(
            base_image,
            ["sleep", "300"],
            name=name,
            labels=labels,
            detach=True,
            init=True,
            **options,
        )
        return name

    ours = [
        started(
            runtime.container_name(stack, "dev", "web"), {"baton.app": "web", "baton.env": "dev"}
        ),
        started(
            runtime.container_name(stack, "dev.west", "web"),
            {"baton.app": "web", "baton.env": "dev", "baton.cluster": "west"},
            network=network,
        ),
    ]
    docker_client.containers.get(ours[1]).stop(timeout=1)  # a stopped one is removed too
    theirs = [
        started(
            runtime.container_name(other, "dev", "web"), {"baton.app": "web", "baton.env": "dev"}
        ),
        started(f"baton-{stack}-notes", {}),
    ]
    try:
        done = run_baton("dev", "down", env={**os.environ, "BATON_HOME": str(home)})

        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "stopped: nothing was running",
            f"removed app containers: {', '.join(sorted(ours))}",
        ]
        names = {c.name for c in docker_client.containers.list(all=True)}
        assert not names & set(ours) and set(theirs) <= names
        assert docker_client.networks.list(names=[network]) == []
    finally:
        for name in [*ours, *theirs]:
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.containers.get(name).remove(force=True)
        for leftover in docker_client.networks.list(names=[network]):
            leftover.remove()


def test_a_test_teardown_removes_them_at_once_and_no_others(
    tmp_path: Path, docker_client: docker.DockerClient, base_image: str
) -> None:
    """Not `graceful` (the e2e stacks' teardown): a running app container is removed without
    waiting out its stop grace period; another stack's stays."""
    home, other_home = tmp_path / "home", tmp_path / "other"
    ours = runtime.container_name(runtime.stack_id(home), "dev", "web")
    theirs = runtime.container_name(runtime.stack_id(other_home), "dev", "web")
    for name in (ours, theirs):
        # sleep as PID 1 ignores SIGTERM: a graceful stop would wait STOP_GRACE_S.
        docker_client.containers.run(
            base_image, ["sleep", "300"], name=name, labels={"baton.app": "web"}, detach=True
        )
    try:
        assert runtime.remove_app_containers(home, docker_client, graceful=False) == [ours]
        names = {c.name for c in docker_client.containers.list(all=True)}
        assert ours not in names and theirs in names
    finally:
        for name in (ours, theirs):
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.containers.get(name).remove(force=True)


def test_dev_down_without_a_docker_engine_says_no_app_container_was_removed(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "BATON_HOME": str(tmp_path), "DOCKER_HOST": f"unix://{tmp_path}/none"}

    done = run_baton("dev", "down", env=env)

    assert done.returncode == 0, done.stderr
    stopped, removed = done.stdout.splitlines()
    assert stopped == "stopped: nothing was running"
    assert removed.startswith("app containers: none removed: cannot reach the docker engine")
