"""Security-sensitive changes in a rendered diff, which call for extra approval.

Sensitive: any added, changed or removed RBAC object, NetworkPolicy or Secret; a change to a
securityContext (pod or container) of an object that existed before; a new workload that asks
for privileges (privileged, privilege escalation, added capabilities, host namespaces, root); and
an image from a registry other than Baton's, or one whose registry changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from baton.render import split_objects

SENSITIVE_KINDS = {
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "NetworkPolicy",
    "Secret",
}
HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")


def sensitive_changes(old_text: str, new_text: str, registry: str) -> list[str]:
    """Why the change from `old_text` to `new_text` is security-sensitive; empty when it is not.

    `registry` is Baton's registry host (host[:port]): images from it are the app's own.
    """
    old, new = split_objects(old_text), split_objects(new_text)
    reasons: list[str] = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        kind = key.split("/", 1)[0]
        action = "added" if before is None else "removed" if after is None else "changed"
        if kind in SENSITIVE_KINDS:
            reasons.append(f"{key} {action}")
            continue
        if after is None:
            continue
        pod = _pod_spec(after)
        if before is not None and _security_contexts(_pod_spec(before)) != _security_contexts(pod):
            reasons.append(f"{key}: securityContext changed")
        elif before is None and (privileges := _privileges(pod)):
            reasons.append(f"{key} added with {', '.join(privileges)}")
        old_hosts = {_registry(i) for i in _images(_pod_spec(before or {}))}
        for image in _images(pod):
            host = _registry(image)
            if host != registry and host not in old_hosts:
                reasons.append(f"{key}: image {image} from {host}, not {registry}")
    return reasons


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template's spec of a workload (Deployment, Job, CronJob...), or a Pod's spec."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return spec
    if obj.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def _containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod.get(field) or []


def _security_contexts(pod: dict[str, Any]) -> list[Any]:
    contexts: list[Any] = [pod.get("securityContext")]
    contexts += [pod.get(field) for field in HOST_NAMESPACES]
    contexts += [(c.get("name"), c.get("securityContext")) for c in _containers(pod)]
    return contexts


def _privileges(pod: dict[str, Any]) -> list[str]:
    found = [field for field in HOST_NAMESPACES if pod.get(field)]
    pod_context = pod.get("securityContext") or {}
    if pod_context.get("runAsUser") == 0:
        found.append("runAsUser 0")
    for container in _containers(pod):
        context = container.get("securityContext") or {}
        name = container.get("name", "?")
        if context.get("privileged"):
            found.append(f"privileged container {name}")
        if context.get("allowPrivilegeEscalation"):
            found.append(f"privilege escalation in {name}")
        if (context.get("capabilities") or {}).get("add"):
            found.append(f"added capabilities in {name}")
        if context.get("runAsUser") == 0:
            found.append(f"runAsUser 0 in {name}")
    return found


def _images(pod: dict[str, Any]) -> list[str]:
    return [c["image"] for c in _containers(pod) if isinstance(c.get("image"), str)]


def _registry(image: str) -> str:
    """The registry host of an image reference, docker.io when it names none."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"
