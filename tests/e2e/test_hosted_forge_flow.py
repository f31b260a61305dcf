"""A change on the whole stack with `forge.kind` github, gitea or azure-devops and `forge.url` at
a fake of that forge's API: pull requests, statuses, merges, GitOps pull requests and reviews all
go through the forge's REST API and its signed webhooks; the local cluster reads the GitOps
repository the forge serves."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.settings import Settings
from cli.demo import AUTHOR, push_visible_change
from tests.conftest import eventually
from tests.e2e.stack import EXAMPLES, E2EStack, running_stack, version
from tests.e2e.test_change_flow import gate_is
from tests.fakes.forges import FAKES, FakeForge, FakeGitHub

pytestmark = pytest.mark.docker

TOKEN = "hosted-forge-e2e-token"
APP_REPO = "acme/sample-app"
GITOPS_REPO = "acme/gitops"


@pytest.fixture(scope="module", params=list(FAKES))
def hosted(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    base_image: str,
    docker_client,
) -> Iterator[tuple[E2EStack, FakeForge]]:
    """The embedded stack configured for a hosted forge, and the fake serving that forge's API."""
    workdir: Path = tmp_path_factory.mktemp(f"hosted-{request.param}")
    fake = FAKES[request.param](workdir / "forge", {TOKEN: "baton"}).start()

    def edit_config(config: dict) -> None:
        config["forge"] = {
            "kind": fake.kind,
            "url": fake.url,
            "credentials": {"token_env": "BATON_FORGE_TOKEN"},
        }
        if fake.kind == "github":  # a GitOps repository that allows squash merges only
            config["forge"]["merge"] = "squash"
        config["apps"][0]["repo"] = APP_REPO
        config["gitops"]["repo"] = GITOPS_REPO

    def seed(settings: Settings, gitops: Path) -> None:
        fake.webhook_secret = settings.webhook_secret
        fake.deliver_to(settings.api_url)
        fake.create_repo(APP_REPO, from_dir=EXAMPLES / "sample-app")
        fake.create_repo(GITOPS_REPO, from_dir=gitops)
        if fake.kind == "github":
            fake.allow_merge_methods("squash")

    try:
        with running_stack(
            workdir, base_image, edit_config, seed, {"BATON_FORGE_TOKEN": TOKEN}
        ) as stack:
            yield stack, fake
    finally:
        fake.stop()


def test_change_runs_through_the_hosted_forge_api(hosted: tuple[E2EStack, FakeForge]) -> None:
    stack, fake = hosted
    branch = push_visible_change(fake, APP_REPO, f"hosted-{fake.kind}")
    pr = fake.open_pull_request(APP_REPO, branch, "main", "Greet", "", AUTHOR)
    change = f"change/sample-app/{pr.number}"

    # The forge's "opened" webhook started the change; its PR pipeline reported to the forge.
    stack.wait(change, lambda d: d.change.state == "awaiting-merge")
    statuses = {s.context: s for s in fake.store.list_commit_statuses(APP_REPO, pr.head_sha)}
    assert statuses["baton/pr"].state == "success"

    # Merged on the forge: CI, then dev through a GitOps PR Baton opened and merged there.
    merge = fake.merge(APP_REPO, pr.number)
    detail = stack.wait(change, gate_is("approval", "staging"))
    assert detail.change.artifact.commit == merge
    assert [s.context for s in fake.store.list_commit_statuses(APP_REPO, merge)] == ["baton/ci"]
    assert version(stack.config.environment("dev").verify.url)["commit"] == merge
    gitops = {p.head_branch.split("/")[2]: p for p in fake.store.list_pull_requests(GITOPS_REPO)}
    assert gitops["dev"].state == "merged" and gitops["dev"].author == "baton"
    assert f"Baton-Rollout: rollout/sample-app/dev/{merge}" in gitops["dev"].body
    assert gitops["dev"].head_branch not in fake._branches(GITOPS_REPO)
    dev = next(r for r in detail.change.rollouts if r.environment == "dev")
    assert dev.revision == gitops["dev"].merge_commit_sha  # what the sync gate waited for
    if fake.kind == "github":  # squashed: one parent, the PR's head is not on main
        bare = ["git", f"--git-dir={fake.store.repo_path(GITOPS_REPO)}"]
        parents = [*bare, "rev-list", "--parents", "-1", dev.revision]
        squash = subprocess.run(parents, check=True, capture_output=True, text=True).stdout.split()
        assert len(squash) == 2 and gitops["dev"].head_sha not in squash

    # staging: an approving review on the forge is counted under the environment's policy.
    fake.review(GITOPS_REPO, gitops["staging"].number, "carol", "approved")
    detail = stack.wait(change, gate_is("approval", "prod"))
    staging = next(r for r in detail.change.rollouts if r.environment == "staging")
    assert [(a.user, a.source) for a in staging.approvals] == [("carol", "forge")]
    assert version(stack.config.environment("staging").verify.url)["commit"] == merge

    # Aborting closes the waiting prod GitOps PR on the forge, saying why.
    aborted = stack.baton("abort", change, "--reason", "test over", user=AUTHOR)
    assert aborted.returncode == 0, aborted.stderr
    stack.wait(change, lambda d: d.change.state == "aborted")
    prod = next(p for p in fake.store.list_pull_requests(GITOPS_REPO) if "/prod/" in p.head_branch)
    assert prod.state == "closed"
    assert [body for _, body in fake.store.list_comments(GITOPS_REPO, prod.number)] == [
        "Closed by Baton: rollout aborted."
    ]
    # The app's PR carries one Baton comment, edited along the way; on GitHub each environment
    # the change reached is a deployment with its statuses (other forges have none).
    marker = f"<!-- baton:{change} -->"
    [comment] = eventually(
        lambda: [b for _, b in fake.store.list_comments(APP_REPO, pr.number) if marker in b],
        lambda found: len(found) == 1 and "**aborted**" in found[0],
        what="Baton's comment on the app's PR to say aborted",
    )
    assert "| dev | ✅ deployed |" in comment and "| staging | ✅ deployed |" in comment
    if isinstance(fake, FakeGitHub):
        states = eventually(
            lambda: {
                d["environment"]: [s["state"] for s in fake.deployment_statuses.get(d["id"], [])]
                for d in fake.deployments
                if d["sha"] == merge
            },
            lambda seen: seen.get("prod", [])[-1:] == ["inactive"],
            what="prod's deployment to be inactive after the abort",
        )
        assert states == {
            "dev": ["in_progress", "success"],
            "staging": ["in_progress", "success"],
            "prod": ["in_progress", "inactive"],
        }
    answers = {(s.event, s.status) for s in fake.flush()}
    assert all(status is not None and status < 300 for _, status in answers), answers
