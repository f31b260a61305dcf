"""deploy/helm/baton: Baton's Helm chart lints (strict), renders, and its output validates offline
against the Kubernetes schemas (strict: no unknown fields); the API a StatefulSet whose start
journal has a claim per replica (an emptyDir when persistence is off); one worker Deployment per
task queue, each with its own replicas and resources, probes on every container, secrets only by
reference (the API's Secret and the workers'), RBAC for Flux and apply, a ServiceMonitor behind a
value."""

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
TOKENS = ["--set", "api.tokens.existingSecret=baton-api-tokens"]
# Everything switched on: the ServiceMonitor, apply RBAC in two namespaces, a home claim, the
# token file.
ALL_ON = [
    *REQUIRED,
    *TOKENS,
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "rbac.apply.namespaces={shop-staging,shop-prod}",
    "--set",
    "home.existingClaim=baton-home",
    "--set",
    "image.digest=sha256:" + "ab" * 32,
]
NO_PERSISTENCE = [*REQUIRED, "--set", "api.persistence.enabled=false"]
JOURNAL = "/data/api"  # BATON_HOME/api: where the API keeps pending-starts.db


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


def workloads(objects: list[dict]) -> list[dict]:
    """The objects that run pods: the workers' Deployments and the API's StatefulSet."""
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def _workers(objects: list[dict]) -> dict[str, dict]:
    """Worker Deployments by the task queue their container serves."""
    return {
        d["spec"]["template"]["spec"]["containers"][0]["command"][-1]: d
        for d in _kind(objects, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    }


def _api(objects: list[dict]) -> dict:
    (api,) = [
        o
        for o in workloads(objects)
        if o["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    ]
    return api


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render(*ALL_ON)


def test_chart_lints_strict() -> None:
    done = _helm("lint", "--strict", str(CHART), *REQUIRED)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    "values", [REQUIRED, ALL_ON, NO_PERSISTENCE], ids=["defaults", "all-on", "no-persistence"]
)
def test_rendered_output_validates_strictly(values: list[str]) -> None:
    objects = render(*values)
    assert validate_manifests(yaml.safe_dump_all(objects)) == []
    # Kinds without a bundled schema are skipped by validate_manifests: only the CRD may be one.
    kinds = {o["kind"] for o in objects}
    assert kinds <= {
        "ConfigMap",
        "Deployment",
        "StatefulSet",
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
    for deployment in workloads(rendered):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            ports = {port["name"] for port in container["ports"]}
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["port"] in ports, (
                    deployment["metadata"]["name"],
                    probe,
                )


def test_secrets_only_by_reference_and_no_root(rendered: list[dict]) -> None:
    assert _kind(rendered, "Secret") == []
    for deployment in workloads(rendered):
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
    ports = {port["name"] for service in services for port in service["spec"].get("ports", [])}
    # The API's pods are scraped once: its headless Service (the StatefulSet's) has no port.
    serving = [[p["name"] for p in s["spec"].get("ports", [])] for s in services]
    assert serving.count(["http"]) == 1
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
    size = _refusal(*REQUIRED, "--set", "api.persistence.size=lots")
    assert "/api/persistence/size" in size
    key = _refusal(*REQUIRED, *TOKENS, "--set", "api.tokens.key=../tokens")
    assert "/api/tokens/key" in key


def test_notes_name_every_search_attribute_to_register() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    for key in SearchAttributes.ALL:
        assert key.name in notes
    assert "deploy/temporal/register-search-attributes.sh" in notes


def _journal_mount(pod: dict) -> str:
    (api,) = pod["containers"]
    (mount,) = [m for m in api["volumeMounts"] if m["mountPath"] == JOURNAL]
    return mount["name"]


def test_the_api_is_a_statefulset_whose_journal_has_a_claim_per_replica() -> None:
    objects = render(*REQUIRED)
    api = _api(objects)
    assert api["kind"] == "StatefulSet"
    spec, pod = api["spec"], api["spec"]["template"]["spec"]
    # What a Deployment did: replicas, started and stopped together, updated one pod at a time.
    assert spec["replicas"] == 2
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}
    (governing,) = [
        s for s in _kind(objects, "Service") if s["metadata"]["name"] == spec["serviceName"]
    ]
    assert governing["spec"]["clusterIP"] == "None"
    assert governing["spec"]["selector"] == spec["selector"]["matchLabels"]
    # The journal: a claim per replica, mounted over the home, writable by the non-root user.
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == _journal_mount(pod)
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"]  # the cluster's default
    assert claim["metadata"]["name"] not in {v["name"] for v in pod["volumes"]}
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # On SIGTERM it makes the starts left in the journal, within the grace period.
    (container,) = pod["containers"]
    drain = next(e["value"] for e in container["env"] if e["name"] == "BATON_API_DRAIN_S")
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause == ["sleep", "5"]
    assert 0 < float(drain) + 5 < pod["terminationGracePeriodSeconds"]
    assert _kind(objects, "Deployment") == list(_workers(objects).values())


def test_the_journals_claims_take_the_size_and_storage_class_of_the_values() -> None:
    def claim(*values: str) -> dict:
        (template,) = _api(render(*REQUIRED, *values))["spec"]["volumeClaimTemplates"]
        return template["spec"]

    sized = claim("--set", "api.persistence.size=5Gi", "--set", "api.persistence.storageClass=fast")
    assert sized["resources"]["requests"]["storage"] == "5Gi"
    assert sized["storageClassName"] == "fast"
    assert claim("--set", "api.persistence.storageClass=-")["storageClassName"] == ""


def test_persistence_off_gives_the_journal_an_emptydir() -> None:
    api = _api(render(*NO_PERSISTENCE))
    pod = api["spec"]["template"]["spec"]
    assert "volumeClaimTemplates" not in api["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == _journal_mount(pod)]
    assert volume == {"name": "journal", "emptyDir": {}}


def test_the_drain_leaves_the_pause_and_ten_seconds_of_the_grace_period_to_requests() -> None:
    def drain(grace: int, pause: int = 5) -> tuple[int, str, dict | None]:
        pod = _api(
            render(
                *REQUIRED,
                "--set",
                f"api.terminationGracePeriodSeconds={grace}",
                "--set",
                f"api.preStopSeconds={pause}",
            )
        )["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        value = next(e["value"] for e in container["env"] if e["name"] == "BATON_API_DRAIN_S")
        return pod["terminationGracePeriodSeconds"], value, container.get("lifecycle")

    assert drain(60)[:2] == (60, "45")
    assert drain(5)[:2] == (5, "0")
    assert drain(60, pause=0) == (60, "50", None)


def token_file(pod: dict) -> tuple[str, dict, dict] | None:
    """The API pod's BATON_TOKENS_FILE, the mount holding it and the volume mounted there."""
    (container,) = pod["containers"]
    path = next((e["value"] for e in container["env"] if e["name"] == "BATON_TOKENS_FILE"), None)
    if path is None:
        return None
    directory, _, _ = path.rpartition("/")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return path, mount, volume


def test_the_token_file_is_mounted_read_only_from_its_secret_in_every_api_replica() -> None:
    assert token_file(_api(render(*REQUIRED))["spec"]["template"]["spec"]) is None
    objects = render(*REQUIRED, *TOKENS, "--set", "api.tokens.key=api-tokens")
    found = token_file(_api(objects)["spec"]["template"]["spec"])
    assert found is not None
    path, mount, volume = found
    # Read-only, and the whole volume (a subPath mount would never see the Secret's updates).
    assert mount["readOnly"] is True and "subPath" not in mount
    assert volume["secret"]["secretName"] == "baton-api-tokens"
    assert volume["secret"]["items"] == [{"key": "api-tokens", "path": path.rpartition("/")[2]}]
    assert "optional" not in volume["secret"]  # a missing Secret or key keeps the pod from starting
    for worker in _workers(objects).values():  # the API alone reads it
        volumes = worker["spec"]["template"]["spec"]["volumes"]
        assert not [v for v in volumes if "secret" in v], worker["metadata"]["name"]
