"""Automatic rollback on the real stack: releases whose `/version` check fails in staging.

The stack promotes dev → staging → prod. dev checks only that the app answers; staging checks that
`/version` reports the change's commit; prod requires approvals. The tests tell one story, in
order. A first change whose image reports the wrong commit fails staging's verification on the
app's first deploy there: Baton replaces staging's manifests with a placeholder without objects,
the local cluster removes the app's container, and the change fails without reaching prod. A good
change, which fixes that packaging slip, is then deployed to dev and staging (and aborted at prod's
approval gate), so staging has a previous version. A second change with the same slip fails
staging's verification: Baton reverts staging's GitOps change through a revert PR, the previous
version serves again, the change fails with that reason and never reaches prod.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from baton.gitops import placeholder_manifests
from baton.local.cluster import container_name, stack_id
from baton.temporal import rollout_id
from cli.demo import AUTHOR
from tests.e2e.stack import E2EStack, running_stack, version
from workflows.rollout import EnvironmentRollout

pytestmark = pytest.mark.docker

STAGING_VERIFY_S = 15
STAGING_MANIFESTS = "rendered/staging/sample-app/manifests.yaml"
WRONG_COMMIT = "ENV APP_COMMIT=unreleased\n"


def two_step_verification(config: dict) -> None:
    """dev: any 200 from /version; staging: the commit, quickly; prod: approvals, untouched."""
    envs = {env["name"]: env for env in config["environments"]}
    envs["dev"]["verify"].pop("expected_body")
    envs["staging"]["approvals"] = {"required": 0}
    envs["staging"]["verify"]["timeout_s"] = STAGING_VERIFY_S


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, base_image: str, docker_client
) -> Iterator[E2EStack]:
    with running_stack(
        tmp_path_factory.mktemp("baton"), base_image, two_step_verification
    ) as stack:
        yield stack


def report_a_wrong_commit(work: Path) -> None:
    """A packaging slip: the image overrides the commit it was built from."""
    dockerfile = work / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + WRONG_COMMIT)


def report_the_build_commit(work: Path) -> None:
    """The fix of that slip (nothing to fix unless an earlier release made it)."""
    dockerfile = work / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace(WRONG_COMMIT, ""))


def gitops_file(stack: E2EStack, path: str) -> str | None:
    """`path` on the GitOps repository's main branch; None when it is not there."""
    repo = stack.forge().repo_path("gitops")
    shown = subprocess.run(
        ["git", f"--git-dir={repo}", "show", f"main:{path}"],
        check=False,
        capture_output=True,
        text=True,
    )
    return shown.stdout if shown.returncode == 0 else None


def test_failed_first_deploy_to_staging_is_removed(
    stack: E2EStack, docker_client: docker.DockerClient
) -> None:
    staging = stack.config.environment("staging").verify.url
    assert gitops_file(stack, STAGING_MANIFESTS) is None, "runs first: staging never ran the app"

    bad, bad_commit = stack.release("e2e-first-bad", edit=report_a_wrong_commit)
    detail = stack.wait(bad, lambda d: d.change.state in ("completed", "failed"), timeout=600)

    # The change failed in staging and says that staging was rolled back by removing the app.
    change = detail.change
    assert change.state == "failed", change.reason
    assert [r.environment for r in change.rollouts] == ["dev", "staging"]
    rollback = change.rollouts[-1].rollback
    assert rollback.outcome == "rolled back" and rollback.removed, rollback
    assert change.reason.startswith("staging: failed: verification failed: "), change.reason
    assert change.reason.endswith(
        "; rolled back: sample-app removed from staging (its first deploy there; "
        f"GitOps PR #{rollback.revert_pr.number}) (prod not started)"
    ), change.reason

    # The GitOps repository shows the merged revert: staging's manifests are the placeholder.
    prs = stack.forge().list_pull_requests("gitops", state="merged")
    (revert,) = [
        p for p in prs if p.head_branch == f"baton/sample-app/staging/{bad_commit[:12]}-revert"
    ]
    assert revert.number == rollback.revert_pr.number
    placeholder = gitops_file(stack, STAGING_MANIFESTS)
    assert placeholder == placeholder_manifests("sample-app", "staging", bad_commit)

    # Nothing serves in staging any more; prod was never touched.
    home = stack_id(stack.settings.home)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container_name(home, "staging", "sample-app"))
    with pytest.raises(httpx.ConnectError):
        httpx.get(staging, timeout=5)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container_name(home, "prod", "sample-app"))
    all_prs = stack.forge().list_pull_requests("gitops")
    assert not [p for p in all_prs if p.head_branch.startswith("baton/sample-app/prod/")]

    # The rollback verified that the failed version no longer answers.
    status = stack.run(
        lambda client: client.get_workflow_handle(
            rollout_id("sample-app", "staging", bad_commit)
        ).query(EnvironmentRollout.status)
    )
    stages = {s.name: s for s in status.timeline if s.name != "note"}
    assert stages["verify"].outcome == "failed"
    for stage in ("rollback: revert PR", "rollback: merge", "rollback: sync", "rollback: verify"):
        assert stages[stage].outcome == "succeeded", status.timeline
    assert "ConnectError" in stages["rollback: verify"].detail


