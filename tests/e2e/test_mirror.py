"""Third-party images mirrored into Baton's registry by digest, from a second registry on loopback
standing in for the third party's; a digest change upstream (a security update) is mirrored under
a new readable tag and shown as an update waiting."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from baton.images import build_image, push_image
from baton.mirror import ARTIFACT_TYPE, CONFIG_COMMIT, SOURCE, SOURCE_DIGEST
from baton.registry import Registry
from baton.tools import PROJECT_ROOT

pytestmark = pytest.mark.docker


def push_upstream(docker_client, base_image, upstream, tmp_path: Path, repository: str) -> str:
    """Build a small image of its own content, push it upstream as `repository:1.0`; its digest."""
    (tmp_path / "Dockerfile").write_text(
        f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo {secrets.token_hex(8)} > /release\n"
    )
    tag = f"{upstream.host}/{repository}:1.0"
    built = build_image(tmp_path, [tag], buildargs={"BASE_IMAGE": base_image})
    try:
        with Registry(upstream.url, upstream.username, upstream.password) as reg:
            return push_image(built.image_id, reg, repository, "1.0", client=docker_client)
    finally:
        docker_client.images.remove(tag)


def baton(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=PROJECT_ROOT,
        env={**os.environ, "BATON_HOME": str(home), **env},
    )


@pytest.fixture
def mirror_config(tmp_path: Path, registry, upstream_registry) -> tuple[Path, str, str]:
    """A baton.yaml asking for one mirrored image, committed in a git repository: (file, commit,
    the mirror's repository name)."""
    name = f"mirror/tool-{secrets.token_hex(3)}"
    repo = tmp_path / "config"
    repo.mkdir()
    (repo / "baton.yaml").write_text(
        f"""
registry:
  url: {registry.host}
  credentials: {{username: {registry.username}, token_env: TEST_REGISTRY_PASSWORD}}
apps:
  - {{name: web, repo: web, chart: chart, image: web}}
images:
  mirror:
    - source: {upstream_registry.host}/vendor/{name.split("/")[1]}:1.0
      name: {name}
      plain_http: true
      credentials: {{username: {upstream_registry.username}, token_env: TEST_UPSTREAM_PASSWORD}}
"""
    )
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "baton.yaml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "mirror the tool"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return repo / "baton.yaml", commit, name


def test_a_mirrored_image_keeps_its_digest_and_an_upstream_update_gets_a_new_readable_tag(
    docker_client, base_image, registry, upstream_registry, mirror_config, tmp_path
):
    config, commit, name = mirror_config
    upstream_repo = f"vendor/{name.split('/')[1]}"
    home = tmp_path / "home"
    env = {
        "TEST_REGISTRY_PASSWORD": registry.password,
        "TEST_UPSTREAM_PASSWORD": upstream_registry.password,
    }
    first = push_upstream(docker_client, base_image, upstream_registry, tmp_path, upstream_repo)

    mirrored = baton(home, "images", "mirror", "--config", str(config), env=env)

    assert mirrored.returncode == 0, mirrored.stderr
    readable = f"1.0-{first.removeprefix('sha256:')[:12]}"
    source = f"{upstream_registry.host}/{upstream_repo}:1.0"
    assert mirrored.stdout.strip() == f"{source} -> {registry.host}/{name}:{readable}"
    with Registry(registry.url, registry.username, registry.password) as ours:
        assert ours.manifest_digest(name, readable) == first
        assert ours.manifest_digest(name, "1.0") == first
        (attached,) = ours.referrers(name, first)
    assert attached["artifactType"] == ARTIFACT_TYPE
    assert attached["annotations"] == {
        SOURCE: source,
        SOURCE_DIGEST: first,
        CONFIG_COMMIT: commit,
    }
    (listed,) = json.loads(baton(home, "images", "ls", "--json", env=env).stdout)
    assert listed["source_digest"] == first
    assert listed["config_commit"] == commit
    assert listed["update_waiting"] is False

    # The same tag upstream now names a new image: a security update.
    second = push_upstream(docker_client, base_image, upstream_registry, tmp_path, upstream_repo)
    again = baton(home, "images", "mirror", "--config", str(config), env=env)

    assert again.returncode == 0, again.stderr
    updated = f"1.0-{second.removeprefix('sha256:')[:12]}"
    assert again.stdout.strip() == (
        f"{source} -> {registry.host}/{name}:{updated} (update: was {first})"
    )
    with Registry(registry.url, registry.username, registry.password) as ours:
        assert ours.manifest_digest(name, updated) == second
        assert ours.manifest_digest(name, readable) == first  # the old pin still resolves
        assert ours.manifest_digest(name, "1.0") == second
        assert [a["annotations"][SOURCE_DIGEST] for a in ours.referrers(name, second)] == [second]
        assert len(ours.referrers(name, first)) == 1  # mirroring again attached nothing new
    shown = baton(home, "images", "ls", env=env).stdout
    assert f"{registry.host}/{name}:{updated}  {source}@{second[:19]}" in shown
    assert "update waiting" in shown


def test_a_source_tag_that_does_not_exist_is_one_line(
    registry, upstream_registry, mirror_config, tmp_path
):
    config, _, _ = mirror_config
    env = {
        "TEST_REGISTRY_PASSWORD": registry.password,
        "TEST_UPSTREAM_PASSWORD": upstream_registry.password,
    }

    failed = baton(tmp_path / "home", "images", "mirror", "--config", str(config), env=env)

    assert failed.returncode == 2
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith("error: images.mirror ")
    assert line.endswith(":1.0: the source registry has no such tag: check the source reference")
