"""`baton.yaml` validation and `baton config check`."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from baton.config import ConfigError, parse_config
from baton.tools import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "examples" / "baton.yaml"

APP = """
apps:
  - name: web
    repo: web
    image: web
    chart: chart
"""


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "config", "check", str(path)],
        check=False,
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_example_config_is_valid_and_keeps_promotion_order() -> None:
    result = check(EXAMPLE)
    assert result.returncode == 0, result.stderr
    config = parse_config(EXAMPLE.read_text())
    assert [e.name for e in config.promotion_order()] == ["dev", "staging", "prod"]
    prod = config.environment("prod")
    assert prod.approvals.required == 2
    assert not prod.approvals.allow_self_approval


def test_check_prints_one_line_per_problem_with_field_path(tmp_path: Path) -> None:
    bad = tmp_path / "baton.yaml"
    bad.write_text(
        APP
        + """
environments:
  - {name: dev, namespace: dev}
  - {name: qa, namespace: qa}
  - {name: prod, namespace: prod, approvals: {required: -1}}
registry: {url: "http://127.0.0.1:5000"}
"""
    )
    result = check(bad)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert f"{bad}: environments[2].approvals.required: must be >= 0" in lines
    assert any("registry.url: give host[:port] without a scheme" in line for line in lines)
    assert len(lines) == 2
    assert "Traceback" not in result.stderr


def test_unknown_field_names_the_field() -> None:
    assert problems(APP + "colour: red\n") == [
        "colour: unknown field: remove it or check its spelling"
    ]


def test_promotion_must_name_defined_environments() -> None:
    text = APP + "environments: [{name: dev, namespace: dev}]\npromotion: [dev, prod]\n"
    assert problems(text) == [
        "promotion names unknown environment(s) prod: define them under environments"
    ]


def test_policy_cannot_require_more_approvers_than_allowed() -> None:
    text = (
        APP
        + "environments: [{name: prod, namespace: p, approvals: {required: 3, approvers: [a, b]}}]"
    )
    (problem,) = problems(text)
    assert problem.startswith("environments[0].approvals: requires 3 distinct approvers")


def test_app_needs_exactly_one_template_kind() -> None:
    text = "apps: [{name: web, repo: web, image: web}]"
    assert problems(text) == [
        "apps[0]: set exactly one of chart (Helm chart path) or kustomize (path)"
    ]


def test_hosted_forge_needs_url() -> None:
    (problem,) = problems(APP + "forge: {kind: github}")
    assert problem == "forge: forge.kind 'github' needs forge.url (the API base URL)"


def test_invalid_yaml_and_missing_file_are_one_line(tmp_path: Path) -> None:
    assert problems("apps: [\n")[0].startswith("not valid YAML at line")
    result = check(tmp_path / "missing.yaml")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot read" in result.stderr


def test_secrets_are_names_not_values() -> None:
    text = APP + "registry: {credentials: {username: u, password: hunter2}}"
    assert problems(text) == [
        "registry.credentials.password: unknown field: remove it or check its spelling"
    ]


def test_security_approvals_need_enough_people() -> None:
    text = APP + (
        "environments: [{name: prod, namespace: p, approvals: "
        "{required: 2, approvers: [a, b], security: {required: 1}}}]"
    )
    (problem,) = problems(text)
    assert "a security-sensitive diff needs 3 distinct approvers but only 2 are allowed" in problem


def test_a_group_in_the_approver_list_may_stand_for_several_approvers() -> None:
    text = APP + (
        "environments: [{name: prod, namespace: p, "
        "approvals: {required: 3, approvers: [carol, 'group:release-managers']}}]"
    )
    approvals = parse_config(text).environment("prod").approvals
    assert approvals.approvers == ["carol", "group:release-managers"]


def test_expire_after_is_a_duration() -> None:
    ok = APP + "environments: [{name: prod, namespace: p, approvals: {expire_after: 24h}}]"
    assert parse_config(ok).environment("prod").approvals.lifetime == timedelta(hours=24)
    bad = APP + "environments: [{name: prod, namespace: p, approvals: {expire_after: 1 day}}]"
    (problem,) = problems(bad)
    assert problem == (
        "environments[0].approvals.expire_after: '1 day' is not a duration: give e.g. 30m, "
        "12h, 1d or 2w"
    )


def test_the_oidc_issuer_accepts_asymmetric_algorithms_only() -> None:
    text = (
        APP + "auth: {oidc: {issuer: https://id.example.com, audience: baton, algorithms: [HS256]}}"
    )
    (problem,) = problems(text)
    assert problem.startswith("auth.oidc.algorithms[0]: Input should be 'RS256'")


def test_release_branch_is_a_branch_name() -> None:
    config = parse_config(APP.replace("repo: web", "repo: web\n    branch: refs/heads/release"))
    assert config.apps[0].branch == "release"
    assert problems(APP.replace("repo: web", "repo: web\n    branch: ' '")) == [
        "apps[0].branch: give the release branch's name, e.g. main"
    ]


def test_hosted_forges_match_repositories_ignoring_case_the_local_forge_does_not() -> None:
    github = "forge: {kind: github, url: https://api.github.com}\n"
    hosted = parse_config(github + APP.replace("repo: web", "repo: acme/Web"))
    assert hosted.app_for_repo("ACME/web") is hosted.apps[0]
    local = parse_config(APP)
    assert local.app_for_repo("WEB") is None and local.app_for_repo("web") is local.apps[0]
