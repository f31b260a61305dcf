"""`forge.merge` through each hosted forge's own API, against fakes answering as the forges do:
the merge method sent, the repository's settings as the default, the forge's refusals, and the
commit each method leaves on the base branch (what Baton then waits for)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from baton.config import ForgeConfig, MergeMethod, load_config
from baton.forges import create_forge
from baton.forges.base import Forge, MergeMethodRefused, NotMergeable
from baton.forges.github import GitHubForge
from baton.settings import Settings
from tests.fakes.forges import FAKES, FakeForge

TOKEN = "s3cret-token-for-baton"
REPOS = {"github": "acme/gitops", "gitea": "acme/gitops", "azure-devops": "shop/gitops"}
CASE_26 = Path(__file__).parents[1] / "fixtures" / "cases" / "26-github-merge-method"
# Azure DevOps has no plain fast-forward (its "rebase" is rebase and fast-forward).
METHODS: dict[str, list[MergeMethod]] = {
    "github": ["merge", "squash", "rebase", "fast-forward"],
    "gitea": ["merge", "squash", "rebase", "fast-forward"],
    "azure-devops": ["merge", "squash", "rebase"],
}


@contextmanager
def serving(kind: str, tmp_path: Path) -> Iterator[FakeForge]:
    """The fake of `kind` with one repository, seeded with a README."""
    seed = tmp_path / "seed"
    seed.mkdir(exist_ok=True)
    (seed / "README.md").write_text("hello\n")
    with FAKES[kind](tmp_path / "forge", {TOKEN: "baton"}) as fake:
        fake.create_repo(REPOS[kind], from_dir=seed)
        yield fake


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))  # read by the git hook of pushes
    monkeypatch.setenv("FORGE_TOKEN", TOKEN)


@pytest.fixture(params=list(FAKES))
def fake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeForge]:
    with serving(request.param, tmp_path) as fake:
        yield fake


# Azure's pull request API does not say which merge types its branch policies allow.
@pytest.fixture(params=["github", "gitea"])
def with_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeForge]:
    """A forge whose repository object holds its merge settings."""
    with serving(request.param, tmp_path) as fake:
        yield fake


def forge_of(fake: FakeForge, merge: MergeMethod | None, tmp_path: Path) -> Forge:
    """The adapter `create_forge` makes from `forge.merge` and the fake's URL."""
    config = ForgeConfig.model_validate(
        {
            "kind": fake.kind,
            "url": fake.url,
            "merge": merge,
            "credentials": {"token_env": "FORGE_TOKEN"},
        }
    )
    return create_forge(config, Settings(home=tmp_path / "home"))


