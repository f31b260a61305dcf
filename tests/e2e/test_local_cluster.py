"""The local cluster runtime against real git, a real registry and the real docker engine.

Each test owns an environment with a unique name (so its container, `baton-<stack>-<env>-sample-app`,
never meets another test's or a running dev stack's) and a free port for the sample app.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from baton.cluster.base import SyncStatus
from baton.cluster.local import LocalClusterStatus
from baton.config import BatonConfig, parse_config
from baton.errors import ToolNotFound
from baton.flux import event_revision, verify_generic_hmac
from baton.images import build_image, push_image
from baton.local.cluster import LocalCluster, container_name, stack_id
from baton.models import PinnedImage
from baton.registry import Registry
from baton.render import HelmRenderer
from baton.settings import Settings
from baton.tools import PROJECT_ROOT, find_tool
from tests.conftest import PATIENCE_S, eventually, git
from tests.fixtures import unavailable
from tests.fixtures.docker import LocalRegistry
from tests.fixtures.gitops import local_gitops_repository
from tests.fixtures.ports import free_port

pytestmark = pytest.mark.docker

SECRET = "local-cluster-test-secret"
PASSWORD_ENV = "BATON_TEST_CLUSTER_REGISTRY_PASSWORD"  # the push password: never set here
PULL_PASSWORD_ENV = "BATON_TEST_CLUSTER_REGISTRY_PULL_PASSWORD"  # what the cluster holds
SAMPLE_APP = PROJECT_ROOT / "examples" / "sample-app"
DEV_VALUES = (
    PROJECT_ROOT / "examples" / "gitops" / "environments" / "dev" / "sample-app" / "values.yaml"
)
APP_COMMIT = "0123456789abcdef0123456789abcdef01234567"
# The environment's health timeout: how long the app's container may take to answer its
# readiness probe on a loaded machine. A container that exits fails at once, whatever it is.
HEALTH_TIMEOUT_S = 120
# A sync: pulling the image, starting the container and its health timeout.
SYNC_TIMEOUT_S = HEALTH_TIMEOUT_S + 120


class EventReceiver:
    """Baton's `/webhooks/flux` stand-in: records each POST's headers and raw body."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({**self.headers, "path": self.path}, body))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[tuple[dict[str, str], dict]]:
        return [(headers, json.loads(body)) for headers, body in self.received]

    def event_for(self, sha: str, reason: str) -> tuple[dict[str, str], bytes] | None:
        for headers, body in self.received:
            event = json.loads(body)
            if event_revision(event) == sha and event["reason"] == reason:
                return headers, body
        return None


@pytest.fixture(scope="module")
def sample_image(docker_client: docker.DockerClient, base_image: str, registry: LocalRegistry):
    """The sample app built FROM the local base image and pushed to the registry, by digest."""
    with Registry(registry.url, registry.username, registry.password) as reg:
        built = build_image(
            SAMPLE_APP,
            ["baton-test/local-cluster-sample-app:e2e"],
            buildargs={"BASE_IMAGE": base_image, "APP_COMMIT": APP_COMMIT},
            client=docker_client,
        )
        digest = push_image(built.image_id, reg, "sample-app", "e2e", client=docker_client)
    return PinnedImage(repository=f"{registry.host}/sample-app", digest=digest)


