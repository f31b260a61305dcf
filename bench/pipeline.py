"""Benchmark: PR + CI wall time through Baton's pipelines, against the same steps run one after
another as plain commands, side by side on this machine.

Baton: the real PullRequestPipeline (lint, test, Dockerfile and template checks in parallel, the
image build beside them) on a PR's head, a new commit of the sample app with a tree of its own
(a file with the round's number), then the real CIPipeline on the PR's merge commit (the same
tree; the PR checks plus the long tests, the build, the candidates and the rendered check beside
them; once all passed, the push and the artifact's publication), each timed from its start
request to its result. Twice per round: with the sample app's configuration (its long tests
start ahead, the default for an app with long tests: the PR pipeline starts them on its head,
CI of the merge waits for that run; the merge follows the PR's verdict at once, as if the review
took no time), and with `ci.long_tests: merge` (CI of the merge runs them). The real activities
run on the build and workflows workers `workers.main.build_workers` makes, in this process,
against the local forge, a CNCF distribution registry and the docker engine
(tests/fixtures/homes.py's home); the app is `sample-app` as examples/baton.yaml configures it
(its lint, test and long_test commands, its chart and test values, its Dockerfile FROM the local
base image).

Baseline: what one CI job would run for the same two commits, one command after another: a
fresh `git clone`, the app's configured lint and test commands, `hadolint`, `helm lint` with the
test values, `docker build` (the same build arguments and tags); for the merge also the long
tests, `docker push` of both tags, `helm template` with the pushed image, `helm package` and
`helm push`. Baton's rendered check also validates every object offline, in process; the baseline
has no such command, so it does less. Medians over the samples, their ratios (goal at most 0.6,
issue 18), and each side's steps. Prints one JSON object.

    .venv/bin/python -m bench.pipeline [--samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.context import Context, install
from baton.config import AppConfig, CIConfig, load_config
from baton.models import PipelineInput, PipelineResult
from baton.temporal import TaskQueues, WorkflowTypes
from baton.tools import PROJECT_ROOT, find_tool, search_path
from bench.shared import dev_server, print_result, scratch
from tests.fixtures.charts import PROD_VALUES
from tests.fixtures.docker import BASE_IMAGE, LocalRegistry, running_registry
from tests.fixtures.homes import sample_app_home
from workers.main import build_workers

WARM_UP = 1  # one PR + CI of each first, untimed: the mirror, the engine's cache, imports
APP = "sample-app"


def app_config() -> AppConfig:
    """`sample-app` as examples/baton.yaml configures it."""
    return load_config(PROJECT_ROOT / "examples" / "baton.yaml").app(APP)


def pull_request(ctx: Context, number: int) -> tuple[str, str]:
    """A PR's head on the sample app's main branch, with a tree of its own (`bench-round` holds
    `number`), and its merge commit (the same tree, as a merge of an up-to-date branch has),
    now main's head: (head, merge)."""
    repo = str(ctx.forge.repo_path(APP))  # type: ignore[attr-defined]
    index = Path(repo, f"bench-index-{number}")

    def git(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=repo,
            input=stdin,
            env={"PATH": search_path(), "GIT_INDEX_FILE": str(index)},
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    blob = git("hash-object", "-w", "--stdin", stdin=f"{number}\n")
    git("read-tree", "main^{tree}")
    git("update-index", "--add", "--cacheinfo", f"100644,{blob},bench-round")
    tree = git("write-tree")
    index.unlink()
    identity = ["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"]
    head = git(*identity, "commit-tree", tree, "-p", "main", "-m", f"bench round {number}")
    merge = git(*identity, "commit-tree", tree, "-p", "main", "-p", head, "-m", f"Merge #{number}")
    git("update-ref", "refs/heads/main", merge)
    return head, merge


async def baton_pipeline(
    client: Client, kind: str, commit: str, app: AppConfig
) -> tuple[float, PipelineResult]:
    started = time.perf_counter()
    result = await client.execute_workflow(
        kind,
        PipelineInput(app=app, repo=APP, commit=commit),
        id=f"bench-{kind}-{uuid.uuid4()}",
        task_queue=TaskQueues.WORKFLOWS,
        result_type=PipelineResult,
    )
    elapsed = time.perf_counter() - started
    if not result.passed:
        raise SystemExit(f"{kind} at {commit[:12]} did not pass: {result.summary()}")
    return elapsed, result


@dataclass
class Baseline:
    """The plain commands, with a docker and a helm registry config of their own."""

    ctx: Context
    registry: LocalRegistry
    root: Path

    def login(self) -> None:
        password = self.registry.password
        for command in (
            ["docker", "--config", str(self.root / "docker"), "login", self.registry.host],
            [find_tool("helm"), "registry", "login", self.registry.host, "--plain-http"],
        ):
            login = [*command, "--username", self.registry.username, "--password-stdin"]
            self.run(login, self.root, stdin=password)

    def run(self, command: list[str], cwd: Path, stdin: str | None = None) -> None:
        env = {
            "PATH": search_path(),
            "HOME": str(self.root),
            "DOCKER_CONFIG": str(self.root / "docker"),
            "HELM_REGISTRY_CONFIG": str(self.root / "helm-registry.json"),
            "LANG": "C.UTF-8",
        }
        done = subprocess.run(
            command, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-1000:]
            raise SystemExit(f"baseline step {command[:3]} failed ({done.returncode}): {output}")

    def steps(self, checkout: Path, commit: str, ci: bool) -> list[tuple[str, list[str]]]:
        app = app_config()
        repo = f"{self.registry.host}/baseline/{app.image}"
        tags = [f"{repo}:{commit}", f"{repo}:git-{commit[:12]}"]
        values = ["--values", str(app.test_values)]
        shell = [
            (name, ["sh", "-c", command])
            for name, commands in (
                ("lint", app.commands.lint),
                ("test", app.commands.test),
                ("long_test", app.commands.long_test if ci else []),
            )
            for command in commands
        ]
        built = [
            ("dockerfile", [find_tool("hadolint"), app.dockerfile]),
            ("templates", [find_tool("helm"), "lint", str(app.chart), *values]),
            (
                "image",
                [
                    "docker",
                    "build",
                    "--quiet",
                    "--build-arg",
                    f"BASE_IMAGE={BASE_IMAGE}",
                    "--build-arg",
                    f"APP_COMMIT={commit}",
                    "--label",
                    f"org.opencontainers.image.revision={commit}",
                    *(item for tag in tags for item in ("-t", tag)),
                    "-f",
                    app.dockerfile,
                    str(app.context),
                ],
            ),
        ]
        if not ci:
            return shell + built
        helm = find_tool("helm")
        version = f"0.1.0-g{commit[:12]}"
        return (
            shell
            + built
            + [("push", ["docker", "push", "--quiet", tag]) for tag in tags]
            + [
                (
                    "rendered",
                    [helm, "template", APP, str(app.chart), "--namespace", "ci", *values]
                    + ["--set", f"image.repository={repo}", "--set", f"image.tag={commit}"],
                ),
                ("publish", [helm, "package", str(app.chart), "--version", version, "-d", "out"]),
                (
                    "publish",
                    [helm, "push", f"out/{APP}-{version}.tgz", f"oci://{self.registry.host}/"]
                    + ["baseline-charts", "--plain-http"],
                ),
            ]
        )

    def job(self, commit: str, ci: bool) -> tuple[float, dict[str, float]]:
        """One job at `commit`, from a fresh clone: its seconds, and each step's."""
        checkout = self.root / f"job-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        seconds: dict[str, float] = {}
        clone_url = str(self.ctx.forge.clone_url(APP))
        clone = [("clone", ["git", "clone", "-q", clone_url, str(checkout)])]
        checkout_step = [("clone", ["git", "-C", str(checkout), "checkout", "-q", commit])]
        for name, command in clone + checkout_step + self.steps(checkout, commit, ci):
            step = time.perf_counter()
            self.run(command, checkout if checkout.exists() else self.root)
            seconds[name] = round(seconds.get(name, 0) + time.perf_counter() - step, 2)
        return time.perf_counter() - started, seconds


async def run(samples: int, root: Path, warm_up: int = WARM_UP) -> dict:
    numbers = iter(range(1, 1000))
    with running_registry(root / "registry") as registry, pytest.MonkeyPatch.context() as patch:
        (root / "registry-host").write_text(registry.host)
        ctx, _ = sample_app_home(root, registry, patch, PROD_VALUES)
        patch.setenv("BATON_BASE_IMAGE", BASE_IMAGE)
        install(ctx)
        baseline = Baseline(ctx, registry, root / "baseline")
        baseline.root.mkdir()
        baseline.login()
        app = app_config()
        assert app.long_tests_ahead, "examples/baton.yaml: sample-app starts its long tests ahead"
        configs = {
            "default": app,
            "merge": app.model_copy(update={"ci": CIConfig(long_tests="merge")}),
        }
        baton: dict[str, list[float]] = {mode: [] for mode in configs}
        baseline_s: list[float] = []
        baton_steps: dict[str, list[dict[str, float]]] = {mode: [] for mode in configs}
        baseline_steps: list[dict[str, float]] = []
        async with dev_server() as env:
            client = env.client
            async with AsyncExitStack() as workers:
                for worker in build_workers(client, [TaskQueues.WORKFLOWS, TaskQueues.BUILD]):
                    await workers.enter_async_context(worker)
                for sample in range(warm_up + samples):
                    # In turns: Baton's PR + CI in each configuration, then the baseline's,
                    # each on a PR of its own.
                    for mode, config in configs.items():
                        head, merge = pull_request(ctx, next(numbers))
                        pr_s, _ = await baton_pipeline(
                            client, WorkflowTypes.PR_PIPELINE, head, config
                        )
                        ci_s, ci_result = await baton_pipeline(
                            client, WorkflowTypes.CI_PIPELINE, merge, config
                        )
                        if sample < warm_up:
                            continue
                        baton[mode].append(pr_s + ci_s)
                        baton_steps[mode].append(
                            {"pr_s": round(pr_s, 2), "ci_s": round(ci_s, 2)}
                            | {
                                f"ci.{check.name}": round(check.duration_s, 2)
                                for check in ci_result.checks
                            }
                        )
                    head, merge = pull_request(ctx, next(numbers))
                    plain_pr_s, _ = await asyncio.to_thread(baseline.job, head, ci=False)
                    plain_ci_s, plain_ci = await asyncio.to_thread(baseline.job, merge, ci=True)
                    if sample < warm_up:
                        continue
                    baseline_s.append(plain_pr_s + plain_ci_s)
                    baseline_steps.append(
                        {"pr_s": round(plain_pr_s, 2), "ci_s": round(plain_ci_s, 2)}
                        | {f"ci.{name}": s for name, s in plain_ci.items()}
                    )
    baseline_median = statistics.median(baseline_s)
    ahead, at_merge = (statistics.median(baton[mode]) for mode in ("default", "merge"))
    return {
        "benchmark": "pipeline.pr_and_ci",
        "workflow": "PullRequestPipeline then CIPipeline of sample-app (examples/baton.yaml), "
        "real activities: checks, docker build, candidates, rendered check, push, artifact "
        "publication; a PR's head, then its merge commit (the same tree)",
        "baseline": "one job per commit, every step one after another: git clone, the app's "
        "lint/test(/long_test) commands, hadolint, helm lint, docker build; CI also docker push "
        "x2, helm template, helm package + push (no offline validation of the render)",
        "docker": "used: the local engine builds; a CNCF distribution registry takes the pushes",
        "samples": samples,
        "samples_default": "6 (make bench), after 1 untimed warm-up of each",
        "configuration": "the sample app's (examples/baton.yaml): its long tests start ahead, "
        "the default for an app with long tests: the PR pipeline starts them on its head, CI of "
        "the merge waits for that run and takes the PR's passed checks; the merge follows the "
        "PR's verdict at once, as if the review took no time",
        "baton_s": round(ahead, 2),
        "baseline_s": round(baseline_median, 2),
        "ratio": round(ahead / baseline_median, 2),
        "goal_ratio": 0.6,
        "long_tests_at_merge": "ci.long_tests: merge: CI of the merge runs the long tests",
        "baton_long_tests_at_merge_s": round(at_merge, 2),
        "ratio_long_tests_at_merge": round(at_merge / baseline_median, 2),
        # What a PR's author waits for: with the long tests ahead, the PR's own checks share
        # the machine with them (workflows.pipelines._longest keeps its unit tests' priority).
        "pr_verdict_s": {
            "baton": _median_of(baton_steps["default"], "pr_s"),
            "baton_long_tests_at_merge": _median_of(baton_steps["merge"], "pr_s"),
            "baseline": _median_of(baseline_steps, "pr_s"),
        },
        "baton_runs": baton_steps["default"],
        "baton_long_tests_at_merge_runs": baton_steps["merge"],
        "baseline_runs": baseline_steps,
    }


def _median_of(runs: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--warm-up", type=int, default=WARM_UP, help="untimed rounds first")
    args = parser.parse_args()
    inspect = ["docker", "image", "inspect", BASE_IMAGE]
    if subprocess.run(inspect, capture_output=True, check=False).returncode:
        raise SystemExit(f"no {BASE_IMAGE} on the docker engine: run `make docker`")
    with scratch("bench-pipeline-") as root:
        result = asyncio.run(run(args.samples, root, args.warm_up))
    print_result(result)


if __name__ == "__main__":
    main()
