"""Which rendered diffs are security-sensitive, and why."""

from __future__ import annotations

import yaml

from baton.sensitivity import sensitive_changes

REGISTRY = "127.0.0.1:5000"


def deployment(image: str = f"{REGISTRY}/web@sha256:{'a' * 64}", **pod) -> str:
    spec = {"containers": [{"name": "web", "image": image, **pod.pop("container", {})}], **pod}
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"template": {"spec": spec}},
        }
    )


def obj(kind: str, name: str = "x", **fields) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": "prod"},
            **fields,
        }
    )


def test_a_new_image_of_the_app_is_not_sensitive() -> None:
    new = deployment(image=f"{REGISTRY}/web@sha256:{'b' * 64}")
    assert sensitive_changes(deployment(), new, REGISTRY) == []
    assert sensitive_changes("", deployment(), REGISTRY) == []  # first deploy


def test_rbac_network_policy_and_secrets_are_sensitive_whatever_the_action() -> None:
    old = obj("Secret", "db", data={"password": "YQ=="}) + "---\n" + obj("NetworkPolicy", "deny")
    new = obj("Secret", "db", data={"password": "Yg=="}) + "---\n" + obj("Role", "reader")
    assert sensitive_changes(old, new, REGISTRY) == [
        "NetworkPolicy/prod/deny removed",
        "Role/prod/reader added",
        "Secret/prod/db changed",
    ]


def test_changed_security_context_is_sensitive() -> None:
    old = deployment(container={"securityContext": {"runAsNonRoot": True}})
    new = deployment(container={"securityContext": {"runAsNonRoot": False}})
    assert sensitive_changes(old, new, REGISTRY) == ["Deployment/prod/web: securityContext changed"]
    assert sensitive_changes(deployment(), deployment(hostNetwork=True), REGISTRY) == [
        "Deployment/prod/web: securityContext changed"
    ]


def test_a_new_workload_asking_for_privileges_is_sensitive() -> None:
    new = deployment(container={"securityContext": {"privileged": True}})
    assert sensitive_changes("", new, REGISTRY) == [
        "Deployment/prod/web added with privileged container web"
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