@dataclass
class World:
    """One environment's GitOps repository, config and runtime home, with helpers to act on them."""

    env: str
    port: int
    home: Path
    work: Path  # a clone the test commits in and pushes from
    config_file: Path
    config: BatonConfig
    settings: Settings
    receiver: EventReceiver
    image: PinnedImage
    client: docker.DockerClient

    @property
    def bare(self) -> Path:
        return self.settings.forge_dir / "repos" / "gitops.git"

    @property
    def container_name(self) -> str:
        return container_name(stack_id(self.home), self.env, "sample-app")

    def render(self, **overrides: str) -> str:
        return HelmRenderer(SAMPLE_APP / "chart").render(
            "sample-app",
            self.env,
            values_files=[DEV_VALUES],
            image=self.image,
            overrides={"service.port": str(self.port), **overrides},
        )

    def commit(self, files: dict[str, str], message: str) -> str:
        for rel, text in files.items():
            (self.work / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.work / rel).write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "push", "-q", "origin", "main")
        return git(self.work, "rev-parse", "HEAD")

    def commit_manifests(self, message: str, **overrides: str) -> str:
        path = f"rendered/{self.env}/sample-app/manifests.yaml"
        return self.commit({path: self.render(**overrides)}, message)

    def revert(self, sha: str) -> str:
        git(self.work, "revert", "--no-edit", sha)
        git(self.work, "push", "-q", "origin", "main")
        return git(self.work, "rev-parse", "HEAD")

    def status(self) -> SyncStatus | None:
        return LocalClusterStatus(self.home).sync_status(
            self.config.environment(self.env), "sample-app"
        )

    def wait_attempted(self, sha: str) -> SyncStatus:
        def done() -> SyncStatus | None:
            status = self.status()
            if status and status.last_attempted_revision == sha and status.ready is not None:
                return status
            return None

        return eventually(done, timeout=SYNC_TIMEOUT_S, what=f"{self.env} to attempt {sha[:12]}")

    def container(self):
        return self.client.containers.get(self.container_name)

    def version(self) -> dict:
        return httpx.get(f"http://127.0.0.1:{self.port}/version", timeout=2).json()

    def start(self, **kwargs: object) -> Callable[[], None]:
        """Run a LocalCluster in a thread; returns the function that stops it."""
        cluster = LocalCluster(
            self.config, self.settings, self.bare, client=self.client, poll_interval_s=0.2, **kwargs
        )
        thread = threading.Thread(target=cluster.run, daemon=True)
        thread.start()

        def stop() -> None:
            cluster.stop.set()
            thread.join(timeout=PATIENCE_S)
            assert not thread.is_alive(), f"the runtime did not stop within {PATIENCE_S:g}s"

        return stop


@pytest.fixture
def world(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    docker_client: docker.DockerClient,
    registry: LocalRegistry,
    sample_image: PinnedImage,
) -> Iterator[World]:
    try:
        find_tool("helm")
    except ToolNotFound as exc:
        unavailable(str(exc))
    env = f"e2e-{uuid.uuid4().hex[:8]}"
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.setenv(PULL_PASSWORD_ENV, registry.pull_password)
    monkeypatch.setenv("BATON_WEBHOOK_SECRET", SECRET)
    receiver = EventReceiver()
    home = tmp_path / "home"
    config_file = tmp_path / "baton.yaml"
    config_file.write_text(
        f"""
registry:
  url: {registry.host}
  credentials: {{username: {registry.username}, token_env: {PASSWORD_ENV}}}
  pull_credentials: {{username: {registry.pull_username}, token_env: {PULL_PASSWORD_ENV}}}
gitops: {{repo: gitops, base_branch: main, path: "rendered/{{env}}/{{app}}"}}
apps:
  - {{name: sample-app, repo: sample-app, chart: chart, image: sample-app}}
environments:
  - name: {env}
    namespace: {env}
    sync: {{kind: local, timeout_s: {HEALTH_TIMEOUT_S}}}
  - name: elsewhere
    namespace: elsewhere
    sync: {{kind: flux, kustomization: sample-app-elsewhere}}
"""
    )
    settings = Settings(home=home, api_port=receiver.port)
    work = local_gitops_repository(
        tmp_path, settings, "GitOps repository for the local cluster e2e tests"
    )
    world = World(
        env,
        free_port(),
        home,
        work,
        config_file,
        parse_config(config_file.read_text()),
        settings,
        receiver,
        sample_image,
        docker_client,
    )
    yield world
    receiver.server.shutdown()
    try:
        world.container().remove(force=True)
    except docker.errors.NotFound:
        pass


