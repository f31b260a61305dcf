"""Benchmark: how soon a killed deploy worker's activity is attempted again; what a crash leaves.

The real parts of tests/workflows/test_worker_crash.py (tests/fixtures/crash.py): a Temporal dev
server, the EnvironmentRollout workflow on a worker in this process, its deploy activities in a
real worker process (`python -m workers.main baton-deploy`, a temp directory of its own), a CNCF
distribution registry (htpasswd) holding the sample app's chart, the local forge's git
repositories. Each rollout deploys a new commit of the sample app to prod, and the worker is
SIGKILLed once in each of its first attempts of `render_environment` (once helm's registry config
holding the password exists), `propose_gitops_change` and `merge_gitops_pr` (once Temporal shows
it started), then started again at once. First attempts only, so the retry policy's growing
backoff stays out of the figure. With `--standby` a second deploy worker polls all along: each
rollout has one kill (render, PR creation, merge in turn), of the worker that runs the attempt,
once both workers poll, so the next attempt does not wait for a process to start.

`--lanes N` deals the rollouts out to N stacks that run at once, each its own dev server,
registry, forge, home and deploy worker(s), each lane's rollouts one after another: the seconds
one lane waits for its next attempt (the heartbeat timeout) are spent on another lane's rollouts.
Each kill still hits one worker and one attempt. The default is 1 (one stack, one kill at a time):
on a loaded 2-core host the restarted worker's start is CPU-bound and outlasts the heartbeat
timeout, so a second lane took as long in all and doubled every figure (28-39 s against 11-20 s).

Per activity: the seconds from the kill to the start of the next attempt (Temporal's pending
activity `last_started_time`; goal <= 15 s, issue 19), and how many kills were void (the
activity had completed: no attempt to wait for). After all kills: the files under the worker's
temp directory that hold the registry password (goal 0), what else is left there, and whether
every rollout merged exactly one GitOps PR. Prints one JSON object.

    .venv/bin/python -m bench.recovery [--rollouts N] [--standby] [--lanes N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client

from activities.context import Context
from baton import private
from baton.gitops import rollout_branch
from baton.models import Artifact, RolloutInput, RolloutStatus
from baton.temporal import TaskQueues
from tests.conftest import serving, until
from tests.fixtures import crash
from tests.fixtures.charts import PROD_VALUES
from tests.fixtures.crash import Deploy
from tests.fixtures.docker import running_registry
from tests.fixtures.homes import head, publish, sample_app_home
from tests.fixtures.ports import free_port
from tests.fixtures.temporal import start_dev_server
from workflows.retries import HEARTBEAT
from workflows.rollout import EnvironmentRollout

GOAL_S = 15.0
# The activities killed in each rollout, in the order it runs them; True: wait for helm's
# registry config (the credential a crash would leave) before the kill.
KILLED = {"render_environment": True, "propose_gitops_change": False, "merge_gitops_pr": False}
WITHIN_S = 120.0  # bounds a wait that would hang; each ends as soon as what it waits for holds


@dataclass
class Kill:
    activity: str
    rollout: int
    recovery_s: float | None  # None: void, the activity had completed before the kill
    # Where the seconds went, from the kill: the next attempt scheduled (the heartbeat timeout
    # passed, then the retry policy's first interval: Baton's part); the restarted worker polling
    # (the process's start: the host's).
    retry_due_s: float | None = None
    worker_polling_s: float | None = None


def seconds(stamp: Timestamp, since: datetime) -> float | None:
    if not stamp.seconds:
        return None
    return round((stamp.ToDatetime(tzinfo=UTC) - since).total_seconds(), 2)


def new_commit(ctx: Context, number: int) -> str:
    """A new commit on the sample app's main branch (the same tree), in the forge's repository."""
    repo = str(ctx.forge.repo_path("sample-app"))  # type: ignore[attr-defined]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
        return done.stdout.strip()

    identity = ["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"]
    commit = git(*identity, "commit-tree", "main^{tree}", "-p", "main", "-m", f"bench {number}")
    git("update-ref", "refs/heads/main", commit)
    return commit


async def credential_holder(workers: list[Deploy]) -> Deploy:
    """The deploy worker whose helm holds the registry password now (polling every 10 ms): the
    process named by the private directory (`baton-private-PID-...`) holding helm's config."""
    deadline = time.monotonic() + WITHIN_S
    while time.monotonic() < deadline:
        for deploy in workers:
            if (path := crash.registry_config(deploy)) is None:
                continue
            pid = path.parent.parent.name.removeprefix(private.PREFIX).partition("-")[0]
            for holder in workers:
                if holder.process is not None and str(holder.process.pid) == pid:
                    return holder
        await asyncio.sleep(0.01)
    raise AssertionError(f"no deploy worker's helm held the registry password within {WITHIN_S}s")


async def first_attempt(client: Client, workflow_id: str, activity: str) -> PendingActivityInfo:
    """The first attempt of `activity`, once Temporal shows it started."""
    deadline = time.monotonic() + WITHIN_S
    while (pending := await crash.pending_activity(client, workflow_id, activity)) is None or (
        pending.state != crash.STARTED
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"{activity} of {workflow_id} never started")
        await asyncio.sleep(0.01)
    if pending.attempt != 1:
        raise AssertionError(f"{activity} of {workflow_id} at attempt {pending.attempt}")
    return pending