def test_failed_staging_verification_is_rolled_back(stack: E2EStack) -> None:
    staging = stack.config.environment("staging").verify.url

    good, good_commit = stack.release("e2e-good", edit=report_the_build_commit)
    detail = stack.wait(
        good,
        lambda d: (
            d.rollout is not None
            and d.rollout.environment == "prod"
            and d.rollout.gate is not None
            and d.rollout.gate.kind == "approval"
        ),
    )
    good_digest = detail.change.artifact.image_digest
    assert version(staging)["commit"] == good_commit
    stopped = stack.baton("abort", good, "--reason", "stop before prod", user=AUTHOR)
    assert stopped.returncode == 0, stopped.stderr
    stack.wait(good, lambda d: d.change.state == "aborted")

    bad, bad_commit = stack.release("e2e-bad", edit=report_a_wrong_commit)
    detail = stack.wait(bad, lambda d: d.change.state in ("completed", "failed"), timeout=600)

    # The change failed in staging, says why, and that staging was rolled back.
    change = detail.change
    assert change.state == "failed", change.reason
    assert change.reason.startswith("staging: failed: verification failed: "), change.reason
    assert f"containing {bad_commit!r}" in change.reason
    assert '"commit": "unreleased"' in change.reason
    assert f"; rolled back to {good_commit[:12]} (GitOps PR #" in change.reason
    assert [r.environment for r in change.rollouts] == ["dev", "staging"]
    rollback = change.rollouts[-1].rollback
    assert rollback.outcome == "rolled back" and rollback.previous_commit == good_commit

    # The GitOps repository shows the merged revert, and staging's manifests are the good ones.
    prs = stack.forge().list_pull_requests("gitops", state="merged")
    (revert,) = [
        p for p in prs if p.head_branch == f"baton/sample-app/staging/{bad_commit[:12]}-revert"
    ]
    assert revert.number == rollback.revert_pr.number
    assert f"Baton-Rollout: {rollout_id('sample-app', 'staging', bad_commit)}" in revert.body
    assert "Why: verification failed" in revert.body
    manifests = gitops_file(stack, "rendered/staging/sample-app/manifests.yaml")
    assert good_digest in manifests and change.artifact.image_digest not in manifests

    # The previous version serves again; prod was never touched by the bad change.
    assert version(staging)["commit"] == good_commit
    all_prs = stack.forge().list_pull_requests("gitops")
    assert not [p for p in all_prs if p.head_branch == f"baton/sample-app/prod/{bad_commit[:12]}"]

    # The rollback is in the rollout's timeline.
    status = stack.run(
        lambda client: client.get_workflow_handle(
            rollout_id("sample-app", "staging", bad_commit)
        ).query(EnvironmentRollout.status)
    )
    stages = {s.name: s.outcome for s in status.timeline if s.name != "note"}
    assert stages["verify"] == "failed"
    for stage in ("rollback: revert PR", "rollback: merge", "rollback: sync", "rollback: verify"):
        assert stages[stage] == "succeeded", status.timeline
