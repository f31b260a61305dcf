"""The GitHub, Gitea and Azure DevOps adapters against fake servers speaking each forge's API."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from baton.config import Credentials, ForgeConfig
from baton.forges import create_forge
from baton.forges.azure_devops import AzureDevOpsForge, vote_state
from baton.forges.base import (
    BranchHead,
    BranchNotFound,
    Deployments,
    Forge,
    HeadChanged,
    NotMergeable,
    PullRequestNotFound,
    RepositoryNotFound,
    RevisionNotFound,
)
from baton.forges.gitea import GiteaForge
from baton.forges.github import GitHubForge
from baton.forges.http import (
    ForgeUnavailable,
    PermissionDenied,
    RateLimited,
    TokenRejected,
    clip_body,
)
from baton.settings import Settings
from tests.fakes.forges import FAKES, FakeForge, FakeGitHub

TOKEN = "s3cret-token-for-baton"
REPOS = {"github": "acme/app", "gitea": "acme/app", "azure-devops": "shop/app"}
ADAPTERS = {"github": GitHubForge, "gitea": GiteaForge, "azure-devops": AzureDevOpsForge}
KINDS = list(FAKES)


@pytest.fixture(params=KINDS)
def fake(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeForge]:
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))  # read by the git hook of pushes
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "README.md").write_text("hello\n")
    (seed / "shared.txt").write_text("base\n")
    with FAKES[request.param](tmp_path / "forge", {TOKEN: "baton"}, page_size=2) as fake:
        fake.create_repo(REPOS[fake.kind], from_dir=seed)
        yield fake


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def adapter(fake: FakeForge, sleeps: Sleeps, token: str | None = TOKEN) -> Forge:
    return ADAPTERS[fake.kind](fake.url, token, token_env="FORGE_TOKEN", sleep=sleeps)


@pytest.fixture
def forge(fake: FakeForge, sleeps: Sleeps) -> Forge:
    return adapter(fake, sleeps)


def repo(fake: FakeForge) -> str:
    return REPOS[fake.kind]


def push(
    fake: FakeForge, forge: Forge, branch: str, files: dict[str, str], base: str = "main"
) -> str:
    """Push through the adapter's clone URL, as Baton's GitOps activities do; the new head."""
    return fake.push(repo(fake), branch, files, base, url=forge.clone_url(repo(fake)))


def test_create_forge_picks_the_adapter_of_the_configured_kind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FORGE_TOKEN", TOKEN)
    settings = Settings(home=tmp_path)
    for kind, cls in ADAPTERS.items():
        config = ForgeConfig(
            kind=kind, url="https://forge.invalid", credentials=Credentials(token_env="FORGE_TOKEN")
        )
        made = create_forge(config, settings)
        assert type(made) is cls and isinstance(made, Forge)


def test_opening_twice_for_one_head_returns_the_same_pull_request(
    fake: FakeForge, forge: Forge
) -> None:
    push(fake, forge, "feature", {"a.txt": "a\n"})
    first = forge.open_pull_request(repo(fake), "feature", "main", "Add a", "body", "ignored")
    again = forge.open_pull_request(repo(fake), "feature", "main", "Add a", "body", "ignored")
    assert again.number == first.number and first.state == "open"
    assert first.author == "baton"  # the token's user, whatever the caller passed
    assert forge.find_pull_request(repo(fake), "feature") == first
    assert forge.find_pull_request(repo(fake), "nothing-here") is None
    assert len(fake.store.list_pull_requests(repo(fake))) == 1


def test_find_follows_pages_of_open_pull_requests(fake: FakeForge, forge: Forge) -> None:
    push(fake, forge, "topic-0", {"0.txt": "x\n"})
    bare = fake.store.repo_path(repo(fake))
    for i in range(5):  # the fake serves two per page
        if i:
            subprocess.run(
                ["git", f"--git-dir={bare}", "branch", f"topic-{i}", "topic-0"], check=True
            )
        forge.open_pull_request(repo(fake), f"topic-{i}", "main", f"Topic {i}", "", "baton")
    found = forge.find_pull_request(repo(fake), "topic-4")
    assert found is not None and found.title == "Topic 4"


def test_open_pull_requests_lists_every_page_and_leaves_out_merged_and_closed(
    fake: FakeForge, forge: Forge
) -> None:
    """What the reconciler compares with the changes it runs."""
    head = push(fake, forge, "topic-0", {"0.txt": "x\n"})
    bare = fake.store.repo_path(repo(fake))
    for i in range(1, 5):  # the fake serves two per page
        subprocess.run(["git", f"--git-dir={bare}", "branch", f"topic-{i}", "topic-0"], check=True)
    prs = [
        forge.open_pull_request(repo(fake), f"topic-{i}", "main", f"Topic {i}", "", "baton")
        for i in range(5)
    ]
    forge.merge_pull_request(repo(fake), prs[0].number, head)
    forge.close_pull_request(repo(fake), prs[1].number)
    listed = forge.open_pull_requests(repo(fake))
    assert [pr.number for pr in listed] == [pr.number for pr in prs[2:]]
    assert {pr.state for pr in listed} == {"open"} and listed[0].head_sha == head
    owner = repo(fake).split("/")[0]
    with pytest.raises(RepositoryNotFound):
        forge.open_pull_requests(f"{owner}/missing")


def test_branch_head_follows_the_branch_and_names_a_missing_one(
    fake: FakeForge, forge: Forge
) -> None:
    main = fake._branches(repo(fake), "main")["main"]
    assert forge.branch_head(repo(fake)) == BranchHead(name="main", sha=main)  # the default
    moved = push(fake, forge, "main", {"b.txt": "b\n"})
    assert forge.branch_head(repo(fake), "main").sha == moved != main
    with pytest.raises(BranchNotFound, match="'nope'"):
        forge.branch_head(repo(fake), "nope")


def test_pull_request_opened_concurrently_is_found_instead_of_duplicated(
    fake: FakeForge, forge: Forge
) -> None:
    push(fake, forge, "race", {"r.txt": "r\n"})
    # Someone else opens it between Baton's lookup and its create call.
    original = forge.find_pull_request
    calls = []

    def late_lookup(repo_name: str, head: str):
        calls.append(head)
        if len(calls) == 1:
            fake.open_pull_request(repo_name, head, "main", "Theirs", "", "alice")
            return None
        return original(repo_name, head)

    forge.find_pull_request = late_lookup  # type: ignore[method-assign]
    pr = forge.open_pull_request(repo(fake), "race", "main", "Ours", "", "baton")
    assert pr.title == "Theirs" and len(fake.store.list_pull_requests(repo(fake))) == 1


def test_merge_at_the_approved_head_returns_the_merge_commit_once(
    fake: FakeForge, forge: Forge
) -> None:
    head = push(fake, forge, "feature", {"a.txt": "a\n"})
    pr = forge.open_pull_request(repo(fake), "feature", "main", "Add a", "", "baton")
    merge = forge.merge_pull_request(repo(fake), pr.number, head)
    main = fake._branches(repo(fake), "main")["main"]
    assert merge == main
    assert forge.merge_pull_request(repo(fake), pr.number, head) == merge  # idempotent
    merged = forge.get_pull_request(repo(fake), pr.number)
    assert merged.state == "merged" and merged.merge_commit_sha == merge


def test_the_pull_request_merged_as_a_commit_is_named_and_a_direct_push_has_none(
    fake: FakeForge, forge: Forge
) -> None:
    """What a pushed commit's change asks first: GitHub's commits/{sha}/pulls (which also lists
    a PR whose head the commit is), Gitea's commits/{sha}/pull, Azure DevOps' pull request query
    by lastMergeCommit."""
    head = push(fake, forge, "feature", {"a.txt": "a\n"})
    pr = forge.open_pull_request(repo(fake), "feature", "main", "Add a", "", "baton")
    assert forge.merged_pull_request(repo(fake), head) is None  # open: merged as nothing yet
    merge = forge.merge_pull_request(repo(fake), pr.number, head)
    assert forge.merged_pull_request(repo(fake), merge) == pr.number
    direct = push(fake, forge, "main", {"b.txt": "b\n"})
    assert forge.merged_pull_request(repo(fake), direct) is None


def test_merge_refuses_a_head_that_moved(fake: FakeForge, forge: Forge) -> None:
    old = push(fake, forge, "feature", {"a.txt": "a\n"})
    pr = forge.open_pull_request(repo(fake), "feature", "main", "Add a", "", "baton")
    new = push(fake, forge, "feature", {"b.txt": "b\n"}, base="feature")
    with pytest.raises(HeadChanged) as info:
        forge.merge_pull_request(repo(fake), pr.number, old)
    assert info.value.actual == new
    assert forge.get_pull_request(repo(fake), pr.number).state == "open"


def test_merge_lock_refusal_from_the_forge_is_head_changed(fake: FakeForge, forge: Forge) -> None:
    """The head moves between Baton's read and the forge's check: the forge's 409 decides."""
    old = push(fake, forge, "feature", {"a.txt": "a\n"})
    pr = forge.open_pull_request(repo(fake), "feature", "main", "Add a", "", "baton")
    reads = []
    original = fake.store.get_pull_request

    def read_then_push(repo_name: str, number: int):
        reads.append(number)
        answer = original(repo_name, number)
        if len(reads) == 1:
            push(fake, forge, "feature", {"b.txt": "b\n"}, base="feature")
        return answer

    fake.store.get_pull_request = read_then_push  # type: ignore[method-assign]
    with pytest.raises(HeadChanged):
        forge.merge_pull_request(repo(fake), pr.number, old)


