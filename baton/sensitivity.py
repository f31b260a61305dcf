"""Security-sensitive changes in a rendered diff, which call for extra approval.

Sensitive, each reason naming the object, the field path and the rule:

- any added, changed or removed RBAC object (Role, ClusterRole and their bindings), admission
  webhook or policy (Validating/MutatingWebhookConfiguration, Validating/MutatingAdmissionPolicy
  and their bindings), NetworkPolicy or Secret;
- a workload (Pod, or the pod template of a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
  CronJob...) breaking a control of Kubernetes' Pod Security Standards, Baseline or Restricted
  profile, that the version deployed did not break (a new workload: every control it breaks).
  Source: https://kubernetes.io/docs/concepts/security/pod-security-standards/ (the Baseline
  and Restricted tables, Kubernetes v1.31: container_engine_t, the tcp_keepalive sysctls); a
  pod with `spec.os.name: windows` is exempt, as the standard and Pod Security Admission exempt
  it since v1.25, from the Restricted controls Privilege Escalation, Seccomp and Capabilities
  (their fields do not apply to Windows); Baseline's controls hold for it;
- an image from a registry other than Baton's that the object did not already run images from.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from baton.references import registry_of
from baton.render import split_objects

SENSITIVE_KINDS = {
    "Role": "RBAC",
    "ClusterRole": "RBAC",
    "RoleBinding": "RBAC",
    "ClusterRoleBinding": "RBAC",
    "ValidatingWebhookConfiguration": "admission webhook",
    "MutatingWebhookConfiguration": "admission webhook",
    "ValidatingAdmissionPolicy": "admission policy",
    "ValidatingAdmissionPolicyBinding": "admission policy",
    "MutatingAdmissionPolicy": "admission policy",
    "MutatingAdmissionPolicyBinding": "admission policy",
    "NetworkPolicy": "NetworkPolicy",
    "Secret": "Secret",
}
"""Kinds whose every change is sensitive → the rule named in the reason."""

HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
_CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")


def sensitive_changes(deployed: str, manifests: str, registry_url: str) -> list[str]:
    """Why the change from `deployed` to `manifests` (multi-document YAML) is
    security-sensitive, one line per reason (`<object key>: <field path> <finding> (<profile>:
    <control>)`); empty when it is not.

    `registry_url` is Baton's registry host (host[:port]): images from it are the app's own.
    """
    old, new = split_objects(deployed), split_objects(manifests)
    reasons: list[str] = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        kind = key.split("/", 1)[0]
        action = "added" if before is None else "removed" if after is None else "changed"
        if kind in SENSITIVE_KINDS:
            reasons.append(f"{key} {action} ({SENSITIVE_KINDS[kind]})")
            continue
        if after is None:
            continue
        known = set(pod_security_violations(before)) if before is not None else set()
        reasons += [f"{key}: {v}" for v in pod_security_violations(after) if v not in known]
        old_hosts = {registry_of(i) for i in _images(_pod(before or {})[1])}
        for image in _images(_pod(after)[1]):
            host = registry_of(image)
            if host != registry_url and host not in old_hosts:
                reasons.append(f"{key}: image {image} from {host}, not {registry_url}")
    return reasons


def pod_security_violations(obj: dict[str, Any]) -> list[str]:
    """The Pod Security Standards controls the pod (template) of workload `obj` breaks, each
    `<field path> <finding> (<profile>: <control>)`; empty for an object with no pod."""
    path, pod = _pod(obj)
    if not pod:
        return []
    found: list[str] = []

    def broke(field: str, finding: str, profile: str, control: str) -> None:
        found.append(f"{field} {finding} ({profile}: {control})")

    pod_context = pod.get("securityContext") or {}
    linux_only = (pod.get("os") or {}).get("name") != "windows"  # Restricted's Linux-only controls
    for field in HOST_NAMESPACES:
        if pod.get(field):
            broke(f"{path}.{field}", "is true", "baseline", "Host Namespaces")
    if (pod_context.get("windowsOptions") or {}).get("hostProcess"):
        broke(
            f"{path}.securityContext.windowsOptions.hostProcess",
            "is true",
            "baseline",
            "HostProcess",
        )
    for sysctl in pod_context.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            broke(
                f"{path}.securityContext.sysctls[{sysctl.get('name')}]",
                "is not a safe sysctl",
                "baseline",
                "Sysctls",
            )
    for volume in pod.get("volumes") or []:
        kinds = sorted(set(volume) - {"name"})
        where = f"{path}.volumes[{volume.get('name')}]"
        if "hostPath" in kinds:
            broke(f"{where}.hostPath", "is set", "baseline", "HostPath Volumes")
        elif any(k not in RESTRICTED_VOLUMES for k in kinds):
            broke(
                f"{where}.{kinds[0]}", "is not an allowed volume type", "restricted", "Volume Types"
            )
    prefix, template = _template(obj)
    for name, value in ((template.get("metadata") or {}).get("annotations") or {}).items():
        if name.startswith(APPARMOR_ANNOTATION) and not (
            value == "runtime/default" or str(value).startswith("localhost/")
        ):
            broke(f"{prefix}metadata.annotations[{name}]", f"is {value}", "baseline", "AppArmor")
    found += _context_violations(f"{path}.securityContext", pod_context)
    for container, where in _containers(pod, path):
        context = container.get("securityContext") or {}
        at = f"{where}.securityContext"
        if context.get("privileged"):
            broke(f"{at}.privileged", "is true", "baseline", "Privileged Containers")
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            broke(f"{at}.windowsOptions.hostProcess", "is true", "baseline", "HostProcess")
        if context.get("procMount") not in (None, "Default"):
            broke(f"{at}.procMount", f"is {context['procMount']}", "baseline", "/proc Mount Type")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                broke(
                    f"{where}.ports[{port.get('name') or port.get('containerPort')}].hostPort",
                    f"is {port['hostPort']}",
                    "baseline",
                    "Host Ports",
                )
        capabilities = context.get("capabilities") or {}
        added = set(capabilities.get("add") or [])
        if added - BASELINE_CAPABILITIES:
            beyond = ", ".join(sorted(added - BASELINE_CAPABILITIES))
            broke(f"{at}.capabilities.add", f"adds {beyond}", "baseline", "Capabilities")
        elif added - RESTRICTED_CAPABILITIES and linux_only:
            beyond = ", ".join(sorted(added - RESTRICTED_CAPABILITIES))
            broke(f"{at}.capabilities.add", f"adds {beyond}", "restricted", "Capabilities")
        if "ALL" not in (capabilities.get("drop") or []) and linux_only:
            broke(f"{at}.capabilities.drop", "does not drop ALL", "restricted", "Capabilities")
        if context.get("allowPrivilegeEscalation") is not False and linux_only:
            broke(
                f"{at}.allowPrivilegeEscalation",
                "is not false",
                "restricted",
                "Privilege Escalation",
            )
        found += _context_violations(at, context)
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is None:
            broke(
                f"{at}.runAsNonRoot",
                "is not set, nor the pod's",
                "restricted",
                "Running as Non-root",
            )
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get(
            "type"
        )
        if seccomp is None and linux_only:
            broke(
                f"{at}.seccompProfile.type",
                "is not set, nor the pod's",
                "restricted",
                "Seccomp",
            )
    return found


def _context_violations(at: str, context: dict[str, Any]) -> list[str]:
    """The controls a pod's or a container's securityContext `context` (at path `at`) breaks
    in the fields both have."""
    found: list[str] = []
    selinux = context.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES:
        found.append(f"{at}.seLinuxOptions.type is {selinux['type']} (baseline: SELinux)")
    for field in ("user", "role"):
        if selinux.get(field):
            found.append(f"{at}.seLinuxOptions.{field} is set (baseline: SELinux)")
    apparmor = (context.get("appArmorProfile") or {}).get("type")
    if apparmor not in (None, "RuntimeDefault", "Localhost"):
        found.append(f"{at}.appArmorProfile.type is {apparmor} (baseline: AppArmor)")
    if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append(f"{at}.seccompProfile.type is Unconfined (baseline: Seccomp)")
    if context.get("runAsNonRoot") is False:
        found.append(f"{at}.runAsNonRoot is false (restricted: Running as Non-root)")
    if context.get("runAsUser") == 0:
        found.append(f"{at}.runAsUser is 0 (restricted: Running as Non-root user)")
    return found


def _template(obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The field path prefix and the pod template of a workload (Deployment, StatefulSet, Job,
    CronJob...: `metadata` and `spec`), or a Pod itself; an empty template for other kinds."""
    if obj.get("kind") == "Pod":
        return "", obj
    spec = obj.get("spec") or {}
    prefix = "spec."
    if obj.get("kind") == "CronJob":
        spec, prefix = ((spec.get("jobTemplate") or {}).get("spec")) or {}, "spec.jobTemplate.spec."
    return f"{prefix}template.", spec.get("template") or {}


def _pod(obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The field path and the spec of a workload's pod (see `_template`)."""
    prefix, template = _template(obj)
    return f"{prefix}spec", template.get("spec") or {}


def _containers(pod: dict[str, Any], path: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every container of `pod` (init and ephemeral ones included) and its field path."""
    for field in _CONTAINER_FIELDS:
        for container in pod.get(field) or []:
            yield container, f"{path}.{field}[{container.get('name', '?')}]"


def _images(pod: dict[str, Any]) -> list[str]:
    return [c["image"] for c, _ in _containers(pod, "") if isinstance(c.get("image"), str)]
