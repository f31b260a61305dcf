"""deploy/kubernetes: Baton's own manifests build with kustomize, validate offline, and fit Baton:
the API a StatefulSet whose start journal has a claim per replica, mounting the token file from
an optional Secret."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from activities import ACTIVITIES
from baton.config import load_config
from baton.render import validate_manifests
from baton.tools import PROJECT_ROOT, find_tool
from tests.unit.test_helm_chart import JOURNAL, token_file, workloads

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
    for deployment in workloads(built):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_only_the_deploy_worker_holds_a_service_account_token_and_read_only_roots_have_tmp(
    built: list[dict],
) -> None:
    """Only the deploy queue's worker talks to Kubernetes (Flux's reconcile, the apply sync),
    with the `baton` account the RBAC binds; every other pod mounts no token. A container whose
    root filesystem is read-only gets a writable /tmp (credential files, tools' temp files)."""
    for workload in workloads(built):
        name, pod = workload["metadata"]["name"], workload["spec"]["template"]["spec"]
        if name == "baton-worker-deploy":
            assert pod["serviceAccountName"] == "baton"
        else:
            assert pod.get("automountServiceAccountToken") is False, name
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            if container["securityContext"].get("readOnlyRootFilesystem"):
                (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
                assert "emptyDir" in volumes[tmp["name"]], name


def test_the_api_is_a_statefulset_whose_journal_has_a_claim_per_replica(built: list[dict]) -> None:
    (api,) = [o for o in built if o["kind"] == "StatefulSet"]
    spec, pod = api["spec"], api["spec"]["template"]["spec"]
    assert api["metadata"]["name"] == "baton-api"
    assert spec["podManagementPolicy"] == "Parallel"
    (governing,) = [o for o in built if o["metadata"]["name"] == spec["serviceName"]]
    assert (governing["kind"], governing["spec"]["clusterIP"]) == ("Service", "None")
    (claim,) = spec["volumeClaimTemplates"]
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[JOURNAL] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    drain = next(e["value"] for e in container["env"] if e["name"] == "BATON_API_DRAIN_S")
    (pause,) = container["lifecycle"]["preStop"]["exec"]["command"][1:]
    assert 0 < float(drain) + float(pause) < pod["terminationGracePeriodSeconds"]
    assert not [
        o for o in built if o["kind"] == "Deployment" and o["metadata"]["name"] == "baton-api"
    ]


def test_the_api_mounts_the_token_file_from_an_optional_secret(built: list[dict]) -> None:
    (api,) = [o for o in built if o["kind"] == "StatefulSet"]
    found = token_file(api["spec"]["template"]["spec"])
    assert found is not None
    path, mount, volume = found
    assert mount["readOnly"] is True and "subPath" not in mount
    assert volume["secret"] == {
        "secretName": "baton-api-tokens",
        "items": [{"key": "tokens", "path": path.rpartition("/")[2]}],
        "defaultMode": 0o440,
        "optional": True,  # the API starts without it, and reads the file once it is there
    }