def test_conflicting_pull_request_is_not_mergeable(fake: FakeForge, forge: Forge) -> None:
    head = push(fake, forge, "feature", {"shared.txt": "ours\n"})
    pr = forge.open_pull_request(repo(fake), "feature", "main", "Ours", "", "baton")
    push(fake, forge, "main", {"shared.txt": "theirs\n"})
    with pytest.raises(NotMergeable):
        forge.merge_pull_request(repo(fake), pr.number, head)


def test_close_and_delete_branch_are_idempotent(fake: FakeForge, forge: Forge) -> None:
    push(fake, forge, "feature", {"a.txt": "a\n"})
    pr = forge.open_pull_request(repo(fake), "feature", "main", "Add a", "", "baton")
    forge.close_pull_request(repo(fake), pr.number)
    forge.close_pull_request(repo(fake), pr.number)
    assert forge.get_pull_request(repo(fake), pr.number).state == "closed"
    forge.delete_branch(repo(fake), "feature")
    forge.delete_branch(repo(fake), "feature")
    assert "feature" not in fake._branches(repo(fake))


def test_commit_status_keeps_the_latest_per_context(fake: FakeForge, forge: Forge) -> None:
    sha = push(fake, forge, "feature", {"a.txt": "a\n"})
    forge.set_commit_status(repo(fake), sha, "baton/pr", "pending", "running", "http://ui/1")
    forge.set_commit_status(repo(fake), sha, "baton/pr", "success", "3 step(s) passed")
    forge.set_commit_status(repo(fake), sha, "baton/ci", "failure", "lint failed")
    statuses = forge.list_commit_statuses(repo(fake), sha)
    assert [(s.context, s.state, s.description) for s in statuses] == [
        ("baton/ci", "failure", "lint failed"),
        ("baton/pr", "success", "3 step(s) passed"),
    ]


