"""deploy/helm/baton: Baton's Helm chart lints (strict), renders, and its output validates offline
against the Kubernetes schemas (strict: no unknown fields); one worker Deployment per task queue,
each with its own replicas and resources, probes on every container, secrets only by reference
(the API's Secret and the workers'), RBAC for Flux and apply, a ServiceMonitor behind a value."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from activities import ACTIVITIES
from baton.config import load_config
from baton.render import validate_manifests
from baton.temporal import SearchAttributes
from baton.tools import PROJECT_ROOT, find_tool

CHART = PROJECT_ROOT / "deploy" / "helm" / "baton"
CONFIG = PROJECT_ROOT / "deploy" / "kubernetes" / "baton.yaml"
SECRETS = {"api": "baton-api", "worker": "baton-workers"}
REQUIRED = [
    "--set",
    f"secrets.api.existingSecret={SECRETS['api']}",
    "--set",
    f"secrets.workers.existingSecret={SECRETS['worker']}",
    "--set-file",
    f"config={CONFIG}",
]
# Everything switched on: the ServiceMonitor, apply RBAC in two namespaces, a home claim.
ALL_ON = [
    *REQUIRED,
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "rbac.apply.namespaces={shop-staging,shop-prod}",
    "--set",
    "home.existingClaim=baton-home",
    "--set",
    "image.digest=sha256:" + "ab" * 32,
]


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_tool("helm"), *args], capture_output=True, text=True, check=False, timeout=120
    )


def render(*args: str) -> list[dict]:
    done = _helm("template", "baton", str(CHART), "--namespace", "baton", *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _refusal(*args: str) -> str:
    done = _helm("template", "baton", str(CHART), *args)
    assert done.returncode != 0
    return done.stderr


def _kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def _workers(objects: list[dict]) -> dict[str, dict]:
    """Worker Deployments by the task queue their container serves."""
    return {
        d["spec"]["template"]["spec"]["containers"][0]["command"][-1]: d
        for d in _kind(objects, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    }


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render(*ALL_ON)


def test_chart_lints_strict() -> None:
    done = _helm("lint", "--strict", str(CHART), *REQUIRED)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("values", [REQUIRED, ALL_ON], ids=["defaults", "all-on"])
def test_rendered_output_validates_strictly(values: list[str]) -> None:
    objects = render(*values)
    assert validate_manifests(yaml.safe_dump_all(objects)) == []
    # Kinds without a bundled schema are skipped by validate_manifests: only the CRD may be one.
    kinds = {o["kind"] for o in objects}
    assert kinds <= {
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceMonitor",
    }


def test_one_worker_deployment_per_task_queue_with_its_own_replicas_and_resources() -> None:
    defaults = _workers(render(*REQUIRED))
    assert set(defaults) == set(ACTIVITIES)
    scaled = _workers(
        render(
            *REQUIRED,
            "--set",
            "workers.build.replicas=5",
            "--set",
            "workers.build.resources.requests.cpu=2",
        )
    )
    assert scaled["baton-build"]["spec"]["replicas"] == 5
    build = scaled["baton-build"]["spec"]["template"]["spec"]["containers"][0]
    assert build["resources"]["requests"]["cpu"] == 2
    for queue in set(ACTIVITIES) - {"baton-build"}:
        assert scaled[queue]["spec"] == defaults[queue]["spec"], queue
    selectors = [d["spec"]["selector"]["matchLabels"] for d in defaults.values()]
    assert len({tuple(sorted(s.items())) for s in selectors}) == len(selectors)


def test_every_container_has_probes_on_a_port_it_declares(rendered: list[dict]) -> None:
    for deployment in _kind(rendered, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            ports = {port["name"] for port in container["ports"]}
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["port"] in ports, (
                    deployment["metadata"]["name"],
                    probe,
                )


def test_secrets_only_by_reference_and_no_root(rendered: list[dict]) -> None:
    assert _kind(rendered, "Secret") == []
    for deployment in _kind(rendered, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        for container in pod["containers"]:
            assert [s for s in container["envFrom"] if "secretRef" in s] == []
            refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
            assert {ref["name"] for ref in refs} == {SECRETS[component]}
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
            assert {"/config", "/data", "/tmp"} <= mounts


def test_the_config_travels_as_written_and_is_valid(rendered: list[dict]) -> None:
    config_map = next(o for o in rendered if o["metadata"]["name"] == "baton-config")
    assert config_map["data"]["baton.yaml"] == CONFIG.read_text()
    load_config(CONFIG)  # raises ConfigError naming the field otherwise
    env = next(o for o in rendered if o["metadata"]["name"] == "baton-env")["data"]
    assert env["BATON_CONFIG"] == "/config/baton.yaml"
    assert env["TEMPORAL_NAMESPACE"] == "baton"


def test_rbac_for_flux_and_apply_is_bound_to_the_deploy_workers(rendered: list[dict]) -> None:
    account = _kind(rendered, "ServiceAccount")[0]["metadata"]["name"]
    workers = _workers(rendered)
    deploy_pod = workers["baton-deploy"]["spec"]["template"]["spec"]
    assert deploy_pod["serviceAccountName"] == account
    for queue in set(ACTIVITIES) - {"baton-deploy"}:
        assert workers[queue]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    (cluster_role,) = _kind(rendered, "ClusterRole")
    groups = {group for rule in cluster_role["rules"] for group in rule["apiGroups"]}
    assert {"kustomize.toolkit.fluxcd.io", "source.toolkit.fluxcd.io", "apps"} <= groups
    (binding,) = _kind(rendered, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "baton"}
    ]
    roles = {role["metadata"]["namespace"] for role in _kind(rendered, "Role")}
    bindings = {b["metadata"]["namespace"] for b in _kind(rendered, "RoleBinding")}
    assert roles == bindings == {"shop-staging", "shop-prod"}


def test_service_monitor_scrapes_the_api_and_every_worker(rendered: list[dict]) -> None:
    assert _kind(render(*REQUIRED), "ServiceMonitor") == []
    (monitor,) = _kind(rendered, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        s for s in _kind(rendered, "Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    ports = {port["name"] for service in services for port in service["spec"]["ports"]}
    assert (
        {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]}
        == ports
        == {
            "http",
            "metrics",
        }
    )


def test_missing_or_mistyped_values_are_refused_with_what_to_set() -> None:
    assert "set secrets.api.existingSecret: the Secret holding BATON_WEBHOOK_SECRET, " + (
        "BATON_REGISTRY_PULL_PASSWORD"
    ) in _refusal(*REQUIRED[2:])
    assert "set secrets.workers.existingSecret: the Secret holding BATON_WEBHOOK_SECRET, " + (
        "BATON_REGISTRY_PASSWORD"
    ) in _refusal(*REQUIRED[:2], *REQUIRED[4:])
    assert "set config (baton.yaml as YAML" in _refusal(*REQUIRED[:4])
    typo = _refusal(*REQUIRED, "--set", "workers.build.replica=3")
    assert "additional properties 'replica' not allowed" in typo
    queue = _refusal(*REQUIRED, "--set", "workers.build.queue=baton-bild")
    assert "/workers/build/queue" in queue


def test_notes_name_every_search_attribute_to_register() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    for key in SearchAttributes.ALL:
        assert key.name in notes
    assert "deploy/temporal/register-search-attributes.sh" in notes
