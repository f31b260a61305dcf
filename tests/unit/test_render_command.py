"""`baton render` prints exactly what the rollout commits, and the rollout's GitOps commit says
what the manifests were rendered from: the real render and propose activities, a real registry
(CNCF distribution) holding the published chart, and the local forge's git repositories."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities import context as activity_context
from activities.context import Context
from activities.deploy import ProposeInput, propose_gitops_change, render_environment
from baton.gitops import rollout_branch
from baton.models import Artifact, Rendered, RolloutInput
from baton.render import split_objects
from tests.conftest import Baton
from tests.fixtures.charts import GREETING, RANDOM_CHART, write_chart
from tests.fixtures.charts import PROD_VALUES as BEFORE
from tests.fixtures.docker import LocalRegistry
from tests.fixtures.homes import head, publish, sample_app_home
from tests.fixtures.manifests import DEPLOYMENT

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MANIFESTS = "rendered/prod/sample-app/manifests.yaml"
RENDERED_FROM = "rendered/prod/sample-app/rendered-from.json"
VALUES = "environments/prod/sample-app/values.yaml"
# Case 25's prod values: text that must stay text all the way to the GitOps commit.
PROD_VALUES = BEFORE + f'greeting: "{GREETING}"\n'


@pytest.fixture
def context(
    tmp_path: Path, registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Context]:
    """Baton's home, config and local forge as both the worker and the `baton` command see them:
    the sample app repository and a GitOps repository with prod's values."""
    ctx, _ = sample_app_home(tmp_path, registry, monkeypatch, PROD_VALUES)
    monkeypatch.setattr(activity_context, "_current", ctx)
    yield ctx


def roll_out(ctx: Context, artifact: Artifact) -> tuple[RolloutInput, Rendered, str]:
    """Render and propose like the rollout does; returns the input, the render, the branch."""
    rollout = RolloutInput(
        change_id="change/sample-app/1",
        app=ctx.config.app("sample-app"),
        environment=ctx.config.environment("prod"),
        artifact=artifact,
        author="alice",
    )
    rendered = ActivityEnvironment().run(render_environment, rollout)
    body = "Deploys sample-app.\n\nBaton-Rollout: rollout/sample-app/prod/" + artifact.commit
    proposal = ProposeInput(rollout=rollout, rendered=rendered, body=body)
    ActivityEnvironment().run(propose_gitops_change, proposal)
    return rollout, rendered, f"refs/heads/{rollout_branch('sample-app', 'prod', artifact.commit)}"


def test_baton_render_prints_byte_for_byte_what_the_rollout_commits(
    context: Context, baton: Baton
) -> None:
    commit = head(context, "sample-app")
    artifact = publish(context, commit)
    _, rendered, branch = roll_out(context, artifact)
    committed = context.gitops.read(MANIFESTS, branch)

    code, printed, err = baton(
        *("render", "sample-app", "--env", "prod", "--commit", commit[:10]),
        *("--image", artifact.image_ref),
    )

    assert (code, err) == (0, "")
    assert committed is not None and printed == committed
    assert GREETING in committed
    assert f'image: "{artifact.image_ref}"' in committed
    # Beside the manifests: what they were rendered from, the chart by digest and prod's values.
    record = json.loads(context.gitops.read(RENDERED_FROM, branch) or "{}")
    assert record["templates"] == {
        "kind": "chart",
        "ref": artifact.chart_ref,
        "version": artifact.chart_version,
        "digest": artifact.chart_digest,
    }
    assert record["image"] == artifact.image_ref and record["commit"] == commit
    assert record["inputs"] == {VALUES: PROD_VALUES}
    assert rendered.template_diff_markdown.startswith(
        f"nothing deployed → sample-app {artifact.chart_version}: "
    )


