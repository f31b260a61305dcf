"""Environments that span clusters (`environments[].clusters`) in the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.config import ConfigError, parse_config
from baton.gitops import GitOpsRepo
from tests.fixtures.cli import run_baton

APP = "apps: [{name: web, repo: web, image: web, chart: chart}]\n"
PROD = """
environments:
  - name: prod
    namespace: prod
    verify: {url: 'http://127.0.0.1:1/version'}
    sync: {kind: apply}
    clusters:
      - {name: eu}
      - name: us
        sync: {kind: flux, timeout_s: 60}
        verify: {url: 'http://127.0.0.1:2/version'}
"""


def test_each_cluster_sees_the_environment_with_its_own_sync_and_verify() -> None:
    config = parse_config(APP + PROD + "gitops: {path: 'rendered/{env}/{cluster}/{app}'}\n")
    eu, us = config.environment("prod").targets
    assert (eu.name, eu.cluster, eu.sync.kind, str(eu.verify.url)) == (
        "prod",
        "eu",
        "apply",
        "http://127.0.0.1:1/version",
    )
    assert (us.cluster, us.sync.kind, us.sync.timeout_s, str(us.verify.url)) == (
        "us",
        "flux",
        60,
        "http://127.0.0.1:2/version",
    )
    gitops = GitOpsRepo(config.gitops, forge=None, workspace=None)  # type: ignore[arg-type]
    paths = gitops.manifests_paths(config.app("web"), config.environment("prod"))
    assert paths == [
        "rendered/prod/eu/web/manifests.yaml",
        "rendered/prod/us/web/manifests.yaml",
    ]


def test_a_one_cluster_environment_is_its_own_target() -> None:
    env = parse_config(APP + "environments: [{name: dev, namespace: dev}]\n").environment("dev")
    assert env.targets == [env] and env.cluster == "local"


def refused_by_config_check(tmp_path: Path, environments: str, path: str) -> str:
    """The one line `baton config check` refuses the configuration with (exit 2, no traceback)."""
    config = tmp_path / "baton.yaml"
    config.write_text(APP + environments + f"gitops: {{path: '{path}'}}\n")
    checked = run_baton("config", "check", str(config))
    assert checked.returncode == 2 and "Traceback" not in checked.stderr
    return checked.stderr.strip().splitlines()[-1]


def test_config_check_refuses_clusters_sharing_one_path(tmp_path) -> None:
    line = refused_by_config_check(tmp_path, PROD, "rendered/{env}/{app}")
    assert line.endswith(
        "gitops.path: 'rendered/{env}/{app}' is the same for every cluster of prod: each cluster "
        "would read the others' manifests; put {cluster} in it (e.g. rendered/{env}/{cluster}/{app})"
    )


def test_config_check_names_a_cluster_given_twice_by_its_field_path(tmp_path) -> None:
    twice = PROD.replace("{name: eu}", "{name: us}")
    line = refused_by_config_check(tmp_path, twice, "rendered/{env}/{cluster}/{app}")
    assert line.endswith("environments[0]: clusters: us named twice: give each cluster once")


def test_one_cluster_or_several_not_both() -> None:
    both = PROD.replace("    namespace: prod\n", "    namespace: prod\n    cluster: eu\n", 1)
    with pytest.raises(ConfigError, match="set either cluster .* or clusters .*, not both"):
        parse_config(APP + both + "gitops: {path: 'rendered/{env}/{cluster}/{app}'}\n")


def test_values_cannot_differ_per_cluster_of_one_render() -> None:
    gitops = "gitops: {path: 'r/{env}/{cluster}/{app}', values: 'v/{env}/{cluster}/{app}.yaml'}\n"
    with pytest.raises(ConfigError) as refused:
        parse_config(APP + PROD + gitops)
    (problem,) = refused.value.problems
    assert problem.startswith("gitops.values: 'v/{env}/{cluster}/{app}.yaml' names {cluster}")


# Two local clusters, eu verified at the environment's URL, us at its own.
LOCAL = (
    PROD.replace("    sync: {kind: apply}\n", "")
    .replace("{name: eu}", "{name: eu, sync: {kind: local, host_port_offset: 100}}")
    .replace("{kind: flux, timeout_s: 60}", "{kind: local, host_port_offset: 200}")
    .replace("127.0.0.1:1/", "127.0.0.1:18183/")
    .replace("127.0.0.1:2/", "127.0.0.1:18283/")
)


def test_the_local_runtime_hosts_clusters_on_host_ports_of_their_own() -> None:
    config = parse_config(APP + LOCAL + "gitops: {path: 'rendered/{env}/{cluster}/{app}'}\n")
    eu, us = config.environment("prod").targets
    assert (eu.sync.host_port_offset, us.sync.host_port_offset) == (100, 200)


@pytest.mark.parametrize(
    ("eu", "us"),
    [
        ("{kind: local}", "{kind: local}"),
        ("{kind: local, host_port_offset: 0}", "{kind: local}"),
        ("{kind: local, host_port_offset: 100}", "{kind: local, host_port_offset: 100}"),
    ],
)
def test_config_check_refuses_local_clusters_on_the_same_host_ports(
    tmp_path: Path, eu: str, us: str
) -> None:
    same = LOCAL.replace("{kind: local, host_port_offset: 100}", eu).replace(
        "{kind: local, host_port_offset: 200}", us
    )
    line = refused_by_config_check(tmp_path, same, "rendered/{env}/{cluster}/{app}")
    assert line.endswith(
        "environments[0]: clusters: eu and us sync with kind local on the same host ports "
        "(sync.host_port_offset unset or equal): give each its own sync.host_port_offset, "
        "e.g. 100 and 200"
    )


def test_a_local_cluster_beside_a_kubernetes_one_needs_no_offset() -> None:
    mixed = LOCAL.replace("{kind: local, host_port_offset: 200}", "{kind: flux}").replace(
        ", host_port_offset: 100", ""
    )
    config = parse_config(APP + mixed + "gitops: {path: 'rendered/{env}/{cluster}/{app}'}\n")
    eu, us = config.environment("prod").targets
    assert (eu.sync.kind, eu.sync.host_port_offset, us.sync.kind) == ("local", None, "flux")


def test_host_port_offset_is_for_the_local_runtime_only() -> None:
    flux = LOCAL.replace(
        "{kind: local, host_port_offset: 200}", "{kind: flux, host_port_offset: 1}"
    )
    with pytest.raises(ConfigError) as refused:
        parse_config(APP + flux + "gitops: {path: 'rendered/{env}/{cluster}/{app}'}\n")
    (problem,) = refused.value.problems
    assert problem.endswith(
        "host_port_offset is only used with kind: local (Kubernetes publishes ports through "
        "Services)"
    )
