"""Which rendered diffs are security-sensitive, and why: RBAC, admission webhooks,
NetworkPolicies, Secrets, images from another registry, and each control of Kubernetes' Pod
Security Standards (https://kubernetes.io/docs/concepts/security/pod-security-standards/)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from baton.sensitivity import pod_security_violations, sensitive_changes

REGISTRY = "127.0.0.1:5000"
APP_IMAGE = f"{REGISTRY}/web@sha256:{'a' * 64}"
# A pod meeting the Restricted profile, as `helm create`'s chart reads with its commented
# securityContext values filled in (and examples/sample-app's values).
HARDENED: dict[str, Any] = {
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "containers": [
        {
            "name": "web",
            "image": APP_IMAGE,
            "ports": [{"name": "http", "containerPort": 8080}],
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    ],
    "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "config", "configMap": {"name": "c"}}],
}


def workload(pod: dict[str, Any], kind: str = "Deployment", annotations=None) -> dict[str, Any]:
    template: dict[str, Any] = {"metadata": {"annotations": annotations or {}}, "spec": pod}
    spec: dict[str, Any] = {"template": template}
    if kind == "CronJob":
        spec = {"schedule": "@daily", "jobTemplate": {"spec": spec}}
    return {
        "apiVersion": "batch/v1" if kind == "CronJob" else "apps/v1",
        "kind": kind,
        "metadata": {"name": "web", "namespace": "prod"},
        "spec": spec,
    }


def deployment(image: str = APP_IMAGE, **pod: Any) -> str:
    spec = copy.deepcopy(HARDENED)
    spec["containers"][0]["image"] = image
    spec.update(pod)
    return yaml.safe_dump(workload(spec))


def obj(kind: str, name: str = "x", **fields) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": "prod"},
            **fields,
        }
    )


def container(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["containers"][0]["securityContext"]


C = "spec.template.spec.containers[web].securityContext"
P = "spec.template.spec"
# One row per restricted field: how it is set, and the one reason it gives.
ROWS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    (
        "hostProcess (pod)",
        lambda p: p["securityContext"].update(windowsOptions={"hostProcess": True}),
        f"{P}.securityContext.windowsOptions.hostProcess is true (baseline: HostProcess)",
    ),
    (
        "hostProcess (container)",
        lambda p: container(p).update(windowsOptions={"hostProcess": True}),
        f"{C}.windowsOptions.hostProcess is true (baseline: HostProcess)",
    ),
    (
        "hostNetwork",
        lambda p: p.update(hostNetwork=True),
        f"{P}.hostNetwork is true (baseline: Host Namespaces)",
    ),
    (
        "hostPID",
        lambda p: p.update(hostPID=True),
        f"{P}.hostPID is true (baseline: Host Namespaces)",
    ),
    (
        "hostIPC",
        lambda p: p.update(hostIPC=True),
        f"{P}.hostIPC is true (baseline: Host Namespaces)",
    ),
    (
        "privileged",
        lambda p: container(p).update(privileged=True),
        f"{C}.privileged is true (baseline: Privileged Containers)",
    ),
    (
        "capabilities beyond the baseline set",
        lambda p: container(p)["capabilities"].update(add=["NET_ADMIN", "SYS_ADMIN"]),
        f"{C}.capabilities.add adds NET_ADMIN, SYS_ADMIN (baseline: Capabilities)",
    ),
    (
        "capabilities beyond NET_BIND_SERVICE",
        lambda p: container(p)["capabilities"].update(add=["CHOWN", "NET_BIND_SERVICE"]),
        f"{C}.capabilities.add adds CHOWN (restricted: Capabilities)",
    ),
    (
        "capabilities not dropping ALL",
        lambda p: container(p)["capabilities"].update(drop=["NET_RAW"]),
        f"{C}.capabilities.drop does not drop ALL (restricted: Capabilities)",
    ),
    (
        "hostPath volume",
        lambda p: p["volumes"].append({"name": "docker", "hostPath": {"path": "/var/run"}}),
        f"{P}.volumes[docker].hostPath is set (baseline: HostPath Volumes)",
    ),
    (
        "volume type outside the restricted set",
        lambda p: p["volumes"].append({"name": "data", "nfs": {"server": "n", "path": "/"}}),
        f"{P}.volumes[data].nfs is not an allowed volume type (restricted: Volume Types)",
    ),
    (
        "hostPort",
        lambda p: p["containers"][0]["ports"][0].update(hostPort=80),
        f"{P}.containers[web].ports[http].hostPort is 80 (baseline: Host Ports)",
    ),
    (
        "AppArmor profile",
        lambda p: container(p).update(appArmorProfile={"type": "Unconfined"}),
        f"{C}.appArmorProfile.type is Unconfined (baseline: AppArmor)",
    ),
    (
        "SELinux type",
        lambda p: p["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
        f"{P}.securityContext.seLinuxOptions.type is spc_t (baseline: SELinux)",
    ),
    (
        "SELinux user",
        lambda p: container(p).update(seLinuxOptions={"user": "system_u"}),
        f"{C}.seLinuxOptions.user is set (baseline: SELinux)",
    ),
    (
        "SELinux role",
        lambda p: container(p).update(seLinuxOptions={"role": "system_r"}),
        f"{C}.seLinuxOptions.role is set (baseline: SELinux)",
    ),
    (
        "/proc mount",
        lambda p: container(p).update(procMount="Unmasked"),
        f"{C}.procMount is Unmasked (baseline: /proc Mount Type)",
    ),
    (
        "seccomp Unconfined",
        lambda p: p["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        f"{P}.securityContext.seccompProfile.type is Unconfined (baseline: Seccomp)",
    ),
    (
        "seccomp unset",
        lambda p: p["securityContext"].pop("seccompProfile"),
        f"{C}.seccompProfile.type is not set, nor the pod's (restricted: Seccomp)",
    ),
    (
        "sysctl outside the safe set",
        lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        f"{P}.securityContext.sysctls[kernel.msgmax] is not a safe sysctl (baseline: Sysctls)",
    ),
    (
        "privilege escalation",
        lambda p: container(p).update(allowPrivilegeEscalation=True),
        f"{C}.allowPrivilegeEscalation is not false (restricted: Privilege Escalation)",
    ),
    (
        "runAsNonRoot false",
        lambda p: container(p).update(runAsNonRoot=False),
        f"{C}.runAsNonRoot is false (restricted: Running as Non-root)",
    ),
    (
        "runAsNonRoot unset",
        lambda p: p["securityContext"].pop("runAsNonRoot"),
        f"{C}.runAsNonRoot is not set, nor the pod's (restricted: Running as Non-root)",
    ),
    (
        "runAsUser 0",
        lambda p: p["securityContext"].update(runAsUser=0),
        f"{P}.securityContext.runAsUser is 0 (restricted: Running as Non-root user)",
    ),
]


@pytest.mark.parametrize(("field", "change", "reason"), ROWS, ids=[r[0] for r in ROWS])
def test_each_pod_security_control_is_named_with_its_field(field, change, reason) -> None:
    pod = copy.deepcopy(HARDENED)
    change(pod)
    new = yaml.safe_dump(workload(pod))
    assert sensitive_changes(deployment(), new, REGISTRY) == [f"Deployment/prod/web: {reason}"]
    assert sensitive_changes("", new, REGISTRY) == [f"Deployment/prod/web: {reason}"]
    # Already deployed that way: not news.
    assert sensitive_changes(new, new.replace("8080", "8081"), REGISTRY) == []


# Restricted controls that do not apply to a pod with spec.os.name windows (Pod Security
# Standards, and Pod Security Admission's checks since v1.25): their fields have no effect there.
WINDOWS_EXEMPT = {
    "capabilities beyond NET_BIND_SERVICE",
    "capabilities not dropping ALL",
    "seccomp unset",
    "privilege escalation",
}


@pytest.mark.parametrize(("field", "change", "reason"), ROWS, ids=[r[0] for r in ROWS])
def test_a_windows_pod_is_exempt_from_restricted_linux_only_controls(field, change, reason) -> None:
    pod = copy.deepcopy(HARDENED)
    pod["os"] = {"name": "windows"}
    change(pod)
    expected = [] if field in WINDOWS_EXEMPT else [f"Deployment/prod/web: {reason}"]
    assert sensitive_changes("", yaml.safe_dump(workload(pod)), REGISTRY) == expected


def test_a_windows_pod_keeps_the_baseline_controls_of_the_fields_it_is_exempt_from() -> None:
    """A bare Windows pod breaks none of the Linux-only controls; the Baseline capability set
    and seccomp Unconfined still count, and a Linux pod (os.name linux) is not exempt."""
    bare = {"os": {"name": "windows"}, "containers": [{"name": "web", "image": APP_IMAGE}]}
    at = "spec.template.spec.containers[web].securityContext"
    assert pod_security_violations(workload(bare)) == [
        f"{at}.runAsNonRoot is not set, nor the pod's (restricted: Running as Non-root)"
    ]
    bare["containers"][0]["securityContext"] = {  # type: ignore[index]
        "capabilities": {"add": ["SYS_ADMIN"]},
        "seccompProfile": {"type": "Unconfined"},
        "runAsNonRoot": True,
    }
    assert pod_security_violations(workload(bare)) == [
        f"{at}.capabilities.add adds SYS_ADMIN (baseline: Capabilities)",
        f"{at}.seccompProfile.type is Unconfined (baseline: Seccomp)",
    ]
    bare["os"] = {"name": "linux"}
    assert len(pod_security_violations(workload(bare))) == 4


def test_apparmor_annotation_and_cronjob_and_init_container_paths() -> None:
    unconfined = {"container.apparmor.security.beta.kubernetes.io/web": "unconfined"}
    annotation = (
        "spec.template.metadata.annotations[container.apparmor.security.beta.kubernetes.io/web]"
    )
    assert pod_security_violations(workload(copy.deepcopy(HARDENED), annotations=unconfined)) == [
        f"{annotation} is unconfined (baseline: AppArmor)"
    ]
    pod = copy.deepcopy(HARDENED)
    pod["initContainers"] = [
        {"name": "chown", "image": APP_IMAGE, "securityContext": {"privileged": True}}
    ]
    assert pod_security_violations(workload(pod, kind="CronJob")) == [
        f"spec.jobTemplate.spec.template.spec.initContainers[chown].securityContext.{v}"
        for v in (
            "privileged is true (baseline: Privileged Containers)",
            "capabilities.drop does not drop ALL (restricted: Capabilities)",
            "allowPrivilegeEscalation is not false (restricted: Privilege Escalation)",
        )
    ]


def test_a_hardened_workload_and_a_new_image_of_the_app_are_not_sensitive() -> None:
    new = deployment(image=f"{REGISTRY}/web@sha256:{'b' * 64}")
    assert sensitive_changes(deployment(), new, REGISTRY) == []
    assert sensitive_changes("", deployment(), REGISTRY) == []  # first deploy


def test_rbac_webhooks_network_policy_and_secrets_are_sensitive_whatever_the_action() -> None:
    old = obj("Secret", "db", data={"password": "YQ=="}) + "---\n" + obj("NetworkPolicy", "deny")
    new = "---\n".join(
        [
            obj("Secret", "db", data={"password": "Yg=="}),
            obj("Role", "reader"),
            obj("ClusterRoleBinding", "admin"),
            obj("MutatingWebhookConfiguration", "inject"),
            obj("ValidatingAdmissionPolicy", "limits"),
        ]
    )
    assert sensitive_changes(old, new, REGISTRY) == [
        "ClusterRoleBinding/prod/admin added (RBAC)",
        "MutatingWebhookConfiguration/prod/inject added (admission webhook)",
        "NetworkPolicy/prod/deny removed (NetworkPolicy)",
        "Role/prod/reader added (RBAC)",
        "Secret/prod/db changed (Secret)",
        "ValidatingAdmissionPolicy/prod/limits added (admission policy)",
    ]


def test_an_image_from_another_registry_is_sensitive() -> None:
    new = deployment(image="docker.io/library/nginx:1.27")
    assert sensitive_changes(deployment(), new, REGISTRY) == [
        "Deployment/prod/web: image docker.io/library/nginx:1.27 from docker.io, not 127.0.0.1:5000"
    ]
    assert sensitive_changes(deployment(), deployment(image="nginx"), REGISTRY)[0].endswith(
        "image nginx from docker.io, not 127.0.0.1:5000"
    )
    # Already from that registry before: not news.
    assert sensitive_changes(new, deployment(image="docker.io/library/nginx:1.28"), REGISTRY) == []