def test_a_chart_change_shows_as_a_template_diff_from_what_the_environment_runs(
    context: Context,
    tmp_path: Path,
    baton: Baton,
) -> None:
    first = publish(context, head(context, "sample-app"))
    _, _, branch = roll_out(context, first)
    merge(context, branch)
    work = tmp_path / "work"
    git = ["git", "-c", "user.name=alice", "-c", "user.email=alice@example.invalid"]
    subprocess.run(
        ["git", "clone", "-q", context.forge.clone_url("sample-app"), str(work)], check=True
    )
    deployment = work / "chart/templates/deployment.yaml"
    deployment.write_text(deployment.read_text().replace("periodSeconds: 5", "periodSeconds: 7"))
    subprocess.run([*git, "commit", "-qam", "Probe less often"], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=work, check=True)
    second = publish(context, head(context, "sample-app"))

    _, rendered, branch = roll_out(context, second)

    markdown = rendered.template_diff_markdown
    assert markdown.startswith(
        f"sample-app {first.chart_version} → sample-app {second.chart_version}: "
    )
    assert "#### changed: `templates/deployment.yaml`" in markdown
    assert "-            periodSeconds: 5\n+            periodSeconds: 7" in markdown
    assert "#### changed: `Chart.yaml`" in markdown  # the version CI stamps
    full = context.gitops.read("rendered/prod/sample-app/templates.diff", branch) or ""
    assert "+++ b/templates/deployment.yaml" in full
    # Without --image, `baton render` pins what prod runs: the first artifact's image.
    shutil.rmtree(work)
    code, printed, _ = baton("render", "sample-app", "--env", "prod", "--commit", second.commit)
    assert code == 0 and printed == context.gitops.read(MANIFESTS, branch)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("render", "nope", "--env", "prod", "--source", "."),
            "error: config: apps: no app named 'nope'",
        ),
        (
            ("render", "sample-app", "--env", "prod"),
            (
                "error: give the templates with exactly one of --commit SHA (the app repository "
                "at a commit) or --source DIR (a local checkout of it)"
            ),
        ),
        (
            ("render", "sample-app", "--env", "prod", "--commit", "abcdef12"),
            "error: no commit abcdef12 in the app repository sample-app",
        ),
        (
            ("render", "sample-app", "--env", "prod", "--source", ".", "--image", "app:latest"),
            "error: --image 'app:latest' is not pinned by digest: give REPOSITORY@sha256:<64 hex>",
        ),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(
    context: Context,
    baton: Baton,
    args: tuple[str, ...],
    message: str,
) -> None:
    code, printed, err = baton(*args)

    assert (code, printed) == (2, "")
    assert err.strip() == message


def test_render_from_a_local_checkout_with_other_values(
    context: Context,
    tmp_path: Path,
    baton: Baton,
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("replicaCount: 3\nservice: {port: 18083}\n")

    code, printed, err = baton(
        *("render", "sample-app", "--env", "prod", "--source", str(EXAMPLES / "sample-app")),
        *("--values", str(values)),
    )

    assert (code, err) == (0, "")
    deployment = split_objects(printed)["Deployment/sample-app"]["spec"]
    assert deployment["replicas"] == 3
    # Nothing deployed and no --image: the placeholder digest.
    image = f"{context.config.registry.url}/sample-app@sha256:{'0' * 64}"
    assert deployment["template"]["spec"]["containers"][0]["image"] == image


def test_a_chart_that_renders_differently_each_time_fails_with_the_reason(
    context: Context,
    tmp_path: Path,
    baton: Baton,
) -> None:
    source = tmp_path / "app"
    write_chart(source / "chart", RANDOM_CHART)

    code, printed, err = baton("render", "sample-app", "--env", "prod", "--source", str(source))

    assert (code, printed) == (2, "")
    assert err.startswith(
        "error: sample-app does not render the same twice for prod: "
        "Secret/prod/sample-app-docker-registry-secret: data.haSharedSecret differ between "
    )
    assert err.count("\n") == 1


def merge(context: Context, branch: str) -> None:
    pr = context.forge.find_pull_request("gitops", branch.removeprefix("refs/heads/"))
    if pr is None:
        pr = context.forge.open_pull_request("gitops", branch, "main", "Edit", "", author="bob")
    context.forge.merge_pull_request("gitops", pr.number, pr.head_sha)


def test_a_values_change_alone_shows_as_the_values_diff(context: Context) -> None:
    artifact = publish(context, head(context, "sample-app"))
    merge(context, roll_out(context, artifact)[2])
    context.gitops.propose(
        "edit", VALUES, PROD_VALUES.replace("replicaCount: 1", "replicaCount: 2"), "Scale"
    )
    merge(context, "edit")

    _, rendered, _ = roll_out(context, artifact.model_copy(update={"commit": "e" * 40}))

    markdown = rendered.template_diff_markdown
    assert markdown.startswith(f"sample-app {artifact.chart_version} → sample-app ")
    assert f"#### changed: `{VALUES}`\n\n```diff\n" in markdown
    assert "-replicaCount: 1\n+replicaCount: 2" in markdown
    assert "templates/" not in markdown  # the same chart: no file of it changed


def test_manifests_deployed_without_a_record_get_no_template_diff(context: Context) -> None:
    context.gitops.propose("by-hand", MANIFESTS, DEPLOYMENT, "Deployed by hand")
    merge(context, "by-hand")

    _, rendered, _ = roll_out(context, publish(context, head(context, "sample-app")))

    assert rendered.template_diff_markdown == (
        "prod runs manifests rendered before Baton recorded their templates: "
        "no template diff this time."
    )
