"""One change from PR to prod on the real stack: pipelines, artifact, GitOps PRs, approvals, sync."""

from __future__ import annotations

import json

import pytest

from baton.demo import AUTHOR, push_visible_change
from baton.logs import LogStore
from tests.e2e.stack import E2EStack, version

pytestmark = pytest.mark.docker


def gate_is(kind: str, env: str | None = None):
    def done(detail) -> bool:
        gate = detail.rollout.gate if detail.rollout else detail.change.gate
        return gate is not None and gate.kind == kind and (env is None or gate.environment == env)

    return done


def test_change_goes_from_pr_to_prod_under_policy(baton_stack: E2EStack) -> None:
    stack = baton_stack
    alice = stack.forge(AUTHOR)
    branch = push_visible_change(alice, "sample-app", "e2e-policy")
    pr = alice.open_pull_request("sample-app", branch, "main", "Greet", "", AUTHOR)
    change = f"change/sample-app/{pr.number}"

    # PR pipeline: green commit status, image built but not pushed.
    detail = stack.wait(change, lambda d: d.change.state == "awaiting-merge")
    assert detail.change.reason is None, detail.change.reason
    statuses = {s.context: s for s in alice.list_commit_statuses("sample-app", pr.head_sha)}
    assert statuses["baton/pr"].state == "success"
    assert stack.registry_digest("sample-app", pr.head_sha) is None

    # Merge: CI pushes <image>:<sha>; the artifact's digest is the registry's.
    merge = stack.forge("bob").merge_pull_request("sample-app", pr.number, pr.head_sha)
    detail = stack.wait(change, gate_is("approval", "staging"))
    artifact = detail.change.artifact
    assert artifact.commit == merge
    assert stack.registry_digest("sample-app", merge) == artifact.image_digest
    ci = next(s for s in detail.change.timeline if s.name.startswith("integrate"))
    rendered = next(c for c in ci.checks if c.name == "rendered")
    manifests = LogStore(stack.settings.home / "logs" / "steps").get(rendered.log_ref)
    assert f"{artifact.image}@{artifact.image_digest}" in manifests
    assert alice.list_commit_statuses("sample-app", merge)[0].state == "success"

    # dev needed no approval and serves the change.
    assert version(stack.config.environment("dev").verify.url)["commit"] == merge

    # staging: one approval.
    ok = stack.baton("approve", change, "--env", "staging", "--as", "carol")
    assert ok.returncode == 0, ok.stderr
    stack.wait(change, gate_is("approval", "prod"))

    # prod: two distinct approvers, no self-approval, no strangers.
    refused = stack.baton("approve", change, "--env", "prod", "--as", AUTHOR)
    assert refused.returncode == 2
    assert "forbids self-approval" in refused.stderr and "Traceback" not in refused.stderr
    stranger = stack.baton("approve", change, "--env", "prod", "--as", "mallory")
    assert "mallory may not approve prod" in stranger.stderr
    assert stack.baton("approve", change, "--env", "prod", "--as", "carol").returncode == 0
    twice = stack.baton("approve", change, "--env", "prod", "--as", "carol")
    assert "carol has already approved prod" in twice.stderr

    shown = json.loads(stack.baton("changes", "show", change, "--json").stdout)
    gate = shown["rollout"]["gate"]
    assert gate["approved_by"] == ["carol"] and gate["waiting_on"] == ["dave", "erin"]

    assert stack.baton("approve", change, "--env", "prod", "--as", "dave").returncode == 0
    detail = stack.wait(change, lambda d: d.change.state in ("completed", "failed"))
    assert detail.change.state == "completed", detail.change.reason

    for env in ("dev", "staging", "prod"):
        assert version(stack.config.environment(env).verify.url)["commit"] == merge
    gitops = stack.forge()
    merged = gitops.list_pull_requests("gitops", state="merged")
    mine = [p for p in merged if p.head_branch.endswith(merge[:12])]
    assert sorted(p.head_branch.split("/")[2] for p in mine) == ["dev", "prod", "staging"]
    dev_pr = next(p for p in mine if "/dev/" in p.head_branch)
    assert "Deployment" in dev_pr.body and artifact.image_digest in dev_pr.body
