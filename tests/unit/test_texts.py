"""The GitOps PR bodies a rollout writes: what reviewers read on the forge."""

from __future__ import annotations

from baton.config import ApprovalPolicy, SecurityApprovals
from tests.fakes.records import fake_rendered
from tests.fixtures.rollouts import prod, rollout_of
from workflows.rollout import texts

ROLLOUT = "rollout/web/prod/" + "f" * 40


def test_the_deploy_body_links_change_and_rollout_and_ends_with_the_routing_trailer() -> None:
    rollout = rollout_of(prod())
    body = texts.deploy_body(rollout, ROLLOUT, fake_rendered(rollout))

    lines = body.splitlines()
    assert lines[0] == (
        "Deploys **web** `ffffffffffff` to **prod** (image `r/web@sha256:" + "0" * 64 + "`)."
    )
    assert lines[2] == (
        "Change: [change/web/1](http://127.0.0.1:8233/namespaces/default/workflows/change%2Fweb%2F1)"
        f" · Rollout: [{ROLLOUT}](http://127.0.0.1:8233/namespaces/default/workflows/"
        f"{ROLLOUT.replace('/', '%2F')})"
    )
    assert "### Rendered manifests\n\nchanged: Deployment/prod/web" in body
    assert "Security-sensitive" not in body
    assert lines[-1] == f"Baton-Rollout: {ROLLOUT}"


def test_a_sensitive_diff_is_flagged_with_the_approvals_it_needs() -> None:
    security = SecurityApprovals(required=1, approvers=["erin"])
    rollout = rollout_of(prod(required=1, security=security))
    body = texts.deploy_body(rollout, ROLLOUT, fake_rendered(rollout, ["Role/prod/reader added"]))
    assert (
        "### ⚠ Security-sensitive\n\n- Role/prod/reader added\n\n"
        "It needs 1 extra approval(s) from erin." in body
    )


def test_without_extra_approvals_the_warning_names_only_the_reasons() -> None:
    section = texts.security_section(ApprovalPolicy(required=1), ["ClusterRole added"])
    assert section == ["### ⚠ Security-sensitive", "", "- ClusterRole added", "", "", ""]


def test_the_revert_body_says_what_it_rolls_back_and_why() -> None:
    body = texts.revert_body(rollout_of(prod()), ROLLOUT, "b" * 40, 7, "verification failed: 503")

    assert body.startswith(
        "Rolls **web** `ffffffffffff` back in **prod**: the manifests return to what they were "
        "before `bbbbbbbbbbbb` (GitOps PR #7)"
    )
    assert "\n\nWhy: verification failed: 503\n\n" in body
    assert body.endswith(f"Baton-Rollout: {ROLLOUT}")


def test_template_changes_and_unstable_fields_come_before_the_rendered_diff() -> None:
    rollout = rollout_of(prod())
    rendered = fake_rendered(rollout).model_copy(
        update={
            "template_diff_markdown": "sample-app 0.1.0-ga → sample-app 0.1.0-gb: 1 file(s)",
            "unstable": ["Secret/prod/web: data.password"],
        }
    )

    body = texts.deploy_body(rollout, ROLLOUT, rendered)

    assert (
        "### Fields that differ between two renders of the same inputs\n\n"
        "Random values or timestamps in the templates. They keep the value prod runs, so they "
        "change nothing here and count as no change:\n\n- Secret/prod/web: data.password\n\n"
        "### Template changes\n\nsample-app 0.1.0-ga → sample-app 0.1.0-gb: 1 file(s)\n\n"
        "### Rendered manifests\n\nchanged: Deployment/prod/web"
    ) in body


def test_a_render_without_template_record_has_no_template_section() -> None:
    rollout = rollout_of(prod())
    body = texts.deploy_body(rollout, ROLLOUT, fake_rendered(rollout))
    assert "### Template changes" not in body and "differ between two renders" not in body