def test_commit_is_applied_reported_ready_and_announced_by_a_signed_event(world: World) -> None:
    # Not on the engine yet: the runtime must pull it from the registry with the pull
    # credentials, the only ones it holds (as a cluster's imagePullSecrets).
    world.client.images.remove(world.image.ref, force=True)
    stop = world.start()
    try:
        started = time.monotonic()
        sha = world.commit_manifests("deploy sample-app")
        status = world.wait_attempted(sha)
        elapsed = time.monotonic() - started
    finally:
        stop()

    assert status.applied(sha), status
    assert status.ready_reason == "ReconciliationSucceeded"
    assert status.observed_generation == status.generation
    assert world.version() == {
        "app": "sample-app",
        "commit": APP_COMMIT,
        "version": "1.0.0",
        "environment": "dev",
    }
    container = world.container()
    assert world.image.ref in container.image.attrs["RepoDigests"]  # pulled again
    assert container.labels["baton.revision"] == sha
    assert container.labels["baton.env"] == world.env
    assert container.attrs["Config"]["User"] == "10001"
    assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
    delivered = world.receiver.event_for(sha, "ReconciliationSucceeded")
    assert delivered is not None, world.receiver.events()
    headers, body = delivered
    assert headers["path"] == "/webhooks/flux"
    assert headers["Gotk-Component"] == "kustomize-controller"
    assert verify_generic_hmac(SECRET, body, headers["X-Signature"])
    event = json.loads(body)
    assert event["metadata"]["revision"] == f"main@sha1:{sha}"
    assert event["involvedObject"]["name"] == f"sample-app-{world.env}"
    assert event["severity"] == "info"
    # Only `sync.kind: local` environments are the runtime's to reconcile.
    assert not (world.home / "cluster" / "status" / "elsewhere").exists()
    print(f"\ncommit to Ready (first deploy, image pull included): {elapsed:.2f}s")


def test_commit_that_changes_nothing_for_the_environment_advances_it_in_place(
    world: World,
) -> None:
    stop = world.start()
    try:
        first = world.commit_manifests("deploy sample-app")
        world.wait_attempted(first)
        container_id = world.container().id
        started = time.monotonic()
        second = world.commit({"README.md": "unrelated change\n"}, "docs")
        status = world.wait_attempted(second)
        elapsed = time.monotonic() - started
    finally:
        stop()

    assert status.applied(second)
    assert world.container().id == container_id
    assert world.container().labels["baton.revision"] == first
    assert world.receiver.event_for(second, "ReconciliationSucceeded") is not None
    print(f"\ncommit to Ready (no change for the environment): {elapsed:.2f}s")


def test_container_that_never_gets_ready_fails_and_a_revert_recovers(world: World) -> None:
    stop = world.start()
    try:
        good = world.commit_manifests("deploy sample-app")
        world.wait_attempted(good)
        # An address this host does not have: the app cannot bind and exits.
        bad = world.commit_manifests("bind elsewhere", bindAddress="192.0.2.1")
        failed = world.wait_attempted(bad)
        reverted = world.revert(bad)
        recovered = world.wait_attempted(reverted)
    finally:
        stop()

    assert failed.failed(bad) and not failed.applied(bad)
    assert failed.ready_reason == "HealthCheckFailed"
    assert failed.last_applied_revision == good
    assert "exited with code" in failed.ready_message
    assert "Cannot assign requested address" in failed.ready_message  # the app's own log line
    _, body = world.receiver.event_for(bad, "HealthCheckFailed")  # type: ignore[misc]
    assert json.loads(body)["severity"] == "error"
    assert recovered.applied(reverted)
    assert world.version()["environment"] == "dev"


def test_injected_failure_keeps_the_running_container_and_allows_rollback(world: World) -> None:
    stop = world.start()
    try:
        good = world.commit_manifests("deploy sample-app")
        world.wait_attempted(good)
    finally:
        stop()
    container_id = world.container().id
    # Baton's API is down from here on: undeliverable events must not stop the runtime.
    world.receiver.server.shutdown()
    world.receiver.server.server_close()

    stop = world.start(fail_envs={world.env})
    try:
        bad = world.commit_manifests("new greeting", greeting="hello")
        failed = world.wait_attempted(bad)
        reverted = world.revert(bad)
        recovered = world.wait_attempted(reverted)
    finally:
        stop()

    assert failed.ready_reason == "HealthCheckFailed"
    assert "BATON_LOCAL_CLUSTER_FAIL" in failed.ready_message
    assert failed.last_applied_revision == good
    assert recovered.applied(reverted)
    assert world.container().id == container_id


