"""One change from PR to prod on the real stack: pipelines, artifact, GitOps PRs, approvals, sync."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from baton.batches import LONG_TESTS_CONTEXT
from cli.client import NO_CREDENTIAL
from cli.demo import AUTHOR, push_visible_change
from tests.conftest import eventually
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
    manifests = stack.logs.get(rendered.log_ref)
    assert f"{artifact.image}@{artifact.image_digest}" in manifests
    assert alice.list_commit_statuses("sample-app", merge)[0].state == "success"

    # dev needed no approval and serves the change.
    assert version(stack.config.environment("dev").verify.url)["commit"] == merge

    # staging: one approval, here a review on the GitOps PR, counted under the same policy.
    staging_pr = detail.rollout.gitops_pr
    stack.forge("carol").submit_review("gitops", staging_pr.number, "carol", "approved")
    detail = stack.wait(change, gate_is("approval", "prod"))
    staging = next(r for r in detail.change.rollouts if r.environment == "staging")
    assert [(a.user, a.source) for a in staging.approvals] == [("carol", "forge")]

    # A worker crash while prod waits for approval loses nothing: the restarted worker answers
    # (`up` does not wait for that) with the change still at prod's approval gate.
    baton_stack.kill("worker")
    assert baton_stack.stack.up() == ["worker"]
    stack.wait(change, gate_is("approval", "prod"))

    # prod: only authenticated approvers, two distinct ones, no self-approval, no strangers.
    anonymous = stack.baton("approve", change, "--env", "prod")
    assert anonymous.returncode == 2
    assert anonymous.stderr.strip().splitlines() == [f"error: {NO_CREDENTIAL}"]
    refused = stack.baton("approve", change, "--env", "prod", user=AUTHOR)
    assert refused.returncode == 3  # refused by policy (README: Exit codes)
    assert "forbids self-approval" in refused.stderr and "Traceback" not in refused.stderr
    stranger = stack.baton("approve", change, "--env", "prod", user="mallory")
    assert "mallory may not approve prod" in stranger.stderr
    assert stack.baton("approve", change, "--env", "prod", user="carol").returncode == 0
    twice = stack.baton("approve", change, "--env", "prod", user="carol")
    assert "carol has already approved prod" in twice.stderr

    shown = json.loads(stack.baton("changes", "show", change, "--json").stdout)
    gate = shown["rollout"]["gate"]
    assert gate["approved_by"] == ["carol"] and gate["waiting_on"] == ["dave", "erin"]
    carol = shown["rollout"]["approvals"][0]
    assert (carol["user"], carol["via"], carol["issuer"]) == ("carol", "token", "baton")
    assert carol["content_hash"] == shown["rollout"]["content_hash"] == gate["content_hash"]
    assert carol["head"] == shown["rollout"]["gitops_pr"]["head_sha"]

    assert stack.baton("approve", change, "--env", "prod", user="dave").returncode == 0
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
    all_prs = gitops.list_pull_requests("gitops")
    assert len([p for p in all_prs if p.head_branch.endswith(merge[:12])]) == 3
    deploy_commits = subprocess.run(
        ["git", "log", "--format=%s", "main"],
        cwd=gitops.repo_path("gitops"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len([c for c in deploy_commits if c.startswith(f"Deploy sample-app {merge[:12]}")]) == 3

    # The app's PR carries one Baton comment, edited along the way, that ends with every
    # environment deployed; `baton forge pr show` prints it.
    marker = f"<!-- baton:{change} -->"
    comments = eventually(
        lambda: [b for _, b in alice.list_comments("sample-app", pr.number) if marker in b],
        lambda found: len(found) == 1 and "**completed**" in found[0],
        what="Baton's comment on the app's PR to say completed",
    )
    assert all(f"| {env} | ✅ deployed |" in comments[0] for env in ("dev", "staging", "prod"))
    shown = stack.baton("forge", "pr", "show", "sample-app", str(pr.number), "--json").stdout
    assert [c["body"] for c in json.loads(shown)["comments"] if marker in c["body"]] == comments


def push_more(forge, branch: str, edit: Callable[[Path], None]) -> str:
    """Push one more commit, made by `edit(workdir)`, to `branch`; returns the new head."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "app"
        subprocess.run(
            ["git", "clone", "-q", "-b", branch, forge.clone_url("sample-app"), str(work)],
            check=True,
        )
        edit(work)
        identity = ["-c", "user.name=alice", "-c", "user.email=alice@example.invalid"]
        for args in (
            ["add", "-A"],
            ["commit", "-q", "-m", "More"],
            ["push", "-q", "origin", branch],
        ):
            subprocess.run(["git", *identity, *args], cwd=work, check=True)
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True, text=True
        ).stdout.strip()


def test_failing_lint_and_unit_test_fail_the_status_and_push_nothing(baton_stack: E2EStack) -> None:
    def break_things(work: Path) -> None:
        dockerfile = work / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text() + "\nRUN cd /tmp && echo broken\n")
        test = work / "tests" / "test_broken.py"
        test.write_text(
            "import unittest\n\n\nclass Broken(unittest.TestCase):\n"
            "    def test_fails(self):\n        self.assertEqual(1, 2)\n"
        )

    change, pr = baton_stack.open_pr("e2e-broken", edit=break_things)
    detail = baton_stack.wait(change, lambda d: d.change.state == "awaiting-merge")
    status = baton_stack.forge().list_commit_statuses("sample-app", pr.head_sha)
    (pr_status,) = [s for s in status if s.context == "baton/pr"]
    assert pr_status.state == "failure"
    assert "DL3003" in pr_status.description  # hadolint: use WORKDIR to switch to a directory
    assert "test" in detail.change.reason and "DL3003" in detail.change.reason
    validation = detail.change.timeline[-1]
    failed = {c.name for c in validation.checks if not c.passed}
    assert failed == {"test", "hadolint"}
    # The image builds beside the checks: cancelled when a check fails first, kept (passed) when
    # it was done by then; a PR pipeline never pushes it either way.
    assert "push" not in {c.name for c in validation.checks}
    assert baton_stack.registry_digest("sample-app", pr.head_sha) is None
    baton_stack.forge(AUTHOR).close_pull_request("sample-app", pr.number)
    closed = baton_stack.wait(change, lambda d: d.change.state == "closed")
    assert closed.change.reason == "pull request closed without merging"