def test_comment_lands_on_the_pull_request(fake: FakeForge, forge: Forge) -> None:
    push(fake, forge, "feature", {"a.txt": "a\n"})
    pr = forge.open_pull_request(repo(fake), "feature", "main", "Add a", "", "baton")
    forge.comment(repo(fake), pr.number, "See http://127.0.0.1:8233/namespaces/default")
    bodies = [body for _, body in fake.store.list_comments(repo(fake), pr.number)]
    assert bodies == ["See http://127.0.0.1:8233/namespaces/default"]


def test_reviews_carry_the_reviewed_commit_so_stale_ones_can_be_left_out(
    fake: FakeForge, forge: Forge
) -> None:
    first = push(fake, forge, "feature", {"a.txt": "a\n"})
    pr = forge.open_pull_request(repo(fake), "feature", "main", "Add a", "", "baton")
    fake.review(repo(fake), pr.number, "carol", "approved")
    second = push(fake, forge, "feature", {"b.txt": "b\n"}, base="feature")
    fake.review(repo(fake), pr.number, "dave", "changes_requested")
    reviews = {r.user: r for r in forge.list_reviews(repo(fake), pr.number)}
    assert reviews["carol"].state == "approved"
    assert reviews["dave"].state == "changes_requested" and reviews["dave"].commit_id == second
    if fake.kind != "azure-devops":  # Azure votes carry no commit: they count for the head
        assert reviews["carol"].commit_id == first


