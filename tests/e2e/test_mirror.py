"""Third-party images mirrored into Baton's registry by digest, from a second registry on loopback
standing in for the third party's; a digest change upstream (a security update) is mirrored under
a new readable tag and shown as an update waiting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.worker import Worker

from activities import ACTIVITIES as ALL_ACTIVITIES
from activities import context as activity_context
from activities.context import Context
from baton.config import load_config
from baton.images import build_image, push_image
from baton.mirror import (
    ARTIFACT_TYPE,
    CONFIG_COMMIT,
    SOURCE,
    SOURCE_DIGEST,
    MirroredImage,
    MirrorState,
)
from baton.registry import Registry
from baton.settings import Settings
from baton.temporal import IMAGE_REFRESH_SCHEDULE, TaskQueues, WorkflowTypes
from tests.fixtures.cli import run_baton
from tests.fixtures.ports import free_port
from workflows.images import ImageRefresh

ACTIVITIES = ALL_ACTIVITIES[TaskQueues.BUILD]

pytestmark = pytest.mark.docker


def push_upstream(
    docker_client, base_image, upstream, tmp_path: Path, repository: str, release: str = ""
) -> str:
    """Build a small image of its own content (`/release` holds `release`, else random text),
    push it upstream as `repository:1.0`; its digest."""
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
        f"RUN echo {release or secrets.token_hex(8)} > /release\n"
    )
    tag = f"{upstream.host}/{repository}:1.0"
    built = build_image(tmp_path, [tag], buildargs={"BASE_IMAGE": base_image})
    try:
        with Registry(upstream.url, upstream.username, upstream.password) as reg:
            return push_image(built.image_id, reg, repository, "1.0", client=docker_client)
    finally:
        docker_client.images.remove(tag)


def baton(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_baton(*args, env={**os.environ, "BATON_HOME": str(home), **env})


def git_show(repo: Path, what: str) -> str:
    """`git show <rev>:<path>` in `repo`."""
    shown = subprocess.run(
        ["git", "-C", str(repo), "show", what], check=True, capture_output=True, text=True
    )
    return shown.stdout


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
    # The state lives in the registry, which this module's tests share: this test's entry.
    shown_json = baton(home, "images", "ls", "--json", "--config", str(config), env=env).stdout
    (listed,) = [
        i for i in json.loads(shown_json) if i["image"].startswith(f"{registry.host}/{name}:")
    ]
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
    shown = baton(home, "images", "ls", "--config", str(config), env=env).stdout
    assert f"{registry.host}/{name}:{updated}  {source}@{second[:19]}" in shown
    assert "update waiting" in shown


def test_on_the_embedded_stacks_host_images_commands_read_the_password_the_stack_generated(
    docker_client, base_image, registry, upstream_registry, mirror_config, tmp_path
):
    """After `make demo` a user has exported no registry password: `baton images mirror` and
    `images ls` sign in with the one the stack keeps in its secrets directory, as its processes do."""
    config, _, name = mirror_config
    home = tmp_path / "home"
    (home / "secrets").mkdir(parents=True)
    (home / "secrets" / "registry-password").write_text(registry.password)
    env = {"TEST_REGISTRY_PASSWORD": "", "TEST_UPSTREAM_PASSWORD": upstream_registry.password}
    upstream_repo = f"vendor/{name.split('/')[1]}"
    digest = push_upstream(docker_client, base_image, upstream_registry, tmp_path, upstream_repo)

    mirrored = baton(home, "images", "mirror", "--config", str(config), env=env)
    shown = baton(home, "images", "ls", "--config", str(config), env=env)

    assert mirrored.returncode == 0, mirrored.stderr
    assert shown.returncode == 0, shown.stderr
    readable = f"1.0-{digest.removeprefix('sha256:')[:12]}"
    assert f"{registry.host}/{name}:{readable}  " in shown.stdout


def test_a_source_tag_that_does_not_exist_is_one_line(
    registry, upstream_registry, mirror_config, tmp_path
):
    config, _, _ = mirror_config
    env = {
        "TEST_REGISTRY_PASSWORD": registry.password,
        "TEST_UPSTREAM_PASSWORD": upstream_registry.password,
    }

    failed = baton(tmp_path / "home", "images", "mirror", "--config", str(config), env=env)

    assert failed.returncode == 4  # not found (README: Exit codes)
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith("error: images.mirror ")
    assert line.endswith(":1.0: the source registry has no such tag: check the source reference")


async def test_refresh_workflow_mirrors_an_upstream_update_and_opens_a_pin_bump_pr(
    docker_client,
    base_image,
    registry,
    upstream_registry,
    mirror_config,
    tmp_path,
    isolated_client,
    monkeypatch,
):
    config_file, _, name = mirror_config
    upstream_repo = f"vendor/{name.split('/')[1]}"
    monkeypatch.setenv("TEST_REGISTRY_PASSWORD", registry.password)
    monkeypatch.setenv("TEST_UPSTREAM_PASSWORD", upstream_registry.password)
    settings = Settings(home=tmp_path / "home", config=config_file, api_port=free_port())
    context = Context(settings, load_config(config_file))
    monkeypatch.setattr(activity_context, "_current", context)
    first = push_upstream(docker_client, base_image, upstream_registry, tmp_path, upstream_repo)
    pinned = f"{registry.host}/{name}:1.0-{first.removeprefix('sha256:')[:12]}"
    app = tmp_path / "web"
    app.mkdir()
    (app / "Dockerfile").write_text(f"FROM {pinned}\nUSER 10001\n")
    (app / "values.yaml").write_text(f"sidecar:\n  image: {registry.host}/{name}@{first}\n")
    context.forge.create_repo("web", from_dir=app)

    async def refresh() -> list[MirroredImage]:
        return await isolated_client.execute_workflow(
            WorkflowTypes.IMAGE_REFRESH,
            id=f"refresh-{secrets.token_hex(4)}",
            task_queue=TaskQueues.WORKFLOWS,
            result_type=list[MirroredImage],
        )

    with ThreadPoolExecutor(max_workers=4) as executor:
        async with contextlib.AsyncExitStack() as workers:
            for queue, activities in ((TaskQueues.WORKFLOWS, []), (TaskQueues.BUILD, ACTIVITIES)):
                await workers.enter_async_context(
                    Worker(
                        isolated_client,
                        task_queue=queue,
                        workflows=[ImageRefresh] if queue == TaskQueues.WORKFLOWS else [],
                        activities=activities,
                        activity_executor=executor,
                    )
                )
            (mirrored,) = await refresh()
            assert not mirrored.update_waiting and mirrored.bump_prs == []

            second = push_upstream(
                docker_client, base_image, upstream_registry, tmp_path, upstream_repo
            )
            (updated,) = await refresh()
            (again,) = await refresh()  # a refresh before the PR merges opens no second one

    new_tag = f"1.0-{second.removeprefix('sha256:')[:12]}"
    assert updated.update_waiting and updated.previous_digest == first
    assert updated.bump_prs == again.bump_prs == ["web#1"]
    pr = context.forge.get_pull_request("web", 1)
    assert pr.title == f"Bump {pinned} to {new_tag}"
    assert first in pr.body and second in pr.body
    bumped = context.forge.repo_path("web")  # type: ignore[attr-defined]
    assert git_show(bumped, f"{pr.head_sha}:Dockerfile") == (
        f"FROM {registry.host}/{name}:{new_tag}\nUSER 10001\n"
    )
    assert git_show(bumped, f"{pr.head_sha}:values.yaml") == (
        f"sidecar:\n  image: {registry.host}/{name}:{new_tag}@{second}\n"
    )
    known = MirrorState(context.stores.records).load().values()
    (listed,) = [i for i in known if i.image.startswith(f"{registry.host}/{name}:")]
    assert listed.bump_prs == ["web#1"]


def test_images_schedule_puts_the_refresh_on_the_configured_cron(
    mirror_config, tmp_path, isolated_client, temporal_env
):
    config_file, _, _ = mirror_config
    config_file.write_text(config_file.read_text() + "  refresh: '0 */6 * * *'\n")
    env = {
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": isolated_client.namespace,
    }

    created = baton(tmp_path / "home", "images", "schedule", "--config", str(config_file), env=env)
    updated = baton(tmp_path / "home", "images", "schedule", "--config", str(config_file), env=env)

    assert created.returncode == 0, created.stderr
    assert updated.stdout.strip() == "schedule images-refresh: 0 */6 * * * (UTC)"
    description = asyncio.run(
        isolated_client.get_schedule_handle(IMAGE_REFRESH_SCHEDULE).describe()
    )
    action = description.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == WorkflowTypes.IMAGE_REFRESH
    # The server keeps a cron as the calendar it means: second 0, minute 0, every 6th hour.
    (calendar,) = description.schedule.spec.calendars
    assert [(r.start, r.end, r.step) for r in calendar.hour] == [(0, 23, 6)]
    assert [(r.start, r.end) for r in calendar.minute] == [(0, 0)]
