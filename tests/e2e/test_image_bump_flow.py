"""On the embedded stack: a mirrored image's upstream digest changes (a security update), and the
new digest reaches prod the ordinary way (issue 14).

The sample app's Dockerfile is built `FROM` a third-party base image mirrored into Baton's
registry, pinned by its readable tag. The "third party" is a second registry on loopback; the
update is a new image pushed there under the same tag. One run of the refresh Schedule mirrors it
under a new readable tag and opens a bump PR in the app repository; that PR passes the PR
pipeline (build FROM the new tag, image test), merges, and goes through CI and CD to prod through
its approval gates, where the container serves the new base's content.
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from baton.config import load_config
from baton.local.cluster import stack_id
from baton.local.forge import LocalForge
from baton.mirror import readable_tag
from baton.settings import Settings
from baton.temporal import IMAGE_REFRESH_SCHEDULE
from tests.conftest import eventually
from tests.e2e.stack import EXAMPLES, E2EStack, running_stack, version
from tests.e2e.test_change_flow import gate_is
from tests.e2e.test_mirror import git_show, push_upstream

pytestmark = pytest.mark.docker

UPSTREAM = "vendor/python-base"
MIRROR = "mirror/python-base"
BUMPED_BY = "baton"  # the author of bump PRs


def pinned_dockerfile(base: str) -> str:
    """The sample app's Dockerfile, `FROM` the mirrored base (no BASE_IMAGE to override it)."""
    dockerfile = (EXAMPLES / "sample-app" / "Dockerfile").read_text()
    pinned, found = re.subn(
        r"\AARG BASE_IMAGE=\S+\nFROM \$\{BASE_IMAGE\}\n", f"FROM {base}\n", dockerfile
    )
    assert found == 1, "the sample app's Dockerfile no longer starts FROM ${BASE_IMAGE}"
    return pinned


@pytest.fixture(scope="module")
def bump_stack(
    tmp_path_factory: pytest.TempPathFactory, base_image: str, docker_client, upstream_registry
) -> Iterator[E2EStack]:
    """The stack with one mirror entry (upstream `vendor/python-base:1.0`), dev and prod, and the
    sample app pinned to the mirror of the upstream's first image."""
    workdir = tmp_path_factory.mktemp("bump")
    upstream = workdir / "upstream"
    upstream.mkdir()
    first = push_upstream(docker_client, base_image, upstream_registry, upstream, UPSTREAM)

    def edit_config(config: dict) -> None:
        config["apps"] = [config["apps"][0]]  # the Helm sample alone
        # The image test reads what the base brought: it runs inside the built image.
        config["apps"][0]["image_test"] = {"command": ["cat", "/release"], "timeout_s": 60}
        config["environments"] = [e for e in config["environments"] if e["name"] != "staging"]
        config["promotion"] = ["dev", "prod"]
        config["images"] = {
            "mirror": [
                {
                    "source": f"{upstream_registry.host}/{UPSTREAM}:1.0",
                    "name": MIRROR,
                    "plain_http": True,
                    "credentials": {
                        "username": upstream_registry.username,
                        "token_env": "TEST_UPSTREAM_PASSWORD",
                    },
                }
            ],
            "refresh": "0 0 1 1 *",  # once a year: the test triggers it
        }

    def seed(settings: Settings, gitops: Path) -> None:
        registry = load_config(settings.config_file()).registry.url
        app = shutil.copytree(EXAMPLES / "sample-app", workdir / "sample-app-seed")
        pin = f"{registry}/{MIRROR}:{readable_tag('1.0', first)}"
        (app / "Dockerfile").write_text(pinned_dockerfile(pin))
        forge = LocalForge(settings.forge_dir, webhook_secret=settings.webhook_secret)
        forge.create_repo("sample-app", from_dir=app)
        forge.create_repo("gitops", from_dir=gitops)

    environ = {"TEST_UPSTREAM_PASSWORD": upstream_registry.password}
    with running_stack(workdir, base_image, edit_config, seed, environ) as stack:
        yield stack