@pytest.mark.parametrize(
    ("vote", "state"),
    [(10, "approved"), (5, "approved"), (0, None), (-5, "commented"), (-10, "changes_requested")],
)
def test_azure_votes_map_to_review_states(vote: int, state: str | None) -> None:
    assert vote_state(vote) == state


def test_long_descriptions_are_cut_keeping_the_rollout_trailer(
    fake: FakeForge, forge: Forge
) -> None:
    push(fake, forge, "feature", {"a.txt": "a\n"})
    body = "diff line\n" * 8000 + "\nBaton-Rollout: rollout/app/dev/abc"
    pr = forge.open_pull_request(repo(fake), "feature", "main", "Big", body, "baton")
    assert pr.body.endswith("\n\nBaton-Rollout: rollout/app/dev/abc")
    assert len(pr.body) <= (4000 if fake.kind == "azure-devops" else 65_536)


def test_clip_body_keeps_short_bodies_untouched() -> None:
    assert clip_body("short\n\nBaton-Rollout: x", 100) == "short\n\nBaton-Rollout: x"


# Errors


def test_rejected_token_is_not_retried_and_names_the_setting(fake: FakeForge, sleeps) -> None:
    forge = adapter(fake, sleeps, token="wrong-token")
    with pytest.raises(TokenRejected) as info:
        forge.get_pull_request(repo(fake), 1)
    message = str(info.value)
    assert "forge.credentials.token_env" in message and "FORGE_TOKEN" in message
    assert "wrong-token" not in message
    assert not info.value.retryable


def test_missing_token_says_so(fake: FakeForge, sleeps: Sleeps) -> None:
    with pytest.raises(TokenRejected, match="no token for .*FORGE_TOKEN"):
        adapter(fake, sleeps, token=None).clone_url(repo(fake))


def test_unknown_repository_and_pull_request_are_not_found(fake: FakeForge, forge: Forge) -> None:
    owner = repo(fake).split("/")[0]
    with pytest.raises(RepositoryNotFound):
        forge.get_pull_request(f"{owner}/missing", 1)
    with pytest.raises(PullRequestNotFound):
        forge.get_pull_request(repo(fake), 999)


def test_429_with_retry_after_waits_as_told_then_succeeds(
    fake: FakeForge, forge: Forge, sleeps: Sleeps
) -> None:
    fake.fail_next(429, {"Retry-After": "2"}, message="slow down")
    forge.list_commit_statuses(repo(fake), "0" * 40)
    assert sleeps == [2.0]


def test_403_with_no_remaining_quota_waits_until_the_reset(
    fake: FakeForge, forge: Forge, sleeps: Sleeps
) -> None:
    asked = time.time()
    reset = int(asked) + 5
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    fake.fail_next(403, headers, message="API rate limit exceeded")
    forge.list_commit_statuses(repo(fake), "0" * 40)
    answered = time.time()
    # Until the reset, a second to spare, from when the answer came (however long it took).
    assert len(sleeps) == 1 and reset - answered + 1 <= sleeps[0] <= reset - asked + 1


