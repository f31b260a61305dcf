"""Two apps' rollouts into one environment of one GitOps repository, merged one right after the
other: the real merge activity and real git on the local forge, by every merge method."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.context import Context
from activities.deploy import MergeInput, merge_gitops_pr
from baton.config import GitOpsConfig
from baton.forges.base import HeadChanged, NotMergeable
from baton.gitops import GitOpsRepo, rollout_branch
from baton.gitops_merge import BaseMovedMerge, Rerender
from baton.models import GitOpsPullRequest, RolloutInput
from baton.workspace import Workspace
from tests.fakes.records import fake_artifact
from tests.fixtures.gitops import gitops_context
from tests.fixtures.manifests import DEPLOYMENT
from tests.unit import test_forge_merge_methods as hosted

APPS = ("sample-app", "sample-kustomize")
COMMIT = "a" * 40
CONFIG = """
forge: {kind: local, merge: METHOD}
apps:
  - {name: sample-app, repo: sample-app, chart: chart, image: sample-app}
  - {name: sample-kustomize, repo: sample-kustomize, kustomize: deploy, image: sample-kustomize}
environments:
  - {name: dev, namespace: dev}
"""


def gitops_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str) -> Context:
    """A GitOps repository holding dev's inputs for both apps, on a local forge merging by
    `method`; activities act on it."""
    overlay = "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
    inputs = {
        "environments/dev/sample-app/values.yaml": "replicas: 1\n",
        "environments/dev/sample-kustomize/kustomization.yaml": overlay,
    }
    return gitops_context(tmp_path, monkeypatch, CONFIG.replace("METHOD", method), inputs)


def propose(context: Context, app: str, content: str | None = None) -> GitOpsPullRequest:
    """Open `app`'s dev rollout PR on the base branch as it is now, as the propose step does."""
    branch = rollout_branch(app, "dev", COMMIT)
    path = f"rendered/dev/{app}/manifests.yaml"
    message = f"Deploy {app} {COMMIT[:12]} to dev"
    context.gitops.propose(branch, path, content or DEPLOYMENT.replace("web", app), message)
    pr = context.forge.open_pull_request("gitops", branch, "main", message, "", author="baton")
    return GitOpsPullRequest(
        number=pr.number, url=pr.html_url, head_branch=pr.head_branch, head_sha=pr.head_sha
    )


def merge(context: Context, app: str, pr: GitOpsPullRequest) -> str:
    rollout = RolloutInput(
        change_id=f"change/{app}/1",
        app=context.config.app(app),
        environment=context.config.environment("dev"),
        artifact=fake_artifact(app, COMMIT, registry="127.0.0.1:5000"),
        author="alice",
    )
    return ActivityEnvironment().run(merge_gitops_pr, MergeInput(rollout=rollout, pr=pr))


def first_parent(context: Context) -> list[str]:
    """The base branch's history as a reader of `git log --first-parent` sees it, oldest first:
    each commit with the paths it changed."""
    mirror = context.gitops._mirror()
    log = mirror.git.log("--first-parent", "--reverse", "--format=%H", "main").split()
    return [
        " ".join(mirror.git.diff("--name-only", f"{sha}^1", sha).split()) if i else "initial"
        for i, sha in enumerate(log)
    ]


def push_to_base(context: Context, tmp_path: Path, path: str, content: str) -> None:
    """A person's commit straight onto the GitOps repository's base branch."""
    work = tmp_path / "person"
    url = context.forge.clone_url("gitops")
    subprocess.run(["git", "clone", "-q", url, str(work)], check=True)
    (work / path).parent.mkdir(parents=True, exist_ok=True)
    (work / path).write_text(content)
    git = ["git", "-C", str(work), "-c", "user.name=erin", "-c", "user.email=erin@example.com"]
    subprocess.run([*git, "add", path], check=True)
    subprocess.run([*git, "commit", "-qm", f"edit {path}"], check=True)
    subprocess.run([*git, "push", "-q", "origin", "HEAD:main"], check=True)