HOLD = """\
import os
import time
import unittest

RELEASED = {released!r}


class Hold(unittest.TestCase):
    def test_waits_until_released(self) -> None:
        deadline = time.monotonic() + 600
        while not os.path.exists(RELEASED) and time.monotonic() < deadline:
            time.sleep(0.2)
"""


def test_new_head_cancels_validation_of_the_old_one(baton_stack: E2EStack, tmp_path: Path) -> None:
    # The first head's unit tests, and the long tests its PR pipeline starts beside them, run
    # until the test says so: its validation is still running when the next head arrives,
    # however fast or slow the machine. The next head drops them.
    released = tmp_path / "released"
    holds = [Path(tests) / "test_hold.py" for tests in ("tests", "tests_long")]

    def hold_validation(work: Path) -> None:
        for hold in holds:
            (work / hold).write_text(HOLD.format(released=str(released)))

    def drop_holds(work: Path) -> None:
        for hold in holds:
            (work / hold).unlink()

    change, pr = baton_stack.open_pr("e2e-first", edit=hold_validation)
    try:
        baton_stack.wait(change, lambda d: bool(d.change.timeline))
        alice = baton_stack.forge(AUTHOR)
        new_head = push_more(alice, pr.head_branch, drop_holds)
        detail = baton_stack.wait(change, lambda d: d.change.state == "awaiting-merge")
    finally:
        released.touch()  # ends the held test run, which the cancelled check leaves behind
    first, second = detail.change.timeline[:2]
    assert first.name == f"validate {pr.head_sha[:12]}" and first.outcome == "superseded"
    assert second.name == f"validate {new_head[:12]}" and second.outcome == "succeeded"
    # Its PR pipeline and its long tests each report the cancel (the long tests' run after its
    # own cancel, which the change does not wait for).
    eventually(
        lambda: baton_stack.forge().list_commit_statuses("sample-app", pr.head_sha),
        lambda statuses: (
            {s.context: s.state for s in statuses}
            == {"baton/pr": "error", LONG_TESTS_CONTEXT: "error"}
        ),
        what="the first head's statuses: its PR pipeline and long tests cancelled",
    )
    alice.close_pull_request("sample-app", pr.number)
    baton_stack.wait(change, lambda d: d.change.state == "closed")


def test_worker_killed_during_ci_build_finishes_once(baton_stack: E2EStack) -> None:
    change, pr = baton_stack.open_pr("e2e-crash")
    baton_stack.wait(change, lambda d: d.change.state == "awaiting-merge")
    merge = baton_stack.forge("bob").merge_pull_request("sample-app", pr.number, pr.head_sha)
    baton_stack.wait_for_activity(f"{change}/ci", "build_image")
    baton_stack.kill("worker")
    assert baton_stack.stack.up() == ["worker"]

    detail = baton_stack.wait(change, gate_is("approval", "staging"))
    artifact = detail.change.artifact
    assert baton_stack.registry_digest("sample-app", merge) == artifact.image_digest
    assert baton_stack.registry_tags("sample-app").count(merge) == 1
    contexts = [s.context for s in baton_stack.forge().list_commit_statuses("sample-app", merge)]
    assert contexts == ["baton/ci"]

    aborted = baton_stack.baton("abort", change, "--reason", "test over", user="alice")
    assert aborted.returncode == 0, aborted.stderr
    detail = baton_stack.wait(change, lambda d: d.change.state == "aborted")
    staging_pr = next(
        p
        for p in baton_stack.forge().list_pull_requests("gitops")
        if p.head_branch == f"baton/sample-app/staging/{merge[:12]}"
    )
    assert staging_pr.state == "closed"


def test_demo_runs_twice_and_every_environment_serves_the_new_commit(baton_stack: E2EStack) -> None:
    commits = []
    for _ in range(2):
        run = baton_stack.baton("demo", "--auto-approve", "--json")
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        summary = json.loads(run.stdout)
        assert summary["state"] == "completed"
        commits.append(summary["commit"])
        served = {r["environment"]: r["version"]["commit"] for r in summary["environments"]}
        assert served == {
            "dev": summary["commit"],
            "staging": summary["commit"],
            "prod": summary["commit"],
        }
    assert commits[0] != commits[1]
    merged = baton_stack.forge().list_pull_requests("gitops", state="merged")
    # As people watch it: every step of CI and every environment's sync and verify, none dropped.
    run = baton_stack.baton("demo", "--auto-approve")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = run.stdout.splitlines()
    for step in (
        "lint",
        "test",
        "long_test",
        "dockerfile",
        "templates",
        "image",
        "candidate",
        "rendered",
        "push",
    ):
        assert any(line.startswith(f"  ✔ {step} ") for line in lines), step
    for env in ("dev", "staging", "prod"):
        for stage in ("sync", "verify"):
            assert any(line.startswith(f"  {env}: ✔ {stage} ") for line in lines), (env, stage)
        assert any(line.startswith(f"  {env}: deployed: ") for line in lines), env
    for commit in commits:
        envs = sorted(
            p.head_branch.split("/")[2] for p in merged if p.head_branch.endswith(commit[:12])
        )
        assert envs == ["dev", "prod", "staging"]