def test_a_limit_longer_than_the_bound_is_left_to_the_activity_retry(
    fake: FakeForge, forge: Forge, sleeps: Sleeps
) -> None:
    fake.fail_next(429, {"Retry-After": "3600"})
    with pytest.raises(RateLimited) as info:
        forge.list_commit_statuses(repo(fake), "0" * 40)
    assert sleeps == []
    assert info.value.retryable and info.value.next_retry_delay == timedelta(hours=1)


def test_a_limit_that_persists_is_left_to_the_activity_retry_after_bounded_waits(
    fake: FakeForge, forge: Forge, sleeps: Sleeps
) -> None:
    fake.fail_next(429, {"Retry-After": "1"}, times=5)
    with pytest.raises(RateLimited):
        forge.list_commit_statuses(repo(fake), "0" * 40)
    assert sleeps == [1.0, 1.0]


def test_403_without_a_limit_is_a_missing_permission(fake: FakeForge, forge: Forge) -> None:
    fake.fail_next(403, message="Resource not accessible by personal access token")
    with pytest.raises(PermissionDenied, match="not accessible") as info:
        forge.list_commit_statuses(repo(fake), "0" * 40)
    assert not info.value.retryable


def test_server_errors_are_retryable(fake: FakeForge, forge: Forge) -> None:
    fake.fail_next(502, message="Bad Gateway")
    with pytest.raises(ForgeUnavailable) as info:
        forge.list_commit_statuses(repo(fake), "0" * 40)
    assert info.value.retryable


def test_no_answer_is_retryable(sleeps: Sleeps) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        forge = GitHubForge(f"http://127.0.0.1:{port}", TOKEN, sleep=sleeps, timeout_s=2)
        with pytest.raises(ForgeUnavailable) as info:
            forge.get_pull_request("acme/app", 1)
    assert info.value.retryable


MARKER = "<!-- baton:change/app/1 -->"


def test_one_marked_comment_is_kept_and_edited_in_place(fake: FakeForge, forge: Forge) -> None:
    push(fake, forge, "feature", {"a.txt": "a\n"})
    pr = forge.open_pull_request(repo(fake), "feature", "main", "Add a", "", "baton")
    for i in range(3):  # others' comments before it: the list is paged two by two
        fake.store.comment(repo(fake), pr.number, f"looks good {i}")
    first = forge.upsert_comment(repo(fake), pr.number, MARKER, "**validating**")
    fake.store.comment(repo(fake), pr.number, "a reviewer's comment after Baton's")
    again = forge.upsert_comment(repo(fake), pr.number, MARKER, "**integrating**")
    same = forge.upsert_comment(repo(fake), pr.number, MARKER, "**integrating**")
    bodies = [body for _, body in fake.store.list_comments(repo(fake), pr.number)]
    assert first == again == same
    assert [b for b in bodies if MARKER in b] == [f"**integrating**\n\n{MARKER}"]
    assert len(bodies) == 5