@pytest.mark.parametrize("method", ["merge", "squash", "rebase", "fast-forward"])
def test_two_apps_merged_one_after_the_other_both_land_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    context = gitops_repo(tmp_path, monkeypatch, method)
    first, second = (propose(context, app) for app in APPS)  # both on the same base

    landed_first = merge(context, APPS[0], first)
    landed_second = merge(context, APPS[1], second)

    assert context.gitops.is_ancestor(landed_first, landed_second)  # nothing lost
    assert context.gitops.head() == landed_second
    # One commit per rollout on the first-parent line, each touching only its own app's files.
    assert first_parent(context) == [
        "initial",
        f"rendered/dev/{APPS[0]}/manifests.yaml",
        f"rendered/dev/{APPS[1]}/manifests.yaml",
    ]
    for app in APPS:
        assert app in (context.gitops.read(f"rendered/dev/{app}/manifests.yaml") or "")


def test_a_fast_forward_refused_by_a_moved_base_rebases_baton_branch_and_never_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = gitops_repo(tmp_path, monkeypatch, "fast-forward")
    first, second = (propose(context, app) for app in APPS)
    landed_first = merge(context, APPS[0], first)
    # Without Baton's rebase the forge refuses: the base has the first app's commit.
    with pytest.raises(NotMergeable, match="cannot fast-forward"):
        context.forge.merge_pull_request("gitops", second.number, second.head_sha)

    landed_second = merge(context, APPS[1], second)

    assert landed_second != second.head_sha  # moved onto the first app's commit, then merged
    assert context.gitops._mirror().git.rev_parse(f"{landed_second}^1") == landed_first
    merged = context.forge.get_pull_request("gitops", second.number)
    assert merged.state == "merged" and merged.head_sha == landed_second
    assert context.gitops.changes(landed_second, since=landed_first) == context.gitops.changes(
        second.head_sha
    )
    # A retried merge (its answer lost) finds the PR merged at the rebased head: the same commit.
    assert merge(context, APPS[1], second) == landed_second
    assert len(first_parent(context)) == 3


def test_a_push_by_someone_else_to_baton_branch_is_not_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = gitops_repo(tmp_path, monkeypatch, "fast-forward")
    pr = propose(context, APPS[0])
    # Someone pushes other content to the branch: not the approved change, so no merge.
    other = rollout_branch(APPS[0], "dev", "b" * 40)
    context.gitops.propose(other, "rendered/dev/sample-app/manifests.yaml", "# other\n", "other")
    context.gitops._mirror().git.push(
        "--force",
        context.forge.clone_url("gitops"),
        f"refs/heads/{other}:refs/heads/{pr.head_branch}",
    )

    with pytest.raises(HeadChanged):
        BaseMovedMerge(context.gitops, context.forge).merge(pr.number, pr.head_sha)
    assert context.gitops.read("rendered/dev/sample-app/manifests.yaml") is None


SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: dev}\ndata: {p: YQ==}\n"


def test_a_push_by_someone_else_is_described_by_what_the_pr_now_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge activity refuses it saying the new head's content hash and why it is
    security-sensitive: the approvers are asked again on that, not on Baton's render."""
    context = gitops_repo(tmp_path, monkeypatch, "merge")
    pr = propose(context, APPS[0])
    work = tmp_path / "mallory"
    subprocess.run(["git", "clone", "-q", context.forge.clone_url("gitops"), str(work)], check=True)
    git = ["git", "-C", str(work), "-c", "user.name=m", "-c", "user.email=m@example.com"]
    subprocess.run([*git, "checkout", "-q", pr.head_branch], check=True)
    pushed = (work / MANIFESTS).read_text() + "---\n" + SECRET
    (work / MANIFESTS).write_text(pushed)
    subprocess.run([*git, "commit", "-qam", "add a secret"], check=True)
    subprocess.run([*git, "push", "-q", "origin", "HEAD"], check=True)

    with pytest.raises(ApplicationError) as refused:
        merge(context, APPS[0], pr)

    assert refused.value.type == "HeadChanged"
    [details] = refused.value.details
    head = context.forge.get_pull_request("gitops", pr.number).head_sha
    # The base holds no manifests yet: each of the new deployment's findings counts too.
    assert "Secret/dev/db added (Secret)" in details.pop("sensitive").splitlines()
    assert details == {
        "expected": pr.head_sha,
        "actual": head,
        "content_hash": hashlib.sha256(pushed.encode()).hexdigest(),
    }
    assert context.gitops.read(MANIFESTS) is None  # nothing merged


