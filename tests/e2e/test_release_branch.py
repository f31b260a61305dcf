"""On the embedded stack: only pull requests into the app's release branch become changes."""

from __future__ import annotations

from pathlib import Path

from baton.temporal import push_change_id
from cli.demo import AUTHOR, push_visible_change
from tests.conftest import git
from tests.e2e.stack import E2EStack, version
from tests.e2e.test_change_flow import gate_is, push_more


def test_a_stacked_pull_request_into_a_feature_branch_starts_nothing(
    baton_stack: E2EStack, tmp_path: Path
) -> None:
    """Case 04 on the local forge: feature-b into feature-a, merged there, is no change."""
    alice = baton_stack.forge(AUTHOR)
    feature_a = push_visible_change(alice, "sample-app", "stack-a")
    work = tmp_path / "sample-app"
    git(tmp_path, "clone", "-q", "-b", feature_a, alice.clone_url("sample-app"), str(work))
    (work / "NOTES.md").write_text("stacked on feature-a\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "Notes")
    git(work, "push", "-q", "origin", f"HEAD:refs/heads/{feature_a}-b")
    pr = alice.open_pull_request("sample-app", f"{feature_a}-b", feature_a, "Stacked", "", AUTHOR)
    baton_stack.forge("bob").merge_pull_request("sample-app", pr.number, pr.head_sha)

    deliveries = [d for d in alice.list_deliveries() if d.event == "pull_request"][-2:]
    assert [(d.action, d.status_code) for d in deliveries] == [("opened", 202), ("closed", 202)]
    assert baton_stack.detail(f"change/sample-app/{pr.number}") is None


def test_a_direct_push_to_main_is_built_and_deployed_to_every_environment(
    baton_stack: E2EStack,
) -> None:
    """Issue 12: a commit pushed to the release branch without a pull request gets CI and CD."""
    stack = baton_stack
    alice = stack.forge(AUTHOR)
    sha = push_more(alice, "main", lambda work: (work / "DIRECT.md").write_text("pushed\n"))
    change = push_change_id("sample-app", sha)

    detail = stack.wait(change, gate_is("approval", "staging"))
    assert detail.change.pr_number is None
    assert detail.change.artifact is not None and detail.change.artifact.commit == sha
    assert stack.registry_digest("sample-app", sha) == detail.change.artifact.image_digest
    assert version(stack.config.environment("dev").verify.url)["commit"] == sha
    assert stack.baton("approve", change, "--env", "staging", user="carol").returncode == 0
    stack.wait(change, gate_is("approval", "prod"))
    for approver in ("carol", "dave"):
        assert stack.baton("approve", change, "--env", "prod", user=approver).returncode == 0
    detail = stack.wait(change, lambda d: d.change.state in ("completed", "failed", "superseded"))
    assert detail.change.state == "completed", detail.change.reason
    for env in ("dev", "staging", "prod"):
        assert version(stack.config.environment(env).verify.url)["commit"] == sha
