"""Two apps (the Helm sample and the Kustomize sample) in one GitOps repository, on the embedded
stack: merged within a second of each other, both reach dev, and the GitOps repository's
first-parent history holds each rollout's commit once. The local forge merges GitOps PRs by
fast-forward, so the rollout merging second finds the base moved and must rebase its branch."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from cli.demo import AUTHOR, push_visible_change
from tests.e2e.stack import KUSTOMIZE_APP, E2EStack, only_dev, running_stack, version

pytestmark = pytest.mark.docker

APPS = ("sample-app", KUSTOMIZE_APP)


def dev_with_one_approval(config: dict) -> None:
    """Only dev, where one approval holds both rollouts until their PRs are open on one base."""
    config["forge"]["merge"] = "fast-forward"
    only_dev(config)["approvals"] = {"required": 1, "approvers": ["carol"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[E2EStack]:
    with running_stack(tmp_path_factory.mktemp("baton"), base_image, dev_with_one_approval) as s:
        yield s


def first_parent_subjects(stack: E2EStack) -> list[str]:
    git_dir = stack.forge().repo_path("gitops")
    log = ["git", f"--git-dir={git_dir}", "log", "--first-parent", "--format=%s", "main"]
    return subprocess.run(log, check=True, capture_output=True, text=True).stdout.splitlines()


def waiting_for_dev_approval(detail) -> bool:
    rollout = detail.rollout
    return rollout is not None and rollout.gate is not None and rollout.gate.kind == "approval"


def test_two_apps_merged_at_once_both_reach_dev_with_one_commit_each(stack: E2EStack) -> None:
    alice, bob = stack.forge(AUTHOR), stack.forge("bob")
    prs = {}
    for app in APPS:
        branch = push_visible_change(alice, app, f"e2e-shared-{app}")
        prs[app] = alice.open_pull_request(app, branch, "main", f"shared {app}", "", AUTHOR)
    changes = {app: f"change/{app}/{pr.number}" for app, pr in prs.items()}
    for change in changes.values():
        stack.wait(change, lambda d: bool(d.change.timeline))
    # Merged within a second of each other.
    commits = {app: bob.merge_pull_request(app, pr.number, pr.head_sha) for app, pr in prs.items()}

    # Both GitOps PRs are opened on the same base; approved, their merges race for it.
    for change in changes.values():
        stack.wait(change, waiting_for_dev_approval, timeout=600)
    for change in changes.values():
        approved = stack.baton("approve", change, "--env", "dev", user="carol")
        assert approved.returncode == 0, approved.stdout + approved.stderr
    for change in changes.values():
        waited = stack.baton(
            "changes", "wait", change, "--until", "deployed:dev", "--timeout", "5m"
        )
        assert waited.returncode == 0, waited.stdout + waited.stderr

    assert version(f"http://127.0.0.1:{stack.ports['dev']}/version")["commit"] == commits[APPS[0]]
    kustomize_url = f"http://127.0.0.1:{stack.ports[f'{KUSTOMIZE_APP}/dev']}/version"
    assert version(kustomize_url)["commit"] == commits[KUSTOMIZE_APP]
    subjects = first_parent_subjects(stack)
    for app, commit in commits.items():
        assert subjects.count(f"Deploy {app} {commit[:12]} to dev") == 1, subjects
    # The one that merged second was moved onto the other's commit, not the base forced.
    rollouts = [stack.status(change).rollouts[0] for change in changes.values()]
    moved = [r for r in rollouts if r.gitops_pr is not None and r.revision != r.gitops_pr.head_sha]
    assert len(moved) == 1, rollouts
    assert len(subjects) == 3  # the seed, then one commit per rollout