VALUES = "environments/dev/sample-app/values.yaml"
MANIFESTS = "rendered/dev/sample-app/manifests.yaml"


def values_render(context: Context) -> Rerender:
    """sample-app's render as a function of its values on the base branch (a stand-in for helm)."""

    def render() -> tuple[dict[str, str | None], str, list[str]]:
        replicas = (context.gitops.read(VALUES) or "").strip()
        return {MANIFESTS: f"# {replicas}\n{DEPLOYMENT}"}, f"sha256:{replicas}", []

    return Rerender(MANIFESTS, [VALUES], render)


def test_values_changed_on_the_base_render_again_and_ask_the_approvers_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = gitops_repo(tmp_path, monkeypatch, "merge")
    rerender = values_render(context)
    pr = propose(context, APPS[0], f"# replicas: 1\n{DEPLOYMENT}")
    push_to_base(context, tmp_path, VALUES, "replicas: 3\n")
    merger = BaseMovedMerge(context.gitops, context.forge)

    with pytest.raises(HeadChanged) as moved:
        merger.merge(pr.number, pr.head_sha, rerender)

    # The branch now holds the render of the new values, on the base's head, for review.
    assert moved.value.content_hash == "sha256:replicas: 3"
    new_head = moved.value.actual
    assert context.gitops.read(MANIFESTS, new_head) == f"# replicas: 3\n{DEPLOYMENT}"
    assert not context.gitops.behind(new_head)
    assert context.gitops.read(MANIFESTS) is None  # nothing merged without new approvals
    comments = context.forge.list_comments("gitops", pr.number)
    assert "changed environments/dev/sample-app/values.yaml" in comments[-1][1]
    # Approved again at the new head, it merges.
    landed = merger.merge(pr.number, new_head, rerender)
    assert context.gitops.read(MANIFESTS, landed) == f"# replicas: 3\n{DEPLOYMENT}"


def test_an_unrelated_commit_on_the_base_keeps_the_approved_render(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = gitops_repo(tmp_path, monkeypatch, "fast-forward")
    pr = propose(context, APPS[0], f"# replicas: 1\n{DEPLOYMENT}")
    push_to_base(context, tmp_path, "README.md", "the GitOps repository\n")

    landed = BaseMovedMerge(context.gitops, context.forge).merge(
        pr.number, pr.head_sha, values_render(context)
    )

    assert context.gitops.read(MANIFESTS, landed) == f"# replicas: 1\n{DEPLOYMENT}"
    assert first_parent(context) == ["initial", "README.md", MANIFESTS]


@pytest.mark.parametrize("kind", ["github", "gitea"])
def test_hosted_forges_refusing_a_fast_forward_get_baton_branch_rebased(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))  # read by the git hook of pushes
    monkeypatch.setenv("FORGE_TOKEN", hosted.TOKEN)
    with hosted.serving(kind, tmp_path) as fake:
        forge = hosted.forge_of(fake, "fast-forward", tmp_path)
        number, head, moved_main = hosted.gitops_pr(fake, forge, diverge=True)
        repo = GitOpsRepo(GitOpsConfig(repo=hosted.REPOS[kind]), forge, Workspace(tmp_path / "w"))

        landed = BaseMovedMerge(repo, forge, sleep=lambda _: None).merge(number, head)

        assert hosted.git(fake, "rev-parse", "main") == landed
        assert hosted.git(fake, "rev-parse", f"{landed}^1") == moved_main  # nothing lost
        assert repo.read("prod.yaml") == "replicas: 2\n" and repo.read("dev.yaml") == "2\n"
        assert forge.get_pull_request(hosted.REPOS[kind], number).state == "merged"
