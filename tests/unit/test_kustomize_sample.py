"""The Kustomize sample app (examples/sample-kustomize) passes CI's checks, and each environment's
inputs in the example GitOps repository render what the local cluster runs there."""

from __future__ import annotations

import pytest

from baton.checks import hadolint, kustomize_build, render_and_validate, run_check
from baton.config import load_config
from baton.local.cluster import read_workload
from baton.logs import LogStore
from baton.models import PinnedImage
from baton.render import KustomizeRenderer, validate_manifests
from baton.tools import PROJECT_ROOT

EXAMPLES = PROJECT_ROOT / "examples"
APP = load_config(EXAMPLES / "baton.yaml").app("sample-kustomize")
REPO = EXAMPLES / APP.repo
PINNED = PinnedImage(repository="127.0.0.1:5000/sample-kustomize", digest="sha256:" + "ab" * 32)
PORTS = {"dev": 18091, "staging": 18092, "prod": 18093}


@pytest.fixture
def logs(tmp_path) -> LogStore:
    return LogStore(tmp_path / "logs")


def test_app_tests_and_lint_pass(logs) -> None:
    for command in [*APP.commands.lint, *APP.commands.test]:
        result = run_check("command", command, REPO, logs=logs)
        assert result.passed, f"{command}: {result.summary}"


def test_dockerfile_passes_hadolint(logs) -> None:
    result = hadolint(REPO / APP.dockerfile, logs=logs)
    assert result.passed, result.summary


def test_ci_checks_pass_on_the_layout(logs) -> None:
    assert APP.kustomize is not None and APP.test_values is not None
    lint = kustomize_build(REPO / APP.kustomize, root=REPO, logs=logs)
    assert lint.passed, lint.summary
    renderer = KustomizeRenderer(
        REPO / APP.kustomize, image_name=APP.image, components=[REPO / APP.test_values]
    )
    rendered = render_and_validate(
        "rendered", renderer, release=APP.name, namespace="ci", image=PINNED, logs=logs
    )
    assert rendered.passed, rendered.summary


@pytest.mark.parametrize("env", sorted(PORTS))
def test_each_environment_runs_the_pinned_image_with_its_settings(env: str) -> None:
    assert APP.kustomize is not None
    overlay = EXAMPLES / "gitops" / "environments" / env / APP.name
    renderer = KustomizeRenderer(REPO / APP.kustomize, image_name=APP.image, components=[overlay])
    manifests = renderer.render(APP.name, env, image=PINNED)
    assert validate_manifests(manifests) == []

    workload = read_workload(manifests, f"{env}/{APP.name}", env)
    assert workload is not None
    assert workload.image == PINNED.ref
    # From the generated ConfigMap, as merged by the environment's component.
    assert {k: workload.environment[k] for k in ("APP_ENV", "HOST", "PORT")} == {
        "APP_ENV": env,
        "HOST": "127.0.0.1",
        "PORT": str(PORTS[env]),
    }
    assert workload.ports == [PORTS[env]]
    assert workload.readiness_url == f"http://127.0.0.1:{PORTS[env]}/healthz"
    assert workload.read_only and workload.cap_drop == ["ALL"]