def commit_as(fake: FakeForge, branch: str, author: str, email: str, message: str) -> str:
    """Commit onto `branch` in the forge's repository as `author` <`email`>, keeping the tree (a
    push no delivery is sent for); the new head."""
    bare = fake.store.repo_path(repo(fake))

    def git(*args: str, **env: str) -> str:
        done = subprocess.run(
            ["git", f"--git-dir={bare}", *args],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        return done.stdout.strip()

    tree = git("rev-parse", f"{branch}^{{tree}}")
    sha = git(
        "commit-tree",
        tree,
        "-p",
        branch,
        "-m",
        message,
        GIT_AUTHOR_NAME=author,
        GIT_AUTHOR_EMAIL=email,
        GIT_COMMITTER_NAME=author,
        GIT_COMMITTER_EMAIL=email,
    )
    git("update-ref", f"refs/heads/{branch}", sha)
    return sha


def test_pull_request_commits_name_their_authors_and_linked_accounts(
    fake: FakeForge, forge: Forge
) -> None:
    push(fake, forge, "feature", {"a.txt": "a\n"})  # by Alice <alice@example.invalid>
    for i in range(3):  # four commits: more than a page
        sha = commit_as(fake, "feature", "Bob", "bob@example.com", f"bob {i}")
    fake.accounts["bob@example.com"] = "bob-on-the-forge"
    pr = forge.open_pull_request(repo(fake), "feature", "main", "Add a", "", "baton")
    commits = forge.list_pull_request_commits(repo(fake), pr.number)
    assert [c.email for c in commits] == ["alice@example.invalid"] + ["bob@example.com"] * 3
    assert commits[-1].sha == sha
    logins = {c.login for c in commits}
    # Azure DevOps links no account to a commit; GitHub and Gitea do where the email is known.
    assert logins == ({None} if fake.kind == "azure-devops" else {None, "bob-on-the-forge"})
    fake.merge(repo(fake), pr.number)
    assert forge.list_pull_request_commits(repo(fake), pr.number) == commits


def test_comparing_two_commits_names_the_authors_of_those_between(
    fake: FakeForge, forge: Forge
) -> None:
    before = forge.branch_head(repo(fake), "main").sha
    carol = commit_as(fake, "main", "Carol", "carol@example.com", "carol's")
    shas = [carol] + [
        commit_as(fake, "main", "Bob", "bob@example.com", f"bob {i}") for i in range(3)
    ]  # four commits: more than a page where the forge pages them
    fake.accounts["bob@example.com"] = "bob-on-the-forge"
    commits = forge.compare_commits(repo(fake), before, shas[-1])
    assert [c.sha for c in commits] == shas  # oldest first
    assert [(c.name, c.email) for c in commits][:2] == [
        ("Carol", "carol@example.com"),
        ("Bob", "bob@example.com"),
    ]
    logins = {c.login for c in commits}
    assert logins == ({None} if fake.kind == "azure-devops" else {None, "bob-on-the-forge"})
    assert forge.compare_commits(repo(fake), carol, shas[-1]) == commits[1:]
    assert forge.get_commit(repo(fake), carol) == commits[0]


def test_comparing_with_a_commit_the_forge_has_not_is_refused(
    fake: FakeForge, forge: Forge
) -> None:
    head = forge.branch_head(repo(fake), "main").sha
    gone = "d" * 40  # force-pushed away and pruned, say
    with pytest.raises(RevisionNotFound, match="never pushed, or force-pushed away"):
        forge.compare_commits(repo(fake), gone, head)
    with pytest.raises(RevisionNotFound):
        forge.get_commit(repo(fake), gone)
    with pytest.raises(RepositoryNotFound):
        forge.compare_commits("acme/gone" if "/" in repo(fake) else "gone", gone, head)


def test_deployments_are_reported_once_per_commit_and_environment(
    fake: FakeForge, forge: Forge
) -> None:
    if not isinstance(fake, FakeGitHub):
        assert not isinstance(forge, Deployments)  # no deployments API: nothing is sent
        return
    assert isinstance(forge, Deployments)
    sha = push(fake, forge, "main", {"a.txt": "a\n"})
    made = forge.report_deployment(
        repo(fake), sha, "staging", "in_progress", log_url="http://127.0.0.1:8233/x"
    )
    again = forge.report_deployment(
        repo(fake), sha, "staging", "success", environment_url="https://staging.example.com"
    )
    other = forge.report_deployment(repo(fake), sha, "prod", "failure")
    assert made == again != other
    assert [(d["sha"], d["environment"]) for d in fake.deployments] == [
        (sha, "staging"),
        (sha, "prod"),
    ]
    assert [s["state"] for s in fake.deployment_statuses[made]] == ["in_progress", "success"]
    assert fake.deployment_statuses[made][0]["log_url"] == "http://127.0.0.1:8233/x"
    assert fake.deployment_statuses[made][1]["environment_url"] == "https://staging.example.com"
