"""Benchmark: merge -> sync detected by Baton, against the local cluster runtime's own apply time.

The real parts: the local cluster runtime (baton.local.cluster, in a thread, polling every
0.5 s as deployed) watching a bare GitOps repository of the local forge and running the sample
app on the docker engine (its image built FROM the local base image, pushed to a CNCF
distribution registry it pulls from with the pull credentials); Baton's API, served by uvicorn on
127.0.0.1, which the runtime sends its signed Flux events to; a Temporal dev server; real
EnvironmentRollouts of `sample-app` into an environment of its own (`sync.kind: local`), with
the real `request_reconcile` (the runtime's reconcile request) and `check_sync` (the status the
runtime wrote), and the other activities no-op stand-ins (bench.rollouts), except the merge:
it commits the app's manifests (rendered by helm from the chart, with a new comment each run, so
every merge replaces the container) on the GitOps repository's main branch and notes when.

Per rollout: merge -> sync detected (the gate passed: `verify_endpoint` started), the runtime's
own apply time (its log line `applied ... (N s)`: from taking up the head to the container Ready,
the apply Flux reports), and merge -> applied (when that line was written). How the gate was
passed is reported per run: `event` (the runtime's Flux event, confirmed by one `check_sync`) or
`poll` (the gate's own `check_sync` poll, 1 s then backing off). Goal (issue 18): detected at
most the apply time + 1 s. Prints one JSON object.

    .venv/bin/python -m bench.sync [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import threading
import time
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest
import uvicorn
import yaml
from temporalio import activity
from temporalio.client import Client

from activities import deploy
from activities.context import Context, install
from activities.deploy import MergeInput, SyncCheckInput, VerifyInput
from api.app import create_app
from baton.config import BatonConfig, parse_config
from baton.images import build_image, push_image
from baton.ingress import FluxEvent, Ingress, Reply
from baton.local.cluster import LocalCluster, container_name, stack_id
from baton.models import PinnedImage, SyncOutcome
from baton.registry import Registry
from baton.render import HelmRenderer
from baton.settings import Settings
from baton.tools import PROJECT_ROOT
from bench.rollouts import APP, rollout_input, serving, start_rollout
from bench.shared import dev_server, print_result, scratch
from tests.conftest import git
from tests.fixtures.docker import BASE_IMAGE, LocalRegistry, running_registry
from tests.fixtures.gitops import local_gitops_repository
from tests.fixtures.ports import free_port

WARM_UP = 1  # the first rollout starts the app's container: not a replacement, untimed
GOAL_OVER_APPLY_S = 1.0
SAMPLE_APP = PROJECT_ROOT / "examples" / "sample-app"
DEV_VALUES = PROJECT_ROOT / "examples/gitops/environments/dev/sample-app/values.yaml"
SECRET = "bench-sync-secret"


class Runs:
    """What the stand-ins and the runtime's log tell, by rollout id and GitOps revision."""

    def __init__(self, work: Path, path: str, manifests: str) -> None:
        self.work = work  # a clone of the GitOps repository, pushing to the forge's
        self.path = path  # where the environment's manifests are
        self.manifests = manifests
        self.lock = threading.Lock()
        self.merged: dict[str, tuple[str, float]] = {}  # rollout id -> (revision, time.time())
        self.detected: dict[str, float] = {}  # rollout id -> time.time() verify started
        self.passed_by: dict[str, str] = {}  # rollout id -> event | poll
        self.applied: dict[str, tuple[float, float]] = {}  # revision -> (apply s, time.time())
        self.events: dict[str, float] = {}  # revision -> time.time() its Flux event reached the API

    def merge(self, number: int) -> str:
        with self.lock:
            file = self.work / self.path / "manifests.yaml"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(f"# bench run {number}\n{self.manifests}")
            git(self.work, "add", "-A")
            git(self.work, "commit", "-q", "-m", f"bench: deploy run {number}")
            git(self.work, "push", "-q", "origin", "main")
            return git(self.work, "rev-parse", "HEAD")


class AppliedLog(logging.Handler):
    """The runtime's `%s: applied %s (%s, %.1fs)` lines: each revision's apply seconds, and when."""

    def __init__(self, runs: Runs) -> None:
        super().__init__()
        self.runs = runs

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("%s: applied") and isinstance(record.args, tuple):
            revision = str(record.args[1]).rsplit(":", 1)[-1]  # main@sha1:<sha>
            seconds = round(float(record.args[3]), 2)  # type: ignore[arg-type]
            self.runs.applied[revision] = (seconds, record.created)


