"""Rolling back an app's first deploy: the real revert and verify activities, against a GitOps
repository on the local forge and an endpoint served over HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.context import Context
from activities.deploy import (
    Revert,
    RevertInput,
    VerifyInput,
    revert_gitops_change,
    verify_endpoint,
    verify_running,
)
from baton.config import VerifyConfig
from baton.diff import diff_manifests
from baton.gitops import RENDERED_FROM, RenderedFrom, beside, placeholder_manifests, rollout_branch
from baton.models import RolloutInput
from baton.render import holds_objects
from tests.fakes.records import fake_artifact
from tests.fixtures.gitops import gitops_context
from tests.fixtures.http import Handler, serving
from tests.fixtures.manifests import DEPLOYMENT
from tests.fixtures.ports import closed_port

MANIFESTS = "rendered/staging/sample-app/manifests.yaml"
FIRST, SECOND = "1" * 40, "2" * 40
CONFIG = """
apps:
  - {name: sample-app, repo: sample-app, chart: chart, image: sample-app}
environments:
  - {name: staging, namespace: staging}
"""


@pytest.fixture
def gitops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    """Activities act on a GitOps repository that holds staging's values and nothing rendered."""
    values = {"environments/staging/sample-app/values.yaml": "replicas: 1\n"}
    return gitops_context(tmp_path, monkeypatch, CONFIG, values)


def rollout(context: Context, commit: str, verify: VerifyConfig | None = None) -> RolloutInput:
    staging = context.config.environment("staging")
    return RolloutInput(
        change_id="change/sample-app/1",
        app=context.config.app("sample-app"),
        environment=staging.model_copy(update={"verify": verify}),
        artifact=fake_artifact("sample-app", commit, registry="127.0.0.1:5000"),
        author="alice",
    )


def deploy(context: Context, commit: str, content: str) -> str:
    """Merge `commit`'s GitOps PR writing `content` to staging's manifests; returns the merge."""
    branch = rollout_branch("sample-app", "staging", commit)
    context.gitops.propose(branch, MANIFESTS, content, f"Deploy sample-app {commit[:12]}")
    pr = context.forge.open_pull_request("gitops", branch, "main", "Deploy", "", author="baton")
    return context.forge.merge_pull_request("gitops", pr.number, pr.head_sha)


def revert(context: Context, commit: str, merge: str) -> Revert:
    body = "Rolls sample-app back.\n\nBaton-Rollout: rollout/sample-app/staging/" + commit
    revert_input = RevertInput(rollout=rollout(context, commit), revision=merge, body=body)
    return ActivityEnvironment().run(revert_gitops_change, revert_input)


def merge_revert(context: Context, revert: Revert) -> str:
    assert revert.pr is not None
    return context.forge.merge_pull_request("gitops", revert.pr.number, revert.pr.head_sha)


def test_reverting_a_first_deploy_writes_a_placeholder_instead_of_deleting_the_manifests(
    gitops: Context,
) -> None:
    merge = deploy(gitops, FIRST, DEPLOYMENT)

    reverted = revert(gitops, FIRST, merge)

    assert reverted.removed and reverted.previous_commit is None and reverted.pr is not None
    merge_revert(gitops, reverted)
    placeholder = gitops.gitops.read(MANIFESTS)
    assert placeholder == placeholder_manifests("sample-app", "staging", FIRST)
    assert f"rolled back its first deploy here,\n# sample-app commit {FIRST[:12]}." in placeholder
    assert not holds_objects(placeholder)


def test_a_retried_first_deploy_revert_never_opens_a_second_pr(gitops: Context) -> None:
    merge = deploy(gitops, FIRST, DEPLOYMENT)
    first = revert(gitops, FIRST, merge)

    again = revert(gitops, FIRST, merge)
    assert again.pr is not None and first.pr is not None and again.pr.number == first.pr.number
    revert_commit = merge_revert(gitops, first)
    # Merged, its branch gone: the base branch holds the placeholder, there is nothing to open.
    after_merge = revert(gitops, FIRST, merge)
    assert after_merge.pr is None and after_merge.head == revert_commit and after_merge.removed
    open_prs = gitops.forge.list_pull_requests("gitops", state="open")
    assert open_prs == [] and len(gitops.forge.list_pull_requests("gitops")) == 2


def test_a_later_deploy_adds_every_object_over_the_placeholder(gitops: Context) -> None:
    merge_revert(gitops, revert(gitops, FIRST, deploy(gitops, FIRST, DEPLOYMENT)))

    diff = diff_manifests(gitops.gitops.read(MANIFESTS) or "", DEPLOYMENT)

    assert [(c.action, c.key) for c in diff.changes] == [("added", "Deployment/web")]


def test_reverting_a_failed_deploy_over_the_placeholder_writes_a_new_one(gitops: Context) -> None:
    merge_revert(gitops, revert(gitops, FIRST, deploy(gitops, FIRST, DEPLOYMENT)))
    merge = deploy(gitops, SECOND, DEPLOYMENT.replace("replicas: 2", "replicas: 3"))

    reverted = revert(gitops, SECOND, merge)

    assert reverted.removed
    merge_revert(gitops, reverted)
    assert gitops.gitops.read(MANIFESTS) == placeholder_manifests("sample-app", "staging", SECOND)


def test_reverting_a_later_deploy_restores_the_manifests_before_it(gitops: Context) -> None:
    deploy(gitops, FIRST, DEPLOYMENT)
    merge = deploy(gitops, SECOND, DEPLOYMENT.replace("replicas: 2", "replicas: 3"))

    reverted = revert(gitops, SECOND, merge)

    assert not reverted.removed
    merge_revert(gitops, reverted)
    assert gitops.gitops.read(MANIFESTS) == DEPLOYMENT