def release_in(stack: E2EStack, docker_client: docker.DockerClient, env: str) -> str:
    """What /release holds in the container the local cluster runs for `env`."""
    prefix = f"baton-{stack_id(stack.settings.home)}-"
    (container,) = [
        c
        for c in docker_client.containers.list(
            filters={"label": ["baton.app=sample-app", f"baton.env={env}"]}
        )
        if c.name.startswith(prefix)
    ]
    code, output = container.exec_run(["cat", "/release"])
    assert code == 0, output
    return output.decode().strip()


def refresh(stack: E2EStack) -> None:
    """Run the refresh Schedule now, as its cron would."""
    stack.run(lambda client: client.get_schedule_handle(IMAGE_REFRESH_SCHEDULE).trigger())


def test_an_upstream_update_is_mirrored_bumped_by_pr_and_reaches_prod_through_the_gates(
    bump_stack, docker_client, base_image, upstream_registry, tmp_path
):
    stack = bump_stack
    registry = stack.config.registry.url
    mirrored = stack.baton("images", "mirror")
    assert mirrored.returncode == 0, mirrored.stderr
    assert stack.baton("images", "schedule").returncode == 0
    second_release = f"release-{secrets.token_hex(4)}"
    second = push_upstream(
        docker_client, base_image, upstream_registry, tmp_path, UPSTREAM, second_release
    )
    new_tag = readable_tag("1.0", second)

    # One run of the refresh Schedule: the new digest mirrored, a bump PR opened by Baton.
    refresh(stack)
    forge = stack.forge()
    pr = eventually(
        lambda: [p for p in forge.list_pull_requests("sample-app") if p.author == BUMPED_BY],
        lambda prs: len(prs) == 1,
        timeout=300,
        every=0.5,
        what="the refresh to open a bump PR",
    )[0]
    assert stack.registry_digest(MIRROR, new_tag) == second
    previous = mirrored.stdout.strip().rpartition(" -> ")[2]
    assert pr.title == f"Bump {previous} to {new_tag}"
    assert f"`{second}`" in pr.body and "PR pipeline" in pr.body
    assert git_show(forge.repo_path("sample-app"), f"{pr.head_sha}:Dockerfile") == (
        pinned_dockerfile(f"{registry}/{MIRROR}:{new_tag}")
    )
    listed = stack.baton("images", "ls").stdout
    assert f"update waiting (bump: sample-app#{pr.number})" in listed

    # The ordinary change path: the PR pipeline builds FROM the new tag and tests the image...
    change = f"change/sample-app/{pr.number}"
    detail = stack.wait(change, lambda d: d.change.state == "awaiting-merge")
    (validated,) = [s for s in detail.change.timeline if s.name.startswith("validate ")]
    tested = next(c for c in validated.checks if c.name == "image_test")
    assert tested.summary == "image test passed: `cat /release` exited 0"
    assert tested.log_ref is not None
    assert f"$ cat /release\n{second_release}\n" in stack.logs.get(tested.log_ref)
    # ... it merges; CI builds, tests and pushes; CD takes it to dev, then through prod's gate.
    merge = stack.forge("bob").merge_pull_request("sample-app", pr.number, pr.head_sha)
    stack.wait(change, gate_is("approval", "prod"))
    assert release_in(stack, docker_client, "dev") == second_release
    for approver in ("carol", "dave"):
        assert stack.baton("approve", change, "--env", "prod", user=approver).returncode == 0
    detail = stack.wait(change, lambda d: d.change.state in ("completed", "failed"))

    assert detail.change.state == "completed", detail.change.reason
    assert version(stack.config.environment("prod").verify.url)["commit"] == merge
    assert release_in(stack, docker_client, "prod") == second_release
    # The next refresh finds no pin of the old digest left: no update waits.
    refresh(stack)
    eventually(
        lambda: stack.baton("images", "ls").stdout,
        lambda shown: f"up to date (bump: sample-app#{pr.number})" in shown,
        timeout=120,
        every=1,
        what="the next refresh to find the bump merged",
    )
