"""`baton demo` seeds the local forge: a GitOps repository made before an app was added to the
config gets that app's example inputs, and keeps every file it has."""

from __future__ import annotations

from pathlib import Path

from baton.config import load_config
from baton.local.forge import LocalForge
from cli.demo import EXAMPLES, seed_repositories
from tests.conftest import git


def show(forge: LocalForge, repo: str, path: str) -> str:
    return git(forge.repo_path(repo), "show", f"refs/heads/main:{path}")


def test_an_older_gitops_repository_gets_the_new_apps_inputs_and_keeps_its_own(
    tmp_path: Path,
) -> None:
    forge = LocalForge(tmp_path / "forge")  # no webhook receiver: pushes are only recorded
    older = tmp_path / "older-gitops"
    values = older / "environments/dev/sample-app/values.yaml"
    values.parent.mkdir(parents=True)
    values.write_text("service: {port: 18081}\ngreeting: edited by someone\n")
    forge.create_repo("gitops", from_dir=older)
    config = load_config(EXAMPLES / "baton.yaml")

    seed_repositories(forge, config)

    assert (
        show(forge, "gitops", "environments/dev/sample-app/values.yaml")
        == values.read_text().strip()
    )
    overlay = "environments/prod/sample-kustomize/kustomization.yaml"
    assert show(forge, "gitops", overlay) == (EXAMPLES / "gitops" / overlay).read_text().strip()
    assert {"sample-app", "sample-kustomize", "gitops"} <= set(forge.list_repos())
    head = git(forge.repo_path("gitops"), "rev-parse", "refs/heads/main")
    seed_repositories(forge, config)  # nothing missing any more: no new commit
    assert git(forge.repo_path("gitops"), "rev-parse", "refs/heads/main") == head
