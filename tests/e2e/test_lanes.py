"""One rollout at a time per environment, on the real stack: a newer change supersedes an older one
that still waits for prod's approvals; its GitOps PR is closed and its branch deleted."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from baton.temporal import WorkflowTypes, lane_id
from tests.conftest import eventually
from tests.e2e.stack import E2EStack, running_stack, version
from workflows.lane import EnvironmentLane

pytestmark = pytest.mark.docker


def no_approvals_before_prod(config: dict) -> None:
    for env in config["environments"]:
        if env["name"] != "prod":
            env["approvals"] = {"required": 0}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[E2EStack]:
    with running_stack(
        tmp_path_factory.mktemp("baton"), base_image, no_approvals_before_prod
    ) as stack:
        yield stack


def waiting_for_prod_approval(detail) -> bool:
    rollout = detail.rollout
    return (
        rollout is not None
        and rollout.environment == "prod"
        and rollout.gate is not None
        and rollout.gate.kind == "approval"
    )


def branch_exists(stack: E2EStack, repo: str, branch: str) -> bool:
    git_dir = stack.forge().repo_path(repo)
    shown = subprocess.run(
        ["git", f"--git-dir={git_dir}", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        capture_output=True,
        check=False,
    )
    return shown.returncode == 0


def closed_in_visibility(stack: E2EStack, *change_ids: str) -> None:
    """Wait until visibility, which `baton metrics` reads, lists the changes as completed: it
    records a workflow's close a moment after the workflow returns."""

    async def listed(client) -> set[str]:
        query = f"WorkflowType = '{WorkflowTypes.CHANGE}' AND ExecutionStatus = 'Completed'"
        return {execution.id async for execution in client.list_workflows(query)}

    eventually(
        lambda: stack.run(listed),
        lambda ids: set(change_ids) <= ids,
        what=f"visibility to list {', '.join(change_ids)} as completed",
    )


def test_newer_change_supersedes_one_waiting_for_prod_approval(stack: E2EStack) -> None:
    older, older_commit = stack.release("e2e-lane-older")
    stack.wait(older, waiting_for_prod_approval, timeout=600)
    older_branch = f"baton/sample-app/prod/{older_commit[:12]}"
    assert branch_exists(stack, "gitops", older_branch)

    before_newer = time.monotonic()
    newer, newer_commit = stack.release("e2e-lane-newer")
    detail = stack.wait(newer, waiting_for_prod_approval, timeout=600)

    # The older change stopped in prod: superseded, its GitOps PR closed, its branch gone. It
    # released the lane before it recorded that, so the newer change may be there first.
    older_status = stack.wait(older, lambda d: d.change.state == "superseded").change
    assert older_status.reason == f"prod: superseded by {newer}"
    (older_pr,) = [
        p for p in stack.forge().list_pull_requests("gitops") if p.head_branch == older_branch
    ]
    assert older_pr.state == "closed"
    assert not branch_exists(stack, "gitops", older_branch)
    assert [r.outcome for r in older_status.rollouts] == ["deployed", "deployed", "superseded"]

    # The lane holds the newer change; it waits for prod's approvals and then deploys.
    lane = stack.run(
        lambda client: client.get_workflow_handle(lane_id("sample-app", "prod")).query(
            EnvironmentLane.status
        )
    )
    assert lane.holder.change_id == newer and lane.queue == []
    assert detail.rollout.gate.waiting_on == ["carol", "dave", "erin"]
    for approver in ("carol", "dave"):
        approved = stack.baton("approve", newer, "--env", "prod", user=approver)
        assert approved.returncode == 0, approved.stderr
    done = stack.wait(newer, lambda d: d.change.state in ("completed", "failed"), timeout=300)
    assert done.change.state == "completed", done.change.reason
    assert version(stack.config.environment("prod").verify.url)["commit"] == newer_commit

    # Delivery metrics count the one prod deployment; the superseded change deployed nothing.
    closed_in_visibility(stack, older, newer)
    since_newer = time.monotonic() - before_newer
    shown = stack.baton("metrics", "--json")
    assert shown.returncode == 0, shown.stderr
    metrics = json.loads(shown.stdout)
    assert (metrics["environment"], metrics["deployments"], metrics["failed"]) == ("prod", 1, 0)
    assert metrics["change_failure_rate"] == 0.0
    lead = metrics["lead_time_from_merge"]
    assert lead["count"] == 1 and 0 < lead["median_s"] < since_newer  # merged, then deployed
    staging = json.loads(stack.baton("metrics", "--env", "staging", "--json").stdout)
    assert staging["deployments"] == 2
    unknown = stack.baton("metrics", "--env", "qa")
    assert unknown.returncode != 0
    assert unknown.stderr.strip().splitlines() == [
        "error: no environment 'qa' in the configuration: choose one of dev, staging, prod"
    ]
