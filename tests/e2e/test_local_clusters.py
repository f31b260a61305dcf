"""An environment of two local clusters on the real stack: one fails to sync, both are rolled back.

dev spans clusters `a` and `b` of the local cluster runtime, each on a docker network of its own
with the app's port published at its own `sync.host_port_offset` (a: the port the values give,
b: another), each verified at its own URL. From the start, another process holds b's host port,
as a leftover server would: the app cannot start in b and b's sync fails, while a syncs
and verifies. Baton reverts the one GitOps commit that wrote both clusters (the app's first deploy
there: placeholders take its manifests' place), both clusters apply the revert, and the change
says which cluster failed, why, and that dev was rolled back.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import docker
import docker.errors
import pytest

from baton.gitops import placeholder_manifests
from baton.local.cluster import container_name, stack_id
from baton.temporal import rollout_id
from tests.conftest import git
from tests.e2e.stack import E2EStack, only_dev, running_stack
from tests.e2e.test_rollback import gitops_file
from tests.fixtures.ports import free_port
from workflows.rollout import EnvironmentRollout

pytestmark = pytest.mark.docker

CLUSTERS = ("a", "b")
VALUES = "environments/dev/sample-app/values.yaml"


def hold_a_port_above(port: int) -> socket.socket:
    """A listening socket on a free port above `port` (offsets are not negative), as a server
    someone left running: bound now, so that nothing else takes the port meanwhile."""
    for candidate in iter(free_port, None):
        if candidate <= port:
            continue
        leftover = socket.socket()
        try:
            leftover.bind(("127.0.0.1", candidate))
        except OSError:  # taken since free_port looked
            leftover.close()
            continue
        leftover.listen()
        return leftover
    raise AssertionError("unreachable: free_port never runs out")


def two_local_clusters(held: list[socket.socket]) -> Callable[[dict], None]:
    """dev alone, spanning local clusters a and b on host ports of their own, b's held by
    another process (appended to `held`); sample-app alone."""
    return lambda config: _two_local_clusters(config, held)


def _two_local_clusters(config: dict, held: list[socket.socket]) -> None:
    dev = only_dev(config)
    config["apps"] = [app for app in config["apps"] if app["name"] == "sample-app"]
    config["gitops"]["path"] = "rendered/{env}/{cluster}/{app}"
    url = urlsplit(dev["verify"]["url"])
    port = url.port
    assert port is not None
    held.append(hold_a_port_above(port))
    above = held[0].getsockname()[1]
    dev["clusters"] = [
        {
            "name": name,
            "sync": {**dev["sync"], "host_port_offset": published - port},
            "verify": {
                **dev["verify"],
                "url": url._replace(netloc=f"127.0.0.1:{published}").geturl(),
            },
        }
        for name, published in zip(CLUSTERS, (port, above), strict=True)
    ]
    dev.pop("cluster", None)


def listen_on_all_interfaces(stack: E2EStack, work: Path) -> None:
    """dev's values: the app listens on 0.0.0.0 in its container, where each cluster publishes
    its port (the example's 127.0.0.1 is for host networking)."""
    git(work, "clone", "-q", stack.forge().clone_url("gitops"), "gitops")
    values = work / "gitops" / VALUES
    values.write_text(values.read_text().replace("bindAddress: 127.0.0.1", "bindAddress: 0.0.0.0"))
    git(work / "gitops", "commit", "-q", "-am", "dev: listen where the clusters publish")
    git(work / "gitops", "push", "-q", "origin", "main")


def test_one_local_cluster_failing_to_sync_rolls_dev_back_in_both(
    tmp_path: Path, base_image: str, docker_client: docker.DockerClient
) -> None:
    held: list[socket.socket] = []  # a server someone left running on b's port
    try:
        with running_stack(tmp_path, base_image, two_local_clusters(held)) as stack:
            roll_back_both(stack, docker_client, tmp_path, held[0])
    finally:
        for leftover in held:
            leftover.close()


def roll_back_both(
    stack: E2EStack, docker_client: docker.DockerClient, tmp_path: Path, leftover: socket.socket
) -> None:
    _, b = stack.config.environment("dev").targets
    listen_on_all_interfaces(stack, tmp_path)
    held = urlsplit(str(b.verify.url)).port
    assert held == leftover.getsockname()[1]

    change, commit = stack.release("e2e-clusters")
    detail = stack.wait(change, lambda d: d.change.state in ("completed", "failed"), 600)
    leftover.close()

    # The change failed in b, says why and how to fix it, and that dev was rolled back.
    change_status = detail.change
    assert change_status.state == "failed", change_status.reason
    reason = change_status.reason
    assert reason.startswith("dev: failed: b: sync failed: ReconciliationFailed: "), reason
    assert f"port {held} (container port " in reason
    assert "change the sync.host_port_offset of cluster b" in reason
    rollback = change_status.rollouts[-1].rollback
    assert rollback.outcome == "rolled back" and rollback.removed, rollback
    assert "; rolled back: sample-app removed from dev (its first deploy there; GitOps PR #" in (
        reason
    )

    # a synced and passed its own verification before the rollback; both clusters applied the
    # revert, which put placeholders in both clusters' paths.
    status = stack.run(
        lambda client: client.get_workflow_handle(rollout_id("sample-app", "dev", commit)).query(
            EnvironmentRollout.status
        )
    )
    stages = {s.name: s.outcome for s in status.timeline if s.name != "note"}
    assert stages["a: sync"] == stages["a: verify"] == "succeeded", status.timeline
    assert stages["b: sync"] == "failed", status.timeline
    assert stages["rollback: a: sync"] == stages["rollback: b: sync"] == "succeeded"
    for name in CLUSTERS:
        manifests = gitops_file(stack, f"rendered/dev/{name}/sample-app/manifests.yaml")
        assert manifests == placeholder_manifests("sample-app", "dev", commit), name

    # Nothing of the change runs in either cluster.
    home = stack_id(stack.settings.home)
    for name in CLUSTERS:
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(container_name(home, f"dev.{name}", "sample-app"))
