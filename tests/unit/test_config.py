"""`baton.yaml` validation and `baton config check`."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from baton.config import (
    DURATION_HINT,
    AppConfig,
    ConfigError,
    duration,
    parse_config,
    parse_duration,
    topology_warnings,
)
from baton.tools import PROJECT_ROOT
from tests.fixtures.cli import run_baton

EXAMPLE = PROJECT_ROOT / "examples" / "baton.yaml"

APP = """
apps:
  - name: web
    repo: web
    image: web
    chart: chart
"""


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return run_baton("config", "check", str(path))


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
        "promotion[1]: unknown environment 'prod': define it under environments (dev)"
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


def test_long_tests_ahead_need_long_tests_and_one_of_two_values() -> None:
    app = "apps: [{name: web, repo: web, image: web, chart: chart, ci: {long_tests: %s}}]"
    empty = (
        "apps[0]: ci.long_tests: pull_request starts the long tests ahead, but "
        "commands.long_test is empty: add the long test commands or remove ci.long_tests"
    )
    assert problems(app % "pull_request") == [empty]
    assert problems(app % "pr") == [
        "apps[0].ci.long_tests: Input should be 'merge' or 'pull_request'"
    ]
    with_tests = app.replace("chart: chart,", "chart: chart, commands: {long_test: [make it]},")
    assert parse_config(with_tests % "pull_request").app("web").long_tests_ahead
    assert not parse_config(with_tests % "merge").app("web").long_tests_ahead


def test_long_tests_start_ahead_by_default_when_the_app_has_them() -> None:
    app = "apps: [{name: web, repo: web, image: web, chart: chart%s}]"
    assert not parse_config(app % "").app("web").long_tests_ahead
    assert parse_config(app % ", commands: {long_test: [make it]}").app("web").long_tests_ahead
    # A batch's newest commit rarely has a PR head's tree: CI on a schedule keeps them.
    batched = ", commands: {long_test: [make it]}, ci: {schedule: '@hourly'%s}"
    assert not parse_config(app % (batched % "")).app("web").long_tests_ahead
    explicit = batched % ", long_tests: pull_request"
    assert parse_config(app % explicit).app("web").long_tests_ahead


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


KUSTOMIZE_APPS = """
apps:
  - name: web
    repo: web
    image: web
    chart: chart
  - name: shop
    repo: shop
    image: shop
    kustomize: deploy/overlays/production
    test_values: deploy/ci
    verify:
      dev: {url: "http://127.0.0.1:18091/version", expected_body: "{commit}"}
environments:
  - {name: dev, namespace: dev, verify: {url: "http://127.0.0.1:18081/version"}}
  - {name: prod, namespace: prod, verify: {url: "http://127.0.0.1:18083/version"}}