class Endpoint:
    """What the app's endpoint on loopback answers every GET with: `status` and `body`."""

    def __init__(self) -> None:
        self.status, self.body = 200, ""
        self.url = ""


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    endpoint = Endpoint()

    class Answer(Handler):
        def do_GET(self) -> None:
            self.answer(endpoint.status, endpoint.body.encode())

    with serving(Answer) as url:
        endpoint.url = f"{url}/version"
        yield endpoint


def verify_after_rollback(
    gitops: Context, url: str, *, removed: bool, previous: str | None = None
) -> object:
    """Verify staging after rolling SECOND back, with a one-second timeout."""
    check = VerifyConfig(url=url, expected_body='"commit": "{commit}"', timeout_s=1)
    verify_input = VerifyInput(
        rollout=rollout(gitops, SECOND, check),
        commit=previous,
        rolled_back_from=SECOND,
        removed=removed,
    )
    return ActivityEnvironment().run(verify_endpoint, verify_input)


def test_after_removing_the_app_no_answer_counts_as_rolled_back(gitops: Context) -> None:
    outcome = verify_after_rollback(gitops, f"http://127.0.0.1:{closed_port()}/", removed=True)
    assert outcome.synced and "ConnectError" in outcome.message


@pytest.mark.parametrize(("status", "body"), [(404, "not found"), (200, '{"commit": "other"}')])
def test_after_removing_the_app_any_answer_but_the_failed_commit_counts_as_rolled_back(
    gitops: Context, endpoint: Endpoint, status: int, body: str
) -> None:
    endpoint.status, endpoint.body = status, body
    outcome = verify_after_rollback(gitops, endpoint.url, removed=True)
    assert outcome.synced and outcome.message == f"{endpoint.url}: {status} {body!r}"


def test_after_removing_the_app_the_failed_commit_still_serving_fails_verification(
    gitops: Context, endpoint: Endpoint
) -> None:
    endpoint.body = f'{{"commit": "{SECOND}"}}'
    outcome = verify_after_rollback(gitops, endpoint.url, removed=True)
    assert not outcome.synced
    assert outcome.message.startswith(
        f"{endpoint.url} did not stop serving {SECOND[:12]!r} within 1s; last answer: 200"
    )


def test_a_rollback_to_a_previous_commit_still_needs_it_to_answer(
    gitops: Context, endpoint: Endpoint
) -> None:
    refused = verify_after_rollback(
        gitops, f"http://127.0.0.1:{closed_port()}/", removed=False, previous=FIRST
    )
    assert not refused.synced and f"""containing '"commit": "{FIRST}"'""" in refused.message
    endpoint.body = f'{{"commit": "{FIRST}"}}'
    assert verify_after_rollback(gitops, endpoint.url, removed=False, previous=FIRST).synced


def deploy_recorded(context: Context, commit: str) -> str:
    """Merge `commit`'s manifests with Baton's record of what they were rendered from."""
    record = RenderedFrom.of(fake_artifact("sample-app", commit), "staging", {})
    branch = rollout_branch("sample-app", "staging", commit)
    also = {beside(MANIFESTS, RENDERED_FROM): record.to_text()}
    context.gitops.propose(branch, MANIFESTS, DEPLOYMENT, "Deploy", also=also)
    pr = context.forge.open_pull_request("gitops", branch, "main", "Deploy", "", author="baton")
    return context.forge.merge_pull_request("gitops", pr.number, pr.head_sha)


def check_running(gitops: Context, url: str) -> object:
    """Check staging's verification for the version it runs, before rolling SECOND out."""
    check = VerifyConfig(url=url, expected_body='"commit": "{commit}"', timeout_s=1)
    return ActivityEnvironment().run(verify_running, rollout(gitops, SECOND, check))


def test_verification_is_not_checked_where_nothing_runs_yet(gitops: Context) -> None:
    outcome = check_running(gitops, f"http://127.0.0.1:{closed_port()}/version")
    assert outcome.synced and outcome.reason == "nothing runs yet"


def test_verification_answering_for_the_running_version_lets_the_rollout_go_on(
    gitops: Context, endpoint: Endpoint
) -> None:
    deploy_recorded(gitops, FIRST)
    endpoint.body = f'{{"commit": "{FIRST}"}}'

    outcome = check_running(gitops, endpoint.url)

    assert outcome.synced and outcome.revision == FIRST


@pytest.mark.parametrize("wrong", ["closed port", "other path"])
def test_a_wrong_verify_url_says_verification_is_broken(
    gitops: Context, endpoint: Endpoint, wrong: str
) -> None:
    deploy_recorded(gitops, FIRST)
    endpoint.body = f'{{"commit": "{FIRST}"}}'
    url = f"http://127.0.0.1:{closed_port()}/version" if wrong == "closed port" else endpoint.url
    if wrong == "other path":
        endpoint.status = 404

    outcome = check_running(gitops, url)

    assert not outcome.synced
    assert outcome.message.startswith(
        f"verification is broken: {url} does not answer for the running version: the running "
        f"""version ({FIRST[:12]}) did not answer 200 containing '"commit": "{FIRST}"' within 1s"""
    )
    assert outcome.message.endswith(
        "fix the verify settings of staging in the configuration (url, expected_status, "
        "expected_body), then retry the change"
    )