async def kill_first_attempt(
    workers: list[Deploy], client: Client, workflow_id: str, activity: str, rollout: int
) -> Kill:
    """Kill the worker running the first attempt of `activity`, start it again; the seconds
    until Temporal started the second attempt, or void when the first had completed.

    An activity killed once helm holds the password is killed as soon as the password file
    appears, then checked to be that attempt: waiting first for Temporal to show the attempt
    started could miss the file, which lives a fraction of a second (helm's login and pull)."""
    if KILLED[activity]:
        deploy = await credential_holder(workers)
        killed = deploy.kill()
        pending = await crash.pending_activity(client, workflow_id, activity)
        # Attempt 1 started (or, on a slow host, timed out already and attempt 2 scheduled).
        if pending is None or pending.attempt > (1 if pending.state == crash.STARTED else 2):
            raise AssertionError(f"the password was not {activity}'s of {workflow_id}, attempt 1")
    else:
        pending = await first_attempt(client, workflow_id, activity)
        pid = int(pending.last_worker_identity.split("@", 1)[0])  # the SDK's identity: pid@host
        deploy = next(w for w in workers if w.process is not None and w.process.pid == pid)
        killed = deploy.kill()
    deploy.start()
    assert deploy.process is not None
    worker = asyncio.create_task(crash.polling(client, deploy.process.pid, killed))
    retried = await until(
        lambda: crash.pending_activity(client, workflow_id, activity),
        lambda p: p is None or (p.attempt >= 2 and p.state == crash.STARTED),
        f"{activity} of {workflow_id} attempted again or completed",
        within_s=WITHIN_S,
    )
    polled = await worker
    if retried is None:
        return Kill(activity, rollout, None, worker_polling_s=polled)
    return Kill(
        activity,
        rollout,
        round((crash.started_at(retried) - killed).total_seconds(), 2),
        retry_due_s=seconds(retried.scheduled_time, killed),
        worker_polling_s=polled,
    )


async def roll_out(
    workers: list[Deploy], client: Client, artifact: Artifact, rollout: int, killed: list[str]
) -> tuple[list[Kill], bool]:
    """One rollout with a kill in each `killed` activity; its kills, and whether it merged."""
    ctx = workers[0].context
    workflow_id = f"rollout/recovery/{rollout}"
    now = datetime.now(UTC)
    # Every worker polls before the rollout starts (a standby one too, restarted by the last kill).
    await asyncio.gather(*(crash.polling(client, w.process.pid, now) for w in workers if w.process))
    handle = await client.start_workflow(
        EnvironmentRollout.run,
        RolloutInput(
            change_id=f"change/sample-app/{rollout}",
            app=ctx.config.app("sample-app"),
            environment=ctx.config.environment("prod"),
            artifact=artifact,
            author="alice",
        ),
        id=workflow_id,
        task_queue=TaskQueues.WORKFLOWS,
    )
    kills = [
        await kill_first_attempt(workers, client, workflow_id, activity, rollout)
        for activity in killed
    ]
    status: RolloutStatus = await until(
        lambda: handle.query(EnvironmentRollout.status),
        lambda s: any(
            (t.name == "merge" and t.outcome != "running") or t.outcome == "failed"
            for t in s.timeline
        ),
        f"{workflow_id} merged or ended",
        within_s=WITHIN_S,
    )
    merged = any(t.name == "merge" and t.outcome == "succeeded" for t in status.timeline)
    await handle.terminate("bench: merged, no cluster to sync")
    return kills, merged


def spread(samples: list[float]) -> dict[str, float | None]:
    """p50 and max of `samples` (None for both when there are none)."""
    if not samples:
        return {"p50_s": None, "max_s": None}
    return {"p50_s": round(statistics.median(samples), 2), "max_s": max(samples)}


def summary(activity: str, kills: list[Kill]) -> dict[str, object]:
    mine = [k for k in kills if k.activity == activity]
    landed = [k for k in mine if k.recovery_s is not None]
    return {
        "activity": activity,
        "kills": len(mine),
        "void": len(mine) - len(landed),
        "recovery_s": [k.recovery_s for k in landed],
        **spread([k.recovery_s for k in landed if k.recovery_s is not None]),
        "goal_s": GOAL_S,
        "retry_due": spread([k.retry_due_s for k in landed if k.retry_due_s is not None]),
        "worker_polling": spread([k.worker_polling_s for k in mine if k.worker_polling_s]),
        "samples": [
            {
                "recovery_s": k.recovery_s,
                "retry_due_s": k.retry_due_s,
                "worker_polling_s": k.worker_polling_s,
            }
            for k in mine
        ],
    }


@dataclass
class Lane:
    """What one lane's rollouts left: their kills, merges and GitOps PRs, and the worker's temp
    directory (the password files, the other leftovers)."""

    kills: list[Kill]
    merged: list[bool]
    prs_per_rollout: list[int]
    prs_merged: int
    credential_files: int
    leftovers: list[str]
    kills_s: float


