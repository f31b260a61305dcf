"""The GitOps repository's layout in the configuration: every app keeps to paths of its own."""

from __future__ import annotations

import pytest

from baton.config import ConfigError, parse_config
from tests.fixtures.cli import run_baton

TWO_APPS = """
apps:
  - {name: web, repo: web, image: web, chart: chart}
  - {name: api, repo: api, image: api, chart: chart}
"""


def test_two_apps_cannot_share_one_manifests_path(tmp_path) -> None:
    config = tmp_path / "baton.yaml"
    config.write_text(TWO_APPS + "gitops: {path: 'rendered/{env}'}\n")

    checked = run_baton("config", "check", str(config))

    assert checked.returncode == 2
    assert (
        checked.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "gitops.path: 'rendered/{env}' is the same for apps web, api: each would overwrite "
            "the others' files; put {app} in it"
        )
    )
    assert "Traceback" not in checked.stderr


def test_one_app_may_use_a_path_without_its_name() -> None:
    config = parse_config(
        TWO_APPS.split("  - {name: api")[0] + "gitops: {path: 'rendered/{env}'}\n"
    )
    assert config.gitops.path == "rendered/{env}"


def test_values_are_per_app_only_among_helm_apps() -> None:
    kustomize = "  - {name: shop, repo: shop, image: shop, kustomize: deploy}\n"
    one_chart = TWO_APPS.split("  - {name: api")[0] + kustomize
    assert parse_config(one_chart + "gitops: {values: 'values/{env}.yaml'}\n")
    with pytest.raises(ConfigError, match=r"gitops.values: .* apps web, api"):
        parse_config(TWO_APPS + "gitops: {values: 'values/{env}.yaml'}\n")


def test_environments_on_one_branch_cannot_share_a_manifests_path() -> None:
    envs = "environments: [{name: dev, namespace: dev}, {name: prod, namespace: prod}]\n"
    with pytest.raises(ConfigError) as shared:
        parse_config(TWO_APPS + envs + "gitops: {path: 'rendered/{app}'}\n")
    (problem,) = shared.value.problems
    assert problem == (
        "gitops.path: 'rendered/{app}' is the same for environments dev, prod on one branch: "
        "each would overwrite the others' manifests; put {env} in it, or set gitops.layout: "
        "branches"
    )
    layout = "gitops: {path: 'rendered/{app}', layout: branches}\n"
    assert parse_config(TWO_APPS + envs + layout).gitops.branch_of("prod") == "env/prod"
    clusters = "environments: [{name: dev, namespace: a, cluster: one}, "
    clusters += "{name: prod, namespace: b, cluster: two}]\n"
    assert parse_config(TWO_APPS + clusters + "gitops: {path: '{cluster}/{app}'}\n")