"""


def test_an_apps_own_verify_replaces_the_environments_for_that_app_only() -> None:
    config = parse_config(KUSTOMIZE_APPS)
    shop = [e.verify.url for e in config.promotion_order(config.app("shop")) if e.verify]
    web = [e.verify.url for e in config.promotion_order(config.app("web")) if e.verify]
    assert shop == ["http://127.0.0.1:18091/version", "http://127.0.0.1:18083/version"]
    assert web == ["http://127.0.0.1:18081/version", "http://127.0.0.1:18083/version"]


def test_an_apps_verify_for_an_unknown_environment_is_refused() -> None:
    text = KUSTOMIZE_APPS.replace("      dev: {url", "      qa: {url")
    assert problems(text) == [
        "app shop: verify names unknown environment(s) qa: use the names under environments"
    ]


def test_an_environments_kustomization_name_is_per_app() -> None:
    from baton.cluster.base import kustomization_name

    config = parse_config(EXAMPLE.read_text())
    prod = config.environment("prod")
    names = {kustomization_name(prod, app.name) for app in config.apps}
    assert names == {"sample-app-prod", "sample-kustomize-prod"}
    assert problems(
        APP + "environments:\n  - {name: dev, namespace: dev, sync: "
        "{kustomization: '{application}-dev'}}\n"
    ) == [
        "environments[0].sync.kustomization: unknown placeholder(s) application: use {app}, {env}"
    ]


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
        f"environments[0].approvals.expire_after: '1 day' is not a duration: give {DURATION_HINT}, "
        "e.g. 90s, 30m, 1h30m or 2w"
    )


def test_reconcile_interval_and_outage_wait_are_durations_with_defaults() -> None:
    config = parse_config(APP)
    assert (duration(config.reconcile.interval), duration(config.outages.wait)) == (
        timedelta(minutes=1),
        timedelta(hours=6),
    )
    tuned = parse_config(APP + "reconcile: {interval: 5m}\noutages: {wait: 1d}")
    assert duration(tuned.reconcile.interval) == timedelta(minutes=5)
    assert duration(tuned.outages.wait) == timedelta(days=1)
    (problem,) = problems(APP + "outages: {wait: forever}")
    assert problem == (
        f"outages.wait: 'forever' is not a duration: give {DURATION_HINT}, "
        "e.g. 90s, 30m, 1h30m or 2w"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2w3d", timedelta(weeks=2, days=3)),
        ("1d12h30m15s", timedelta(days=1, hours=12, minutes=30, seconds=15)),
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_durations_take_seconds_and_flux_compound_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["0s", "0m0s", "30m1h", "1m1m", "1.5h", "1ms", "-5m", "5", "m"])
def test_what_is_not_a_duration(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "reconcile: {interval: 99999999999d}",  # past what a timedelta holds
        "reconcile: {interval: 1000000000d}",
        "outages: {wait: 99999999d}",  # a timedelta, but 270,000 years
        "environments: [{name: prod, namespace: p, approvals: {expire_after: 99999999999w}}]",
    ],
)
def test_a_huge_duration_is_one_problem_not_a_traceback(text: str) -> None:
    (problem,) = problems(APP + text)
    assert f"is not a duration: give {DURATION_HINT}" in problem


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


def test_a_kustomize_app_survives_the_round_trip_through_a_workflow_input() -> None:
    app = parse_config(EXAMPLE.read_text()).app("sample-kustomize")
    assert AppConfig.model_validate_json(app.model_dump_json()) == app


def test_notifications_name_their_variables_and_sign_generic_webhooks() -> None:
    text = APP + (
        "notifications:\n"
        "  - {kind: slack, url_env: SLACK_URL, events: [deployed, merged]}\n"
        "  - {kind: webhook, url_env: HOOK_URL}\n"
        "  - {kind: teams, url_env: TEAMS_URL, secret_env: TEAMS_SECRET}\n"
    )
    assert problems(text) == [
        (
            "notifications[0].events[1]: Input should be 'approval_needed', 'deployed', 'failed' "
            "or 'rolled_back'"
        ),
        "notifications[1]: a generic webhook is signed: set secret_env",
        "notifications[2]: secret_env is for kind webhook; teams URLs carry their token",
    ]


def test_a_key_given_twice_is_refused_not_silently_the_last() -> None:
    twice = APP.replace("repo: web", "repo: web\n    repo: api")
    assert problems(twice) == [
        "not valid YAML at line 5, column 5: 'repo' is given twice in one mapping"
    ]


@pytest.mark.parametrize("url", ["not a url", "127.0.0.1:18081/version", "ftp://host/x", "http://"])
def test_verify_url_must_be_an_http_url(url: str) -> None:
    text = APP + f"environments: [{{name: dev, namespace: dev, verify: {{url: {url!r}}}}}]\n"
    expected = (
        f"environments[0].verify.url: {url!r} is not an http(s) URL: give the address the app "
        "answers on, e.g. http://127.0.0.1:18081/version"
    )
    assert problems(text) == [expected]


def test_ci_schedule_takes_a_cron_temporal_schedules_take(tmp_path: Path) -> None:
    scheduled = parse_config(APP + "    ci: {schedule: '*/30 9-17 * * 1-5'}\n")
    assert scheduled.apps[0].ci.schedule == "*/30 9-17 * * 1-5"
    assert parse_config(APP + "    ci: {schedule: '@hourly'}\n").apps[0].ci.schedule == "@hourly"
    assert parse_config(APP).apps[0].ci.schedule is None  # every commit integrated at once
    bad = tmp_path / "baton.yaml"
    fix = (
        "is not a cron expression: give 5 fields (minute hour day-of-month month day-of-week, "
        "UTC), e.g. '0 */6 * * *', or @hourly, @daily"
    )
    for cron in ("61 * * * *", "0 0 * * * *", "every hour"):
        bad.write_text(APP + f"    ci: {{schedule: '{cron}'}}\n")
        result = check(bad)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert lines == [f"{bad}: apps[0].ci.schedule: {cron!r} {fix}"], result.stderr
    assert problems(APP + "images: {refresh: '0 25 * * *'}\n") == [
        f"images.refresh: '0 25 * * *' {fix}"
    ]


TWO_APPS = (
    APP
    + """  - name: api
    repo: api
    image: api
    chart: chart