def activities(runs: Runs) -> dict:
    """The merge that commits, the real sync activities, a verification that notes the time."""

    @activity.defn(name="merge_gitops_pr")
    def merge_gitops_pr(input: MergeInput) -> str:
        number = int(input.rollout.artifact.commit, 16)
        revision = runs.merge(number)
        runs.merged[activity.info().workflow_id] = (revision, time.time())
        return revision

    @activity.defn(name="check_sync")
    def check_sync(input: SyncCheckInput) -> SyncOutcome:
        outcome = deploy.check_sync(input)  # raises until synced
        runs.passed_by[activity.info().workflow_id] = "event" if input.revision else "poll"
        return outcome

    @activity.defn(name="verify_endpoint")
    async def verify_endpoint(input: VerifyInput) -> SyncOutcome:
        runs.detected[activity.info().workflow_id] = time.time()
        commit = input.commit or input.rollout.artifact.commit
        return SyncOutcome(synced=True, revision=commit, message="200 ok")

    return {
        "merge_gitops_pr": merge_gitops_pr,
        "check_sync": check_sync,
        "request_reconcile": deploy.request_reconcile,
        "verify_endpoint": verify_endpoint,
    }


def sample_image(registry: LocalRegistry) -> PinnedImage:
    """The sample app built FROM the local base image, pushed to `registry`, by digest."""
    with Registry(registry.url, registry.username, registry.password) as reg:
        built = build_image(
            SAMPLE_APP,
            [f"{registry.host}/sample-app:bench"],
            buildargs={"BASE_IMAGE": BASE_IMAGE, "APP_COMMIT": "0" * 40},
        )
        digest = push_image(built.image_id, reg, "sample-app", "bench")
    return PinnedImage(repository=f"{registry.host}/sample-app", digest=digest)


def bench_config(registry: LocalRegistry, env: str, port: int) -> BatonConfig:
    """One app, one environment of its own synced by the local runtime, the app on `port`."""
    registry_users = {
        "credentials": (registry.username, "BENCH_SYNC_REGISTRY_PASSWORD"),
        "pull_credentials": (registry.pull_username, "BENCH_SYNC_PULL_PASSWORD"),
    }
    config = {
        "registry": {"url": registry.host}
        | {
            key: {"username": user, "token_env": var} for key, (user, var) in registry_users.items()
        },
        "gitops": {"repo": "gitops", "base_branch": "main", "path": "rendered/{env}/{app}"},
        "apps": [{"name": APP, "repo": APP, "chart": "chart", "image": APP}],
        "environments": [
            {
                "name": env,
                "namespace": env,
                "sync": {"kind": "local", "timeout_s": 240},
                "verify": {"url": f"http://127.0.0.1:{port}/version", "expected_body": "{commit}"},
            }
        ],
    }
    return parse_config(yaml.safe_dump(config))


def note_events(ingress: Ingress, runs: Runs) -> None:
    """Note when each ready Flux event reaches the API's ingress (the runtime sends it after
    writing the status and its `applied` line)."""
    sync = ingress.sync

    async def noted(event: FluxEvent) -> Reply:
        if event.sync.state == "ready":
            runs.events.setdefault(event.sync.revision, time.time())
        return await sync(event)

    ingress.sync = noted  # type: ignore[method-assign]


async def roll_out(client: Client, runs: Runs, env: str, number: int, config: BatonConfig) -> dict:
    handle = await start_rollout(client, rollout_input(env, number, config))
    result = await handle.result()
    assert result.outcome == "deployed", result
    revision, merged_at = runs.merged[handle.id]
    deadline = time.monotonic() + 30
    while revision not in runs.applied:  # the log line follows the status the gate read
        if time.monotonic() > deadline:
            raise TimeoutError(f"no `applied` line for {revision[:12]}")
        await asyncio.sleep(0.01)
    apply_s, applied_at = runs.applied[revision]
    detected_s = runs.detected[handle.id] - merged_at
    return {
        "merge_to_detected_s": round(detected_s, 2),
        "apply_s": apply_s,
        "merge_to_applied_s": round(applied_at - merged_at, 2),
        "detected_after_applied_s": round(runs.detected[handle.id] - applied_at, 2),
        "event_at_api_after_applied_s": round(runs.events[revision] - applied_at, 3)
        if revision in runs.events
        else None,
        "passed_by": runs.passed_by[handle.id],
    }


