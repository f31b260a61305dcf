"""Workspace checkouts: one per commit, made once however many steps ask at the same time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from git import Actor, GitCommandError, Repo

from baton.workspace import CheckoutError, Workspace

AUTHOR = Actor("Alice", "alice@example.com")


def commit(repo: Repo, name: str) -> str:
    (Path(repo.working_dir) / name).write_text(f"{name}\n")
    repo.index.add([name])
    return repo.index.commit(f"add {name}", author=AUTHOR, committer=AUTHOR).hexsha


@pytest.fixture
def origin(tmp_path: Path) -> Repo:
    return Repo.init(tmp_path / "origin", initial_branch="main")


def test_steps_asking_for_one_commit_at_once_share_one_checkout(
    origin: Repo, tmp_path: Path
) -> None:
    sha = commit(origin, "app.py")
    workspace = Workspace(tmp_path / "work")
    with ThreadPoolExecutor(6) as pool:
        paths = set(
            pool.map(lambda _: workspace.checkout("acme/app", origin.git_dir, sha), range(6))
        )

    assert len(paths) == 1 and (paths.pop() / "app.py").read_text() == "app.py\n"
    assert [p.name for p in (tmp_path / "work" / "checkouts" / "acme__app").iterdir()] == [sha]


def test_a_commit_the_mirror_holds_is_checked_out_without_a_fetch(
    origin: Repo, tmp_path: Path
) -> None:
    first, second = commit(origin, "app.py"), commit(origin, "test_app.py")
    workspace = Workspace(tmp_path / "work")
    workspace.checkout("acme/app", origin.git_dir, first)  # the fetch brings both commits
    gone = str(tmp_path / "moved-away.git")

    assert (workspace.checkout("acme/app", gone, second) / "test_app.py").is_file()
    # A commit the mirror lacks is fetched, and from there nothing can be.
    with pytest.raises(GitCommandError, match="moved-away"):
        workspace.checkout("acme/app", gone, "f" * 40)


def test_a_merge_of_an_up_to_date_branch_has_the_tree_of_the_branchs_head(
    origin: Repo, tmp_path: Path
) -> None:
    commit(origin, "app.py")
    origin.git.checkout("-b", "feature")
    head = commit(origin, "feature.py")
    origin.git.checkout("main")
    origin.git.merge("--no-ff", "-m", "Merge pull request #1", "feature")
    merge = origin.head.commit.hexsha
    later = commit(origin, "later.py")
    workspace = Workspace(tmp_path / "work")

    assert merge != head
    assert workspace.tree("acme/app", origin.git_dir, merge) == origin.commit(head).tree.hexsha
    assert workspace.tree("acme/app", origin.git_dir, head) == origin.commit(head).tree.hexsha
    assert workspace.tree("acme/app", origin.git_dir, later) != origin.commit(head).tree.hexsha
    with pytest.raises(CheckoutError, match=r"acme/app has no commit ffffffffffff"):
        workspace.tree("acme/app", origin.git_dir, "f" * 40)
