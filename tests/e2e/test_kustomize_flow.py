"""The Kustomize sample app from PR to prod on the embedded stack, as `baton demo --app` runs it:
CI publishes its kustomization as a Flux OCI artifact, CD renders each environment from that
bundle with the environment's overlay from the GitOps repository, the image pinned by digest,
then the same GitOps PRs, approvals, sync and verification as for the Helm sample."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.e2e.stack import ENVIRONMENTS, KUSTOMIZE_APP, E2EStack

pytestmark = pytest.mark.docker


def gitops_file(stack: E2EStack, path: str) -> str:
    repo = stack.forge().repo_path("gitops")
    return subprocess.run(
        ["git", f"--git-dir={repo}", "show", f"refs/heads/main:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_demo_carries_the_kustomize_sample_from_pr_to_prod(baton_stack: E2EStack) -> None:
    run = baton_stack.baton("demo", "--app", KUSTOMIZE_APP, "--auto-approve", "--json")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["state"] == "completed", summary["reason"]
    commit = summary["commit"]
    served = {r["environment"]: r["version"] for r in summary["environments"]}
    assert served == {
        env: {"app": KUSTOMIZE_APP, "commit": commit, "environment": env} for env in ENVIRONMENTS
    }
    urls = {r["environment"]: r["url"] for r in summary["environments"]}
    assert urls == {
        env: f"http://127.0.0.1:{baton_stack.ports[f'{KUSTOMIZE_APP}/{env}']}/version"
        for env in ENVIRONMENTS
    }

    artifact = baton_stack.status(summary["change_id"]).artifact
    assert artifact is not None
    assert artifact.kustomize_digest == baton_stack.registry_digest(
        f"kustomize/{KUSTOMIZE_APP}", commit
    )
    assert artifact.kustomize_path == "deploy/overlays/production"

    merged = baton_stack.forge().list_pull_requests("gitops", state="merged")
    prs = {p.head_branch.split("/")[2]: p for p in merged if p.head_branch.endswith(commit[:12])}
    assert sorted(prs) == sorted(ENVIRONMENTS)
    for env in ENVIRONMENTS:
        manifests = gitops_file(baton_stack, f"rendered/{env}/{KUSTOMIZE_APP}/manifests.yaml")
        objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(manifests)}
        deployment = objects[("Deployment", KUSTOMIZE_APP)]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == artifact.image_ref
        settings = container["envFrom"][0]["configMapRef"]["name"]
        assert settings.startswith(f"{KUSTOMIZE_APP}-settings-")  # the generator's hash suffix
        assert objects[("ConfigMap", settings)]["data"]["APP_ENV"] == env
        # The PR showed reviewers the rendered objects, the generated ConfigMap among them, and
        # the template diff: the published bundle's files and the environment's overlay.
        body = prs[env].body
        assert f"`ConfigMap/{env}/{settings}`" in body
        assert f"nothing deployed → {KUSTOMIZE_APP} {commit[:12]}" in body
        assert "deploy/overlays/production/probes.json" in body
        assert f"environments/{env}/{KUSTOMIZE_APP}/kustomization.yaml" in body
        record = json.loads(
            gitops_file(baton_stack, f"rendered/{env}/{KUSTOMIZE_APP}/rendered-from.json")
        )
        assert record["templates"] == {
            "kind": "bundle",
            "ref": artifact.kustomize_ref,
            "version": commit,
            "digest": artifact.kustomize_digest,
            "path": "deploy/overlays/production",
        }