"""
)


def test_an_environment_no_stage_names_is_a_warning() -> None:
    text = APP + (
        "environments: [{name: dev, namespace: d}, {name: staging, namespace: s}, "
        "{name: prod, namespace: p}]\npromotion: [dev, prod]\n"
    )
    expected = (
        "environments[1] (staging) is in no stage of promotion: no change deploys there; add it "
        "to promotion or remove it"
    )
    assert topology_warnings(parse_config(text)) == [expected]
    unstaged = text.replace("promotion: [dev, prod]", "promotion: [dev, [staging, prod]]")
    assert topology_warnings(parse_config(unstaged)) == []


def test_cluster_verify_urls_shared_by_several_apps_are_a_warning(tmp_path: Path) -> None:
    env = (
        "environments:\n  - name: prod\n    namespace: p\n    sync: {kind: flux}\n"
        "    clusters:\n"
        "      - {name: eu, verify: {url: 'http://eu.example.com/version'}}\n"
        "      - {name: us}\n"
        "gitops: {repo: gitops, path: 'rendered/{env}/{cluster}/{app}'}\n"
    )
    assert topology_warnings(parse_config(APP + env)) == []  # one app: its own URL
    config = tmp_path / "baton.yaml"
    config.write_text(TWO_APPS + env)

    checked = run_baton("config", "check", str(config))

    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.strip() == (
        f"{config}: warning: environments[0] (prod): the verify of cluster(s) eu is used for "
        "every app there (web, api); give clusters a verify only where one app deploys"
    )


def test_a_scalar_where_a_mapping_or_list_goes_is_named_in_the_configs_words() -> None:
    text = APP + (
        "environments:\n"
        "  - {name: dev, namespace: dev, clusters: [a]}\n"
        "  - {name: prod, namespace: p, clusters: 7, approvals: {approvers: carol}}\n"
    )
    assert problems(text) == [
        "environments[0].clusters[0]: must be a mapping (keys: name, sync, verify); got a",
        "environments[1].clusters: must be a list: write [7] for a list of one",
        "environments[1].approvals.approvers: must be a list: write [carol] for a list of one",
    ]


def test_config_check_takes_the_file_as_config_too_but_not_two_files(tmp_path: Path) -> None:
    checked = run_baton("config", "check", "--config", str(EXAMPLE))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"{EXAMPLE}: ok")
    other = tmp_path / "baton.yaml"
    other.write_text(APP)
    both = run_baton("config", "check", str(EXAMPLE), "--config", str(other))
    assert (both.returncode, both.stderr.strip()) == (
        2,
        f"error: two files given ({EXAMPLE} and --config {other}): give one",
    )
