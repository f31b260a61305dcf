"""The local forge against real git and a real HTTP receiver standing in for Baton's API."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baton.config import MergeMethod
from baton.forges.base import (
    Forge,
    HeadChanged,
    NotMergeable,
    RequiredChecksNotPassing,
    RevisionNotFound,
)
from baton.local.forge import LocalForge, signature_256
from cli.forge import forge_app

SECRET = "local-forge-test-secret"
REPO = "sample-app"


class Receiver:
    """An HTTP server on 127.0.0.1 that records each webhook delivery's headers and raw body."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[Message, bytes]] = []
        deliveries = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                deliveries.append((self.headers, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/github"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, event: str, action: str | None = None) -> list[dict]:
        payloads = [json.loads(body) for h, body in self.deliveries if h["X-GitHub-Event"] == event]
        return [p for p in payloads if action is None or p.get("action") == action]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def forge(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> LocalForge:
    """A forge with one repository seeded from a directory; the push hook sees the same secret."""
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BATON_WEBHOOK_SECRET", SECRET)
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "app.txt").write_text("v1\n")
    forge = LocalForge(tmp_path / "forge", receiver.url, SECRET)
    forge.create_repo(REPO, from_dir=seed)
    return forge


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def push_change(forge: LocalForge, branch: str, path: str, content: str) -> str:
    """Commit `content` to `path` on `branch` in a clone and push it; return the new head."""
    work = forge.root.parent / "work"
    if not work.exists():
        git(forge.root.parent, "clone", "--quiet", forge.clone_url(REPO), str(work))
        git(work, "config", "user.name", "Alice")
        git(work, "config", "user.email", "alice@example.com")
    git(work, "fetch", "--quiet", "origin")
    start = f"origin/{branch}" if git(work, "ls-remote", "origin", branch) else "origin/main"
    git(work, "checkout", "--quiet", "-B", branch, start)
    (work / path).write_text(content)
    git(work, "add", path)
    git(work, "commit", "--quiet", "-m", f"change {path}")
    git(work, "push", "--quiet", "origin", branch)
    return git(work, "rev-parse", "HEAD")


def opened_pr(forge: LocalForge, branch: str = "feature") -> tuple[int, str]:
    sha = push_change(forge, branch, "app.txt", "v2\n")
    pr = forge.open_pull_request(REPO, branch, "main", "Bump to v2", "", "alice")
    return pr.number, sha


def test_signature_matches_github_test_vector() -> None:
    assert signature_256("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_local_forge_implements_the_forge_protocol(forge: LocalForge) -> None:
    assert isinstance(forge, Forge)


def test_opening_a_pull_request_sends_a_signed_github_webhook(
    forge: LocalForge, receiver: Receiver
) -> None:
    number, sha = opened_pr(forge)

    headers, body = next(
        (h, b) for h, b in receiver.deliveries if h["X-GitHub-Event"] == "pull_request"
    )
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
    assert headers["User-Agent"] == "GitHub-Hookshot/baton-local"
    assert headers["Content-Type"] == "application/json"
    assert len(headers["X-GitHub-Delivery"]) == 36
    payload = json.loads(body)
    assert payload["action"] == "opened"
    assert payload["repository"]["full_name"] == REPO
    assert payload["sender"]["login"] == "alice"
    pr = payload["pull_request"]
    assert (pr["number"], pr["state"], pr["merged"]) == (number, "open", False)
    assert (pr["head"]["ref"], pr["head"]["sha"]) == ("feature", sha)
    assert pr["base"]["ref"] == "main" and len(pr["base"]["sha"]) == 40
    assert pr["user"]["login"] == "alice"


def test_opening_again_for_the_same_head_returns_the_same_pull_request(
    forge: LocalForge, receiver: Receiver
) -> None:
    number, _ = opened_pr(forge)

    again = forge.open_pull_request(REPO, "feature", "main", "Another title", "", "alice")

    assert again.number == number
    assert again.title == "Bump to v2"
    assert len(receiver.events("pull_request", "opened")) == 1


def test_concurrent_opens_for_one_head_make_one_pull_request(forge: LocalForge) -> None:
    push_change(forge, "feature", "app.txt", "v2\n")

    def open_pr(_: int) -> int:
        return forge.open_pull_request(REPO, "feature", "main", "Bump", "", "alice").number

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(open_pr, range(8))) == {1}


def test_pushing_to_the_head_branch_sends_push_and_synchronize(
    forge: LocalForge, receiver: Receiver
) -> None:
    number, first = opened_pr(forge)

    second = push_change(forge, "feature", "app.txt", "v3\n")

    push = receiver.events("push")[-1]
    assert (push["ref"], push["before"], push["after"]) == ("refs/heads/feature", first, second)
    assert push["commits"][0]["modified"] == ["app.txt"]
    assert push["head_commit"]["id"] == second
    (sync,) = receiver.events("pull_request", "synchronize")
    assert (sync["before"], sync["after"]) == (first, second)
    assert sync["pull_request"]["head"]["sha"] == second
    assert forge.get_pull_request(REPO, number).head_sha == second


def test_review_webhook_carries_lowercase_state_and_reviewed_commit(
    forge: LocalForge, receiver: Receiver
) -> None:
    number, sha = opened_pr(forge)

    forge.submit_review(REPO, number, "bob", "approved", "looks good")

    (event,) = receiver.events("pull_request_review", "submitted")
    review = event["review"]
    assert (review["state"], review["commit_id"], review["user"]["login"]) == (
        "approved",
        sha,
        "bob",
    )
    assert [(r.user, r.state) for r in forge.list_reviews(REPO, number)] == [("bob", "approved")]


def test_merge_makes_a_two_parent_merge_commit_on_main(
    forge: LocalForge, receiver: Receiver
) -> None:
    number, sha = opened_pr(forge)
    main_before = forge._branch_sha(REPO, "main")

    merged = forge.merge_pull_request(REPO, number, sha)

    bare = forge.repo_path(REPO)
    assert git(bare, "rev-parse", "main") == merged
    assert git(bare, "rev-list", "--parents", "-1", merged).split()[1:] == [main_before, sha]
    (closed,) = receiver.events("pull_request", "closed")
    assert closed["pull_request"]["merged"] is True
    assert closed["pull_request"]["merge_commit_sha"] == merged
    push = receiver.events("push")[-1]
    assert push["after"] == merged
    assert [(c["id"], c["distinct"]) for c in push["commits"]] == [(sha, False), (merged, True)]
    assert forge.get_pull_request(REPO, number).state == "merged"
    assert forge.merge_pull_request(REPO, number, sha) == merged


def test_fast_forward_moves_main_to_the_head(forge: LocalForge, receiver: Receiver) -> None:
    forge.merge_method = "fast-forward"
    number, sha = opened_pr(forge)

    assert forge.merge_pull_request(REPO, number, sha) == sha

    assert git(forge.repo_path(REPO), "rev-parse", "main") == sha
    (closed,) = receiver.events("pull_request", "closed")
    assert closed["pull_request"]["merge_commit_sha"] == sha


def test_fast_forward_is_refused_once_main_moved_ahead(forge: LocalForge) -> None:
    number, sha = opened_pr(forge)
    push_change(forge, "main", "other.txt", "moved\n")

    with pytest.raises(NotMergeable, match="cannot fast-forward 'main'.*update the branch"):
        forge.merge_pull_request(REPO, number, sha, method="fast-forward")
    assert forge.get_pull_request(REPO, number).state == "open"


def test_squash_makes_one_single_parent_commit_with_the_pull_requests_changes(
    forge: LocalForge, receiver: Receiver
) -> None:
    number, first = opened_pr(forge)
    head = push_change(forge, "feature", "notes.txt", "two commits\n")
    main_before = forge._branch_sha(REPO, "main")

    squashed = forge.merge_pull_request(REPO, number, head, method="squash")

    bare = forge.repo_path(REPO)
    assert git(bare, "rev-parse", "main") == squashed
    assert git(bare, "rev-list", "--parents", "-1", squashed).split()[1:] == [main_before]
    assert git(bare, "rev-parse", f"{squashed}^{{tree}}") == git(
        bare, "rev-parse", f"{head}^{{tree}}"
    )
    assert git(bare, "log", "-1", "--format=%s|%an", squashed) == "Bump to v2 (#1)|alice"
    assert forge.get_pull_request(REPO, number).merge_commit_sha == squashed
    (closed,) = receiver.events("pull_request", "closed")
    assert closed["pull_request"]["merge_commit_sha"] == squashed
    assert forge.merge_pull_request(REPO, number, head, method="squash") == squashed
    assert first != squashed


def test_rebase_replays_the_commits_on_main_keeping_their_authors(forge: LocalForge) -> None:
    number, first = opened_pr(forge)
    head = push_change(forge, "feature", "notes.txt", "two commits\n")
    moved = push_change(forge, "main", "other.txt", "main moved\n")

    rebased = forge.merge_pull_request(REPO, number, head, method="rebase")

    bare = forge.repo_path(REPO)
    assert git(bare, "rev-parse", "main") == rebased
    replayed = git(bare, "rev-list", "--reverse", f"{moved}..{rebased}").split()
    assert len(replayed) == 2 and head not in replayed and first not in replayed
    assert git(bare, "log", "-1", "--format=%an|%cn", rebased) == "Alice|Baton local forge"
    assert git(bare, "show", f"{rebased}:notes.txt") == "two commits"
    assert git(bare, "show", f"{rebased}:other.txt") == "main moved"
    assert forge.get_pull_request(REPO, number).merge_commit_sha == rebased
    assert git(bare, "worktree", "list").count("\n") == 0  # the temporary work tree is gone


def test_rebase_with_conflicts_is_not_mergeable_and_leaves_main_alone(forge: LocalForge) -> None:
    number, sha = opened_pr(forge)
    moved = push_change(forge, "main", "app.txt", "v9\n")

    with pytest.raises(NotMergeable, match="conflicts while rebasing"):
        forge.merge_pull_request(REPO, number, sha, method="rebase")
    assert forge._branch_sha(REPO, "main") == moved


def test_protected_branch_refuses_a_pull_request_whose_required_check_is_red(
    forge: LocalForge,
) -> None:
    forge.protect_branch(REPO, "main", ["baton/pr"])
    number, sha = opened_pr(forge)
    forge.set_commit_status(REPO, sha, "baton/pr", "failure", "lint failed")

    with pytest.raises(RequiredChecksNotPassing, match="baton/pr is failure") as refused:
        forge.merge_pull_request(REPO, number, sha)
    assert "--admin --reason" in str(refused.value)
    assert forge.get_pull_request(REPO, number).state == "open"

    forge.set_commit_status(REPO, sha, "baton/pr", "success", "5 step(s) passed")
    assert forge.merge_pull_request(REPO, number, sha) == forge._branch_sha(REPO, "main")
    assert forge.list_overrides(REPO, number) == []


def test_admin_override_merges_past_protection_and_is_recorded(forge: LocalForge) -> None:
    forge.protect_branch(REPO, "main", ["baton/pr"])
    number, sha = opened_pr(forge)
    forge.user = "carol"

    merged = forge.merge_pull_request(REPO, number, sha, admin_reason="hotfix for incident 42")

    assert forge._branch_sha(REPO, "main") == merged
    (override,) = forge.list_overrides(REPO, number)
    assert (override.user, override.reason, override.head_sha) == (
        "carol",
        "hotfix for incident 42",
        sha,
    )
    assert override.failing == {"baton/pr": "missing"}
    assert forge.list_comments(REPO, number)[-1][1].startswith("Merged by carol as an admin")


def test_merge_with_a_stale_head_raises_head_changed(forge: LocalForge) -> None:
    number, stale = opened_pr(forge)
    push_change(forge, "feature", "app.txt", "v3\n")

    with pytest.raises(HeadChanged):
        forge.merge_pull_request(REPO, number, stale)
    assert forge.get_pull_request(REPO, number).state == "open"


def test_conflicting_pull_request_is_not_mergeable(forge: LocalForge) -> None:
    number, sha = opened_pr(forge)
    push_change(forge, "other", "app.txt", "v9\n")
    other = forge.open_pull_request(REPO, "other", "main", "Conflicting bump", "", "bob")
    forge.merge_pull_request(REPO, other.number, other.head_sha)

    with pytest.raises(NotMergeable, match="app.txt"):
        forge.merge_pull_request(REPO, number, sha)


def test_deleting_the_head_branch_closes_its_pull_request(
    forge: LocalForge, receiver: Receiver
) -> None:
    number, _ = opened_pr(forge)

    forge.delete_branch(REPO, "feature")
    forge.delete_branch(REPO, "feature")

    assert forge.get_pull_request(REPO, number).state == "closed"
    assert receiver.events("push")[-1]["deleted"] is True
    assert receiver.events("pull_request", "closed")[0]["pull_request"]["merged"] is False


def test_same_status_context_twice_keeps_only_the_latest(forge: LocalForge) -> None:
    _, sha = opened_pr(forge)

    forge.set_commit_status(REPO, sha, "baton/pr", "pending", "running checks")
    forge.set_commit_status(REPO, sha, "baton/pr", "success", "all checks passed")

    (status,) = forge.list_commit_statuses(REPO, sha)
    assert (status.state, status.description) == ("success", "all checks passed")


def test_webhooks_are_recorded_when_the_receiver_is_down_and_redelivered_later(
    forge: LocalForge, receiver: Receiver
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}/webhooks/github"
    offline = LocalForge(forge.root, down, SECRET)

    number, _ = opened_pr(offline)  # the push hook reads the down URL from forge.json too

    failed = offline.list_deliveries(failed_only=True)
    assert [d.event for d in failed] == ["push", "pull_request"]
    assert all(d.error for d in failed)
    back = LocalForge(forge.root, receiver.url, SECRET)
    receiver.deliveries.clear()
    assert back.redeliver_failed() == 2
    assert receiver.events("pull_request", "opened")[0]["number"] == number
    assert [h["X-GitHub-Delivery"] for h, _ in receiver.deliveries] == [d.id for d in failed]
    assert back.list_deliveries(failed_only=True) == []


def test_cli_reports_an_unknown_pull_request_in_one_line_with_exit_4(
    forge: LocalForge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_HOME", str(forge.root.parent))  # Settings().forge_dir is HOME/forge

    result = CliRunner().invoke(forge_app, ["pr", "show", REPO, "42"])

    assert result.exit_code == 4  # not found (README: Exit codes)
    assert result.output.strip().splitlines() == [
        "error: pull request sample-app#42 not found: check the repository and number"
    ]


def test_cli_refuses_merging_a_red_pull_request_and_says_how_to_override(
    forge: LocalForge, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli import main

    monkeypatch.setenv("BATON_HOME", str(forge.root.parent))

    def baton(*args: str) -> int:
        monkeypatch.setattr("sys.argv", ["baton", *args])
        return main.run()

    assert baton("forge", "repo", "protect", REPO, "--require", "baton/pr") == 0
    assert capsys.readouterr().out.strip() == f"{REPO}:main requires baton/pr"
    number, sha = opened_pr(forge)
    forge.set_commit_status(REPO, sha, "baton/pr", "failure", "tests failed")

    assert baton("forge", "pr", "merge", REPO, str(number), "--as", "bob") == 3  # refused
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"error: pull request {REPO}#{number} cannot be merged: required check(s) not green "
        "(baton/pr is failure); wait for them to pass or push a fix, or override as an admin: "
        f"baton forge pr merge {REPO} {number} --as USER --admin --reason TEXT"
    )
    assert forge.get_pull_request(REPO, number).state == "open"

    assert baton("forge", "pr", "merge", REPO, str(number), "--as", "bob", "--admin") == 2
    assert "--reason" in capsys.readouterr().err

    code = baton(
        "forge", "pr", "merge", REPO, str(number), "--as", "bob", "--admin", "--reason", "hotfix"
    )
    assert code == 0
    assert "admin override recorded: bob: hotfix" in capsys.readouterr().out
    assert forge.get_pull_request(REPO, number).state == "merged"
    assert baton("forge", "pr", "show", REPO, str(number)) == 0
    assert "admin override by bob (baton/pr was failure): hotfix" in capsys.readouterr().out


def test_comparing_two_heads_names_the_commits_between_and_their_accounts(
    forge: LocalForge,
) -> None:
    before = forge.branch_head(REPO, "main").sha
    first = push_change(forge, "main", "first.txt", "1\n")  # by Alice <alice@example.com>
    work = forge.root.parent / "work"
    (work / "second.txt").write_text("2\n")
    git(work, "add", "second.txt")
    dave = ["-c", "user.name=Dave", "-c", "user.email=dave@baton.local"]
    git(work, *dave, "commit", "--quiet", "-m", "second")
    git(work, "push", "--quiet", "origin", "main")
    second = git(work, "rev-parse", "HEAD")

    commits = forge.compare_commits(REPO, before, second)

    assert [(c.sha, c.email, c.login) for c in commits] == [
        (first, "alice@example.com", None),
        (second, "dave@baton.local", "dave"),  # an email at the forge's domain is its account's
    ]
    assert forge.get_commit(REPO, second) == commits[-1]
    gone = "d" * 40
    with pytest.raises(RevisionNotFound, match=f"commit {gone[:12]} not found in 'sample-app'"):
        forge.compare_commits(REPO, gone, second)
    with pytest.raises(RevisionNotFound):
        forge.get_commit(REPO, gone)


@pytest.mark.parametrize("method", ["merge", "squash", "rebase", "fast-forward"])
def test_a_merged_pull_request_still_lists_its_own_commits_and_authors(
    forge: LocalForge, method: MergeMethod
) -> None:
    push_change(forge, "feature", "first.txt", "1\n")
    number, head = opened_pr(forge)  # a second commit on the same branch
    before = forge.list_pull_request_commits(REPO, number)
    forge.merge_pull_request(REPO, number, head, method=method)

    after = forge.list_pull_request_commits(REPO, number)

    assert after == before and [c.sha for c in after][-1] == head and len(after) == 2
    assert {(c.email, c.login) for c in after} == {("alice@example.com", None)}


def test_the_change_comment_is_edited_in_place_and_shown_by_pr_show(
    forge: LocalForge, monkeypatch: pytest.MonkeyPatch
) -> None:
    number, _ = opened_pr(forge)
    marker = "<!-- baton:change/sample-app/1 -->"
    forge.comment(REPO, number, "a reviewer's word")
    first = forge.upsert_comment(REPO, number, marker, "**validating**")
    assert forge.upsert_comment(REPO, number, marker, "**completed**: deployed to dev") == first
    monkeypatch.setenv("BATON_HOME", str(forge.root.parent))

    shown = CliRunner().invoke(forge_app, ["pr", "show", REPO, str(number), "--json"])

    comments = json.loads(shown.output)["comments"]
    assert [c["body"] for c in comments] == [
        "a reviewer's word",
        f"**completed**: deployed to dev\n\n{marker}",
    ]


def test_pr_show_keeps_long_links_whole_when_its_output_is_not_a_terminal(
    forge: LocalForge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A comment's links are one line each in `pr show` piped or captured: wrapped at 80 columns
    they broke mid-URL and could not be copied."""
    number, _ = opened_pr(forge)
    link = "http://127.0.0.1:8233/namespaces/default/workflows/" + "change%2Fsample-app%2F1" * 3
    forge.upsert_comment(REPO, number, "<!-- baton:x -->", f"Temporal UI: [change]({link})")
    monkeypatch.setenv("BATON_HOME", str(forge.root.parent))

    shown = CliRunner().invoke(forge_app, ["pr", "show", REPO, str(number)])

    assert shown.exit_code == 0, shown.output
    assert any(
        line.endswith(f"Temporal UI: [change]({link})") for line in shown.output.splitlines()
    )