def git(fake: FakeForge, *args: str) -> str:
    bare = fake.store.repo_path(REPOS[fake.kind])
    return subprocess.run(
        ["git", f"--git-dir={bare}", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def gitops_pr(
    fake: FakeForge, forge: Forge, diverge: bool = True, tag: str = "2"
) -> tuple[int, str, str]:
    """A GitOps-like PR of two commits setting prod's `tag`, main moved on meanwhile (unless not
    `diverge`): the number, the head, and main before the merge."""
    repo, branch = REPOS[fake.kind], f"baton/web/prod/{tag}"
    fake.push(repo, branch, {"prod.yaml": f"replicas: {tag}\n"})
    head = fake.push(repo, branch, {"note.txt": f"{tag}\n"}, base=branch)
    if diverge:
        fake.push(repo, "main", {"dev.yaml": f"{tag}\n"})
    pr = forge.open_pull_request(repo, branch, "main", f"Deploy web {tag}", "", "baton")
    return pr.number, head, git(fake, "rev-parse", "main")


def test_each_method_lands_as_the_forge_makes_it_and_returns_the_new_base_commit(
    fake: FakeForge, tmp_path: Path
) -> None:
    repo = REPOS[fake.kind]
    for method in METHODS[fake.kind]:
        forge = forge_of(fake, method, tmp_path)
        number, head, before = gitops_pr(fake, forge, method != "fast-forward", tag=method)

        merged = forge.merge_pull_request(repo, number, head)

        assert merged == git(fake, "rev-parse", "main"), method
        assert forge.merge_pull_request(repo, number, head) == merged  # idempotent
        parents = git(fake, "rev-list", "--parents", "-1", merged).split()[1:]
        if method == "merge":
            assert parents == [before, head]
        elif method == "squash":
            assert parents == [before]
        elif method == "rebase":
            replayed = git(fake, "rev-list", f"{before}..{merged}").split()
            assert len(replayed) == 2 and head not in replayed
        else:
            assert merged == head
        assert git(fake, "show", f"{merged}:prod.yaml") == f"replicas: {method}"


def test_without_forge_merge_the_repository_settings_choose_the_method(
    with_settings: FakeForge, tmp_path: Path
) -> None:
    fake = with_settings
    repo = REPOS[fake.kind]
    fake.allow_merge_methods("squash", "rebase")
    forge = forge_of(fake, None, tmp_path)
    number, head, before = gitops_pr(fake, forge)

    merged = forge.merge_pull_request(repo, number, head)

    assert git(fake, "rev-list", "--parents", "-1", merged).split()[1:] == [before]  # squashed
    assert forge.get_pull_request(repo, number).merge_commit_sha == merged
    merges = [path for method, path in fake.requests if method in ("PUT", "POST")]
    assert len([p for p in merges if p.endswith("/merge")]) == 1  # no refused attempt first


def test_gitea_prefers_the_repositorys_default_merge_style(tmp_path: Path) -> None:
    with serving("gitea", tmp_path) as fake:
        fake.allow_merge_methods("rebase", "merge")
        forge = forge_of(fake, None, tmp_path)
        number, head, before = gitops_pr(fake, forge)

        merged = forge.merge_pull_request("acme/gitops", number, head)

        replayed = git(fake, "rev-list", "--parents", f"{before}..{merged}").splitlines()
        assert len(replayed) == 2 and all(len(line.split()) == 2 for line in replayed)


def test_a_method_the_repository_forbids_is_refused_with_the_forges_reason_and_the_fix(
    with_settings: FakeForge, tmp_path: Path
) -> None:
    fake = with_settings
    repo = REPOS[fake.kind]
    fake.allow_merge_methods("squash")
    forge = forge_of(fake, "merge", tmp_path)
    number, head, _ = gitops_pr(fake, forge)

    with pytest.raises(MergeMethodRefused) as refused:
        forge.merge_pull_request(repo, number, head)

    reason = {
        "github": "Merge commits are not allowed on this repository.",
        "gitea": "merge is not allowed an allowed merge style for this repository",
    }[fake.kind]
    assert reason in str(refused.value)
    assert "set forge.merge to a method the repository allows" in str(refused.value)
    assert not refused.value.retryable
    assert forge.get_pull_request(repo, number).state == "open"


def test_github_fast_forward_is_refused_once_the_base_moved(tmp_path: Path) -> None:
    with serving("github", tmp_path) as fake:
        forge = forge_of(fake, "fast-forward", tmp_path)
        number, head, before = gitops_pr(fake, forge, diverge=True)
        with pytest.raises(NotMergeable, match="Update is not a fast forward"):
            forge.merge_pull_request("acme/gitops", number, head)
        assert git(fake, "rev-parse", "main") == before


def test_azure_devops_has_no_fast_forward_and_the_configuration_says_what_to_use() -> None:
    with pytest.raises(
        ValueError, match="Azure DevOps has no fast-forward merge: use merge: rebase"
    ):
        ForgeConfig(kind="azure-devops", url="https://dev.azure.com/acme", merge="fast-forward")


def test_case_26_a_repository_without_merge_commits_merges_by_the_method_it_allows() -> None:
    """The case's stand-in answers as github.com does for squash/rebase-only repositories, and
    its repository object cannot be read: Baton learns from the 405 and squashes."""
    head, refusal = "d" * 40, json.loads((CASE_26 / "github-405.json").read_text())
    sent: list[str] = []

    def github(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/repos/acme/gitops/pulls/7":
            return httpx.Response(200, json={
                "number": 7, "state": "open", "merged": False, "title": "Deploy web to prod",
                "body": "", "user": {"login": "baton-bot"}, "base": {"ref": "main"},
                "head": {"ref": "baton/web/prod/ffffffffffff", "sha": head},
                "html_url": "https://github.com/acme/gitops/pull/7",
            })  # fmt: skip
        if request.method == "PUT" and request.url.path == "/repos/acme/gitops/pulls/7/merge":
            method = json.loads(request.content).get("merge_method", "merge")
            sent.append(method)
            if method == "merge":
                return httpx.Response(405, json=refusal)
            return httpx.Response(200, json={"sha": "e" * 40, "merged": True, "message": "merged"})
        return httpx.Response(404, json={"message": "Not Found"})

    config = load_config(CASE_26 / "baton.yaml")
    assert config.forge.merge == "fast-forward"
    forge = GitHubForge("https://api.github.com", "token", transport=httpx.MockTransport(github))

    assert forge.merge_pull_request("acme/gitops", 7, head) == "e" * 40
    assert sent == ["merge", "squash"]


def test_case_26_the_cases_configuration_merges_on_a_squash_and_rebase_only_repository(
    tmp_path: Path,
) -> None:
    with serving("github", tmp_path) as fake:
        fake.allow_merge_methods("squash", "rebase")
        forge_config = load_config(CASE_26 / "baton.yaml").forge
        forge = GitHubForge(fake.url, TOKEN, merge_method=forge_config.merge)
        number, head, _ = gitops_pr(fake, forge, diverge=False)

        assert forge.merge_pull_request("acme/gitops", number, head) == head
        assert git(fake, "rev-parse", "main") == head
        assert fake.store.get_pull_request("acme/gitops", number).state == "merged"
