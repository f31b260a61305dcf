"""What the board shows of a rendered diff, of delivery figures and of environments
(api.board.present, api.board.data.columns)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import yaml

from api.board.data import columns
from api.board.present import bars, diff_sections, duration, line_kind
from baton.config import (
    AppConfig,
    ApprovalPolicy,
    BatonConfig,
    EnvironmentConfig,
    FreezeWindow,
)
from baton.diff import diff_manifests
from baton.sensitivity import sensitive_changes

REGISTRY = "127.0.0.1:5000"
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "prod"},
    "spec": {
        "template": {
            "spec": {"containers": [{"name": "web", "image": f"{REGISTRY}/web@sha256:" + "a" * 64}]}
        }
    },
}
ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "web-reader"},
    "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
}


def manifests(*objects: dict) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def test_sensitive_objects_are_marked_with_their_reasons() -> None:
    before = manifests(DEPLOYMENT)
    changed = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    changed["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    after = manifests(changed, ROLE)
    reasons = sensitive_changes(before, after, REGISTRY)
    sections = diff_sections(diff_manifests(before, after).to_markdown(), reasons)

    by_key = {s.key: s for s in sections if s.key}
    assert set(by_key) == {"Deployment/prod/web", "ClusterRole/web-reader"}
    role, deployment = by_key["ClusterRole/web-reader"], by_key["Deployment/prod/web"]
    assert role.sensitive and all(r.startswith("ClusterRole/web-reader") for r in role.sensitive)
    assert any("privileged" in r for r in deployment.sensitive)
    assert sorted(role.sensitive + deployment.sensitive) == sorted(reasons)
    assert any(line.startswith("+") and "privileged" in line for line in deployment.lines)
    assert {line_kind(line) for line in deployment.lines} >= {"add", "ctx"}


def test_a_reason_about_no_shown_object_still_shows() -> None:
    markdown = diff_manifests(manifests(DEPLOYMENT), manifests(DEPLOYMENT, ROLE)).to_markdown()
    sections = diff_sections(markdown, ["Secret/prod/token changed (Secret)"])
    assert sections[0].title == "security-sensitive"
    assert sections[0].sensitive == ["Secret/prod/token changed (Secret)"]


def test_durations_read_as_people_say_them() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert duration(start, start + timedelta(seconds=12), start) == "12s"
    assert duration(start, None, start + timedelta(minutes=3, seconds=5)) == "3m 05s"
    assert duration(start, start + timedelta(hours=1, minutes=2), start) == "1h 02m"


def test_chart_has_a_bar_per_value_and_a_label() -> None:
    svg = bars([0, 2, None, 4], "deployments per day of web in prod")
    assert 'aria-label="deployments per day of web in prod"' in svg
    assert svg.count("<rect") == 3 and svg.count('class="zero"') == 1
    assert "<title>4</title>" in svg


def test_columns_follow_the_promotion_order_with_policy_and_freeze() -> None:
    now = datetime(2026, 12, 24, 12, tzinfo=UTC)
    holiday = FreezeWindow(
        name="holidays", start=now - timedelta(days=1), end=now + timedelta(days=2)
    )
    config = BatonConfig(
        apps=[AppConfig(name="web", repo="web", image="web", chart="chart")],
        environments=[
            EnvironmentConfig(
                name="prod",
                namespace="prod",
                freeze=[holiday],
                approvals=ApprovalPolicy(required=2, approvers=["carol", "dave"]),
            ),
            EnvironmentConfig(name="dev", namespace="dev"),
        ],
        promotion=["dev", "prod"],
    )
    dev, prod = columns(config, now)
    assert (dev.name, dev.approvals, dev.freeze) == ("dev", "no approval", None)
    assert (prod.name, prod.approvals) == ("prod", "2 approval(s) of carol, dave")
    assert prod.freeze == ("holidays", now + timedelta(days=2))
