"""Rendering an app for an environment as CD commits it: rendered twice, with the fields two
renders of the same inputs disagree on named, refused by default, or kept as deployed."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.config import ConfigError, parse_config
from baton.diff import diff_manifests
from baton.environment_render import (
    EnvironmentRender,
    NondeterministicRender,
    render_for_environment,
)
from baton.models import PinnedImage
from baton.render import split_objects
from baton.sensitivity import sensitive_changes
from tests.fixtures.charts import RANDOM_CHART, TIMESTAMP_CHART, write_chart

REGISTRY = "127.0.0.1:5000"
IMAGE = PinnedImage(repository=f"{REGISTRY}/registry", digest="sha256:" + "5" * 64)
VALUES = {"environments/prod/registry/values.yaml": "storage: filesystem\n"}
SECRET_KEY = "Secret/prod/registry-docker-registry-secret"


def app_and_env(nondeterministic: str = "reject"):
    config = parse_config(
        f"""
apps:
  - {{name: registry, repo: registry, chart: chart, image: registry,
      nondeterministic: {nondeterministic}}}
environments:
  - {{name: prod, namespace: prod}}
"""
    )
    return config.app("registry"), config.environment("prod")


def render(
    templates: Path, deployed: str | None = None, *, accept: bool = True, inputs=VALUES
) -> EnvironmentRender:
    """Render `templates` for prod as the rollout does, the app accepting unstable fields or not."""
    app, prod = app_and_env("accept" if accept else "reject")
    return render_for_environment(
        app, prod, templates, inputs=inputs, image=IMAGE, deployed=deployed
    )


def test_a_random_secret_fails_the_render_naming_the_object_and_field(tmp_path: Path) -> None:
    app, prod = app_and_env()

    with pytest.raises(NondeterministicRender) as failed:
        render_for_environment(
            app,
            prod,
            write_chart(tmp_path, RANDOM_CHART),
            inputs=VALUES,
            image=IMAGE,
            deployed=None,
        )

    assert str(failed.value) == (
        "registry does not render the same twice for prod: "
        f"{SECRET_KEY}: data.haSharedSecret differ between two renders of the same inputs "
        "(random values or timestamps in the templates): set them in the environment's "
        "values, or set nondeterministic: accept on app registry to deploy them keeping the "
        "values prod runs"
    )
    assert not failed.value.retryable


def test_an_accepted_random_secret_keeps_its_deployed_value_and_changes_nothing(
    tmp_path: Path,
) -> None:
    app, prod = app_and_env("accept")
    templates = write_chart(tmp_path, RANDOM_CHART)

    first = render_for_environment(app, prod, templates, inputs=VALUES, image=IMAGE, deployed=None)
    second = render_for_environment(
        app, prod, templates, inputs=VALUES, image=IMAGE, deployed=first.manifests
    )

    # Case 15's expected values: the second rollout changes nothing and flags nothing.
    diff = diff_manifests(first.manifests, second.manifests)
    assert [c.key for c in diff.changes] == []
    assert sensitive_changes(first.manifests, second.manifests, REGISTRY) == []
    assert second.unstable == {SECRET_KEY: [("data", "haSharedSecret")]}
    secret = split_objects(second.manifests)[SECRET_KEY]
    assert (
        secret["data"]["haSharedSecret"]
        == (split_objects(first.manifests)[SECRET_KEY]["data"]["haSharedSecret"])
    )
    # The objects that render the same keep helm's text, `# Source:` comments and all.
    assert (
        "---\n# Source: docker-registry/templates/configmap.yaml\napiVersion: v1\nkind: ConfigMap"
        in second.manifests
    )
    assert "# Source: docker-registry/templates/secret.yaml\n" in second.manifests


def test_a_timestamp_is_named_and_kept_as_deployed(tmp_path: Path) -> None:
    templates = write_chart(tmp_path, TIMESTAMP_CHART)
    deployed = render(templates).manifests

    again = render(templates, deployed)

    key = "ConfigMap/registry-stamped"
    assert again.unstable == {key: [("metadata", "annotations", "rollme")]}
    assert diff_manifests(deployed, again.manifests).empty
    with pytest.raises(NondeterministicRender, match=f"{key}: metadata.annotations.rollme"):
        render(templates, deployed, accept=False)


def test_a_real_change_beside_a_random_field_still_shows(tmp_path: Path) -> None:
    templates = write_chart(tmp_path, RANDOM_CHART)
    deployed = render(templates).manifests
    s3 = {path: "storage: s3\nproxy: {username: cache}\n" for path in VALUES}

    changed = render(templates, deployed, inputs=s3)

    diff = diff_manifests(deployed, changed.manifests)
    assert [c.key for c in diff.changes] == ["ConfigMap/registry-config", SECRET_KEY]
    assert "-  proxyUsername: <redacted>\n+  proxyUsername: <redacted, changed>" in (
        diff.changes[1].diff
    )
    assert "haSharedSecret: <redacted>\n" in diff.changes[1].diff  # unchanged: kept


def test_the_setting_takes_only_reject_or_accept_and_rejects_by_default() -> None:
    with pytest.raises(ConfigError) as info:
        app_and_env("maybe")
    assert info.value.problems == ["apps[0].nondeterministic: Input should be 'reject' or 'accept'"]
    unset = parse_config("apps: [{name: web, repo: web, chart: chart, image: web}]")
    assert unset.app("web").nondeterministic == "reject"
