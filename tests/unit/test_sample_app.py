"""The example application repository passes the checks Baton's pipelines run on it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from baton.tools import PROJECT_ROOT, find_tool

APP_DIR = PROJECT_ROOT / "examples" / "sample-app"
CHART = APP_DIR / "chart"
ENVIRONMENTS = PROJECT_ROOT / "examples" / "gitops" / "environments"
ENV_PORTS = {"dev": 18081, "staging": 18082, "prod": 18083}
DIGEST = "sha256:" + "ab" * 32
REPOSITORY = "127.0.0.1:5000/sample-app"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=APP_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def render(*values: Path, set_values: tuple[str, ...] = ()) -> list[dict]:
    args: list[str | Path] = [find_tool("helm"), "template", "sample-app", CHART]
    for path in values:
        args += ["-f", path]
    for item in set_values:
        args += ["--set", item]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def container(objects: list[dict]) -> dict:
    """The app container of the one rendered Deployment."""
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return deployment["spec"]["template"]["spec"]["containers"][0]


def assert_valid(objects: list[dict]) -> None:
    assert {o["kind"] for o in objects} == {"Deployment", "Service"}
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30", strict=True)


@pytest.mark.parametrize("suite", ["tests", "tests_long"])
def test_app_test_suites_pass(suite: str) -> None:
    result = run(sys.executable, "-m", "unittest", "discover", "-s", suite)
    assert result.returncode == 0, result.stderr


def test_app_passes_its_lint() -> None:
    result = run(find_tool("ruff"), "check", ".")
    assert result.returncode == 0, result.stdout


def test_dockerfile_passes_hadolint() -> None:
    result = run(find_tool("hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("values", [(), ("ci/test-values.yaml",)], ids=["defaults", "ci"])
def test_chart_passes_strict_helm_lint(values: tuple[str, ...]) -> None:
    args = [a for v in values for a in ("-f", str(CHART / v))]
    result = run(find_tool("helm"), "lint", "--strict", CHART, *args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_renders_valid_manifests_with_ci_test_values() -> None:
    objects = render(CHART / "ci" / "test-values.yaml")
    assert_valid(objects)
    assert "@sha256:" in container(objects)["image"]


def test_chart_without_digest_uses_the_tag() -> None:
    objects = render(set_values=("image.tag=1.2.3",))
    assert_valid(objects)
    assert container(objects)["image"] == "registry.example/sample-app:1.2.3"


@pytest.mark.parametrize("env", sorted(ENV_PORTS))
def test_environment_renders_pinned_by_digest(env: str) -> None:
    objects = render(
        ENVIRONMENTS / env / "sample-app" / "values.yaml",
        set_values=(f"image.repository={REPOSITORY}", f"image.digest={DIGEST}"),
    )
    assert_valid(objects)
    app = container(objects)
    assert app["image"] == f"{REPOSITORY}@{DIGEST}"
    assert app["ports"][0]["containerPort"] == ENV_PORTS[env]
    assert {e["name"]: e["value"] for e in app["env"]} == {
        "PORT": str(ENV_PORTS[env]),
        "HOST": "127.0.0.1",
        "APP_ENV": env,
    }