async def run(runs_wanted: int, root: Path) -> dict:
    env_name = f"bench-{uuid.uuid4().hex[:6]}"
    port = free_port()
    engine = docker.from_env()
    with running_registry(root / "registry") as registry, pytest.MonkeyPatch.context() as patch:
        (root / "registry-host").write_text(registry.host)
        patch.setenv("BENCH_SYNC_REGISTRY_PASSWORD", registry.password)
        patch.setenv("BENCH_SYNC_PULL_PASSWORD", registry.pull_password)
        patch.setenv("BATON_WEBHOOK_SECRET", SECRET)
        patch.delenv("BATON_FLUX_WEBHOOK_SECRET", raising=False)
        image = sample_image(registry)
        config = bench_config(registry, env_name, port)
        settings = Settings(home=root / "home", api_port=free_port(), api_host="127.0.0.1")
        work = local_gitops_repository(root, settings, "GitOps repository of bench.sync")
        install(Context(settings, config))
        manifests = HelmRenderer(SAMPLE_APP / "chart").render(
            "sample-app",
            env_name,
            values_files=[DEV_VALUES],
            image=image,
            overrides={"service.port": str(port)},
        )
        runs = Runs(work, f"rendered/{env_name}/sample-app", manifests)
        cluster_log = logging.getLogger("baton.local.cluster")
        cluster_log.setLevel(logging.INFO)
        cluster_log.addHandler(AppliedLog(runs))
        cluster = LocalCluster(config, settings, settings.forge_dir / "repos" / "gitops.git")
        thread = threading.Thread(target=cluster.run, daemon=True)
        results = []
        async with dev_server() as temporal:
            client = temporal.client
            app = create_app(settings, config, client)
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=settings.api_port, log_level="warning")
            )
            serve = asyncio.create_task(server.serve())
            try:
                while not server.started:
                    await asyncio.sleep(0.05)
                note_events(app.state.ingress, runs)
                thread.start()
                async with serving(client, "baton", replaced=activities(runs)):
                    for number in range(1, WARM_UP + runs_wanted + 1):
                        result = await roll_out(client, runs, env_name, number, config)
                        if number > WARM_UP:
                            results.append(result)
            finally:
                cluster.stop.set()
                thread.join(timeout=30)
                server.should_exit = True
                await serve
                try:
                    engine.containers.get(
                        container_name(stack_id(settings.home), env_name, "sample-app")
                    ).remove(force=True)
                except docker.errors.NotFound:
                    pass

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in results), 2)

    detected, apply = median("merge_to_detected_s"), median("apply_s")
    return {
        "benchmark": "sync.merge_to_detected",
        "workflow": f"EnvironmentRollout of sample-app into {env_name} (sync.kind local): "
        "real request_reconcile and check_sync, merge commits the rendered manifests",
        "cluster": "baton.local.cluster (poll 0.5 s, reconcile requests) on the docker engine; "
        "its Flux events to the API on 127.0.0.1 (uvicorn)",
        "baseline": "the runtime's own apply time: head taken up -> container Ready "
        "(its `applied ... (N s)` log line)",
        "runs": runs_wanted,
        "runs_default": "5 (make bench), after 1 untimed first deployment",
        "merge_to_detected_s": detected,
        "apply_s": apply,
        "merge_to_applied_s": median("merge_to_applied_s"),
        "detected_after_applied_s": median("detected_after_applied_s"),
        "over_apply_s": round(detected - apply, 2),
        "goal": f"merge_to_detected_s <= apply_s + {GOAL_OVER_APPLY_S:g}",
        "goal_met": detected <= apply + GOAL_OVER_APPLY_S,
        "passed_by": {
            how: sum(r["passed_by"] == how for r in results) for how in ("event", "poll")
        },
        "samples": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)  # NotSynced until synced
    with scratch("bench-sync-") as root:
        result = asyncio.run(run(args.runs, root))
    print_result(result)


if __name__ == "__main__":
    main()