def test_module_runs_until_sigterm_and_a_restart_reapplies_nothing(world: World) -> None:
    sha = world.commit_manifests("deploy sample-app")
    env = {
        **os.environ,
        "BATON_HOME": str(world.home),
        "BATON_CONFIG": str(world.config_file),
        "BATON_API_PORT": str(world.receiver.port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "baton.local.cluster"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        world.wait_attempted(sha)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=PATIENCE_S)
    assert process.returncode == 0, output
    assert world.status().applied(sha)  # type: ignore[union-attr]
    assert os.environ[PULL_PASSWORD_ENV] not in output
    assert "applied main@sha1:" in output
    container = world.container()
    assert container.status == "running", "SIGTERM must leave the app running"
    before = world.status()

    stop = world.start()
    try:
        eventually(
            lambda: world.status().observed_at > before.observed_at and world.status().ready,  # type: ignore[union-attr]
            timeout=SYNC_TIMEOUT_S,
            what="the restarted runtime to observe the app again",
        )
    finally:
        stop()
    assert world.status().applied(sha)  # type: ignore[union-attr]
    assert world.container().id == container.id


def test_two_clusters_of_one_environment_serve_the_same_manifests_on_their_own_ports(
    world: World,
) -> None:
    """Clusters a and b of one environment, each publishing the app's port at its own offset
    (a: the port itself, b: another), on docker networks of their own."""
    ports = {"a": world.port, "b": next(p for p in iter(free_port, None) if p > world.port)}
    clusters = "".join(
        f"      - {{name: {name}, sync: {{kind: local, timeout_s: {HEALTH_TIMEOUT_S}, "
        f"host_port_offset: {port - world.port}}}}}\n"
        for name, port in ports.items()
    )
    text = world.config_file.read_text().replace("{env}/{app}", "{env}/{cluster}/{app}")
    text = text.replace(
        f"    sync: {{kind: local, timeout_s: {HEALTH_TIMEOUT_S}}}\n", f"    clusters:\n{clusters}"
    )
    config = parse_config(text)
    spanning = replace(world, config=config)
    # The app listens where its cluster publishes the port: on 0.0.0.0 in its container.
    manifests = world.render(bindAddress="0.0.0.0")
    sha = world.commit(
        {f"rendered/{world.env}/{name}/sample-app/manifests.yaml": manifests for name in ports},
        "deploy sample-app to a and b",
    )
    statuses = LocalClusterStatus(world.home, config)
    targets = dict(zip(ports, config.environment(world.env).targets, strict=True))
    home = stack_id(world.home)
    stop = spanning.start()
    try:
        for name, target in targets.items():
            status = eventually(
                lambda t=target: statuses.sync_status(t, "sample-app"),
                lambda s: (
                    s is not None and s.last_attempted_revision == sha and s.ready is not None
                ),
                timeout=SYNC_TIMEOUT_S,
                what=f"cluster {name} to attempt {sha[:12]}",
            )
            assert status.applied(sha), status
        served = {
            name: httpx.get(f"http://127.0.0.1:{port}/version", timeout=2).json()["commit"]
            for name, port in ports.items()
        }
        found = {
            name: world.client.containers.get(
                container_name(home, f"{world.env}.{name}", "sample-app")
            )
            for name in ports
        }
    finally:
        stop()
        for container in world.client.containers.list(all=True, filters={"label": "baton.app"}):
            if container.name.startswith(f"baton-{home}-"):
                container.remove(force=True)
        for network in world.client.networks.list(filters={"label": f"baton.stack={home}"}):
            network.remove()

    # Each cluster's copy of the same release answers on its own host port.
    assert served == {"a": APP_COMMIT, "b": APP_COMMIT}
    for name, container in found.items():
        assert container.attrs["HostConfig"]["PortBindings"] == {
            f"{world.port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(ports[name])}]
        }
        assert container.labels["baton.cluster"] == name
    # Each cluster's event names it, as a Flux Alert with eventMetadata does.
    named = {
        event["metadata"].get("cluster")
        for _, event in world.receiver.events()
        if event["reason"] == "ReconciliationSucceeded" and event_revision(event) == sha
    }
    assert named == {"a", "b"}
