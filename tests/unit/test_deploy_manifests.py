"""deploy/kubernetes: Baton's own manifests build with kustomize, validate offline, and fit Baton."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from activities import ACTIVITIES
from baton.config import load_config
from baton.render import validate_manifests
from baton.tools import PROJECT_ROOT, find_tool

DEPLOY = PROJECT_ROOT / "deploy" / "kubernetes"


@pytest.fixture(scope="module")
def built() -> list[dict]:
    kubectl = find_tool("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_manifests_build_and_validate(built: list[dict]) -> None:
    assert validate_manifests(yaml.safe_dump_all(built)) == []
    namespaced = [
        o for o in built if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding")
    ]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"baton"}


def test_one_worker_per_task_queue_and_the_config_is_valid(built: list[dict]) -> None:
    workers = [o for o in built if o["kind"] == "Deployment" and "worker" in o["metadata"]["name"]]
    queues = {o["spec"]["template"]["spec"]["containers"][0]["command"][-1] for o in workers}
    assert queues == set(ACTIVITIES)
    config_map = next(o for o in built if o["metadata"]["name"].startswith("baton-config"))
    assert config_map["data"]["baton.yaml"] == (DEPLOY / "baton.yaml").read_text()
    load_config(Path(DEPLOY / "baton.yaml"))  # raises ConfigError naming the field otherwise


def test_no_container_runs_privileged_or_as_root(built: list[dict]) -> None:
    for deployment in (o for o in built if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
