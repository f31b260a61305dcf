"""Workers that share no disk: the build queue's, the deploy queue's and the workflow worker run as
separate processes, each with an empty BATON_HOME of its own, and take a change from PR to prod.

They share only Temporal and the outside systems (the forge, the cluster, the registry): logs,
rendered manifests, artifact records and the reconciler's baseline travel through the registry
(`baton.store`), or through an S3 bucket when baton.yaml's `store` names one (`baton.s3store`; the
bucket on an S3-compatible server on loopback, `tests.fixtures.s3`). The embedded stack's local forge and local cluster live in its own data directory,
which the workers reach as they would reach a hosted forge and a cluster (BATON_STACK_HOME).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from baton.temporal import TaskQueues
from baton.tools import PROJECT_ROOT
from cli.demo import AUTHOR, push_visible_change
from tests.e2e.stack import E2EStack, running_stack, version
from tests.e2e.test_change_flow import gate_is
from tests.fixtures.s3 import S3Server

pytestmark = pytest.mark.docker

QUEUES = (TaskQueues.WORKFLOWS, TaskQueues.BUILD, TaskQueues.DEPLOY)
# What used to pass between activities as files under BATON_HOME.
HANDED_OVER = ("logs", "blobs", "artifacts", "records", "reconcile.json")


class Workers:
    """Worker processes, one queue each, each with an empty data directory of its own."""

    def __init__(self, stack: E2EStack, workdir: Path) -> None:
        self.stack = stack
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.homes: list[Path] = []

    def start(self, queue: str) -> None:
        name = f"{queue}-{len(self.processes)}"
        home = self.workdir / name
        home.mkdir(parents=True)
        self.homes.append(home)
        env = {
            **self.stack.env,
            "BATON_HOME": str(home),
            "BATON_STACK_HOME": str(self.stack.settings.home),
            "BATON_WEBHOOK_SECRET": self.stack.settings.webhook_secret,
            # No metrics endpoint: several workers on one host would want the same port.
            "BATON_WORKER_METRICS_ADDRESS": "",
        }
        with (self.workdir / f"{name}.log").open("wb") as log:
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "workers.main", queue],
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def running(self) -> None:
        for process, home in zip(self.processes, self.homes, strict=True):
            log = (self.workdir / f"{home.name}.log").read_text(errors="replace")
            assert process.poll() is None, f"worker {home.name} ended:\n{log[-3000:]}"


def s3_store(server: S3Server) -> tuple[Callable[[dict], None], dict[str, str]]:
    """baton.yaml's `store` naming `server`'s bucket, with the workers' access key and the API's
    read-only one in variables it names; those variables."""

    def edit(config: dict) -> None:
        config["store"] = server.store_yaml(f"e2e-{uuid.uuid4().hex[:8]}/") | {
            "credentials": {
                "access_key_id_env": "TEST_S3_ACCESS_KEY_ID",
                "secret_access_key_env": "TEST_S3_SECRET_ACCESS_KEY",
            },
            "read_credentials": {
                "access_key_id_env": "TEST_S3_READ_KEY_ID",
                "secret_access_key_env": "TEST_S3_READ_SECRET_KEY",
            },
        }

    environ = {
        "TEST_S3_ACCESS_KEY_ID": server.writer[0],
        "TEST_S3_SECRET_ACCESS_KEY": server.writer[1],
        "TEST_S3_READ_KEY_ID": server.reader[0],
        "TEST_S3_READ_SECRET_KEY": server.reader[1],
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return edit, environ


@pytest.fixture(scope="module")
def split(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    base_image: str,
    docker_client,
) -> Iterator[tuple[E2EStack, Workers]]:
    """The embedded stack without its all-queue worker, and one worker per queue instead; the
    store (the test's indirect parameter) is the registry, or an S3 bucket."""
    edit, environ = (
        s3_store(request.getfixturevalue("s3_server"))
        if request.param == "s3"
        else (
            None,
            None,
        )
    )
    with running_stack(
        tmp_path_factory.mktemp("baton"), base_image, edit, environ=environ
    ) as stack:
        stack.kill("worker")
        workers = Workers(stack, tmp_path_factory.mktemp("workers"))
        try:
            for queue in QUEUES:
                workers.start(queue)
            yield stack, workers
        finally:
            workers.stop()


def take_to_prod(stack: E2EStack, stamp: str) -> tuple[str, str]:
    """Open, merge and approve a change of the sample app up to prod; (change id, merge sha)."""
    alice = stack.forge(AUTHOR)
    branch = push_visible_change(alice, "sample-app", stamp)
    pr = alice.open_pull_request("sample-app", branch, "main", stamp, "", AUTHOR)
    change = f"change/sample-app/{pr.number}"
    detail = stack.wait(change, lambda d: d.change.state == "awaiting-merge")
    assert detail.change.reason is None, detail.change.reason
    merge = stack.forge("bob").merge_pull_request("sample-app", pr.number, pr.head_sha)
    detail = stack.wait(change, gate_is("approval", "staging"))
    stack.forge("carol").submit_review(
        "gitops", detail.rollout.gitops_pr.number, "carol", "approved"
    )
    stack.wait(change, gate_is("approval", "prod"))
    for approver in ("carol", "dave"):
        assert stack.baton("approve", change, "--env", "prod", user=approver).returncode == 0
    detail = stack.wait(change, lambda d: d.change.state in ("completed", "failed"))
    assert detail.change.state == "completed", detail.change.reason
    for env in ("dev", "staging", "prod"):
        assert version(stack.config.environment(env).verify.url)["commit"] == merge
    return change, merge


def assert_nothing_handed_over_on_disk(stack: E2EStack, workers: Workers) -> None:
    for home in [stack.settings.home, *workers.homes]:
        kept = [name for name in HANDED_OVER if (home / name).exists() and name != "logs"]
        assert kept == [], f"{home} holds {kept}"
    for home in workers.homes:
        assert not (home / "logs").exists(), f"{home} holds logs"
    assert not (stack.settings.home / "logs" / "steps").exists()


def assert_the_logs_travel_through_the_store(stack: E2EStack, change: str, merge: str) -> None:
    """The CI step's log, written by the build worker, is read by anyone through the store, and
    the board (its API on no worker's disk) serves it from there."""
    detail = stack.detail(change)
    assert detail is not None
    ci = next(s for s in detail.change.timeline if s.name.startswith("integrate"))
    rendered = next(c for c in ci.checks if c.name == "rendered")
    artifact = detail.change.artifact
    assert artifact.commit == merge
    assert f"{artifact.image}@{artifact.image_digest}" in stack.logs.get(rendered.log_ref)
    board = httpx.get(
        f"{stack.settings.api_url}/board/logs/{rendered.log_ref}",
        cookies={"baton_board": stack.token("carol")},
        timeout=30,
    )
    assert board.status_code == 200, board.text
    assert board.text == stack.logs.get(rendered.log_ref)
    if stack.config.store.kind == "s3":  # the bucket holds it, the registry does not
        assert str(stack.logs).startswith(f"s3://{stack.config.store.bucket}/")
        assert "baton/logs" not in stack.registry_catalog()


# Each store once (a stack costs minutes): one worker per queue over the registry, then two per
# queue, writing the same content at once, over an S3 bucket.
@pytest.mark.parametrize("split", ["registry"], indirect=True)
def test_a_change_goes_from_pr_to_prod_through_workers_that_share_no_disk(split) -> None:
    stack, workers = split
    change, merge = take_to_prod(stack, "nodisk-one")
    workers.running()
    assert_the_logs_travel_through_the_store(stack, change, merge)
    assert_nothing_handed_over_on_disk(stack, workers)


@pytest.mark.parametrize("split", ["s3"], indirect=True)
def test_the_same_with_two_workers_per_queue(split) -> None:
    stack, workers = split
    for queue in QUEUES:
        workers.start(queue)
    change, merge = take_to_prod(stack, "nodisk-two")
    workers.running()
    assert_the_logs_travel_through_the_store(stack, change, merge)
    assert_nothing_handed_over_on_disk(stack, workers)