async def lane(numbers: list[int], root: Path, standby: bool) -> Lane:
    """Rollouts `numbers`, one after another, on a stack of their own: a Temporal dev server, a
    registry, a home with its forge, a deploy worker (two with `standby`)."""
    env = await start_dev_server()
    try:
        with (
            running_registry(root / "registry") as registry,
            pytest.MonkeyPatch.context() as monkeypatch,
        ):
            ctx, home = sample_app_home(root, registry, monkeypatch, PROD_VALUES)
            target = env.client.service_client.config.target_host
            user = (registry.username, registry.password)
            first = publish(ctx, head(ctx, "sample-app"))
            deploy = crash.deploy_worker(root, home, target, user, first, ctx)
            workers = [deploy]
            if standby:  # a second deploy worker, polling: it takes the next attempt over
                metrics = {"BATON_WORKER_METRICS_ADDRESS": f"127.0.0.1:{free_port()}"}
                workers.append(replace(deploy, env=deploy.env | metrics))
            artifacts = []
            for number in numbers:  # a new image and commit each: a new PR each
                digest = f"sha256:{number:064x}"
                artifacts.append(publish(ctx, new_commit(ctx, number), digest))
            kills: list[Kill] = []
            merged = []
            started = time.monotonic()
            async with serving(env.client, [EnvironmentRollout], {}):
                for worker in workers:
                    worker.start()
                try:
                    for number, artifact in zip(numbers, artifacts, strict=True):
                        # Standby: one kill per rollout, so another worker always polls.
                        one = [list(KILLED)[(number - 1) % len(KILLED)]]
                        done, merged_one = await roll_out(
                            workers, env.client, artifact, number, one if standby else list(KILLED)
                        )
                        kills += done
                        merged.append(merged_one)
                finally:
                    await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
            elapsed = time.monotonic() - started
            prs = ctx.forge.list_pull_requests(ctx.config.gitops.repo)  # type: ignore[attr-defined]
            per_rollout = [
                [p for p in prs if p.head_branch == rollout_branch("sample-app", "prod", a.commit)]
                for a in artifacts
            ]
            return Lane(
                kills=kills,
                merged=merged,
                prs_per_rollout=[len(p) for p in per_rollout],
                prs_merged=sum(p.state == "merged" for ps in per_rollout for p in ps),
                credential_files=len(deploy.credentials()),
                leftovers=sorted(str(p.relative_to(deploy.tmp)) for p in deploy.tmp.rglob("*")),
                kills_s=round(elapsed, 1),
            )
    finally:
        await env.shutdown()


async def run(rollouts: int, root: Path, standby: bool, lanes: int) -> dict[str, object]:
    """The rollouts dealt out to `lanes` stacks that run at once (rollout n to lane n % lanes),
    each lane's one after another: a lane's kill and the next attempt it waits for (the
    heartbeat timeout, the worker's restart) overlap the other lanes' rollouts."""
    lanes = max(1, min(lanes, rollouts))
    numbers = [list(range(first, rollouts + 1, lanes)) for first in range(1, lanes + 1)]
    for index in range(lanes):
        (root / f"lane-{index}").mkdir()
    done = await asyncio.gather(
        *(lane(mine, root / f"lane-{index}", standby) for index, mine in enumerate(numbers))
    )
    kills = [kill for one in done for kill in one.kills]
    by_number = {n: i for i, mine in enumerate(numbers) for n in mine}  # rollout -> lane
    position = {n: mine.index(n) for mine in numbers for n in mine}
    return {
        "benchmark": "recovery",
        "heartbeat_timeout_s": HEARTBEAT.total_seconds(),
        "deploy_workers": 2 if standby else 1,
        "lanes": lanes,
        "kills": len(kills),
        "kills_s": max(one.kills_s for one in done),  # the lanes' rollouts, set-up apart
        "lane_kills_s": [one.kills_s for one in done],
        "activities": [summary(activity, kills) for activity in KILLED],
        "credential_files": sum(one.credential_files for one in done),
        "credential_files_goal": 0,
        "other_leftovers": sorted({path for one in done for path in one.leftovers}),
        "rollouts": rollouts,
        "rollouts_merged": sum(sum(one.merged) for one in done),
        "gitops_prs_per_rollout": [
            done[by_number[n]].prs_per_rollout[position[n]] for n in range(1, rollouts + 1)
        ],
        "gitops_prs_merged": sum(one.prs_merged for one in done),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, help="3 kills each; --standby: 1 (default 4, 6)")
    parser.add_argument(
        "--standby", action="store_true", help="a second deploy worker polls while one is killed"
    )
    parser.add_argument(
        "--lanes", type=int, default=1, help="stacks running rollouts at once (default 1)"
    )
    args = parser.parse_args()
    rollouts = args.rollouts or (6 if args.standby else 4)
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as root:
        result = asyncio.run(run(rollouts, Path(root), args.standby, args.lanes))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
