"""`baton demo`: one change of a sample app carried through PR, CI and every environment."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from pydantic import BaseModel
from temporalio.client import Client

from baton import changes, shared_http
from baton.config import GROUP_PREFIX, BatonConfig
from baton.errors import BatonError, DecisionRefused
from baton.local.forge import LocalForge
from baton.models import ChangeStatus, Gate
from baton.settings import Settings
from baton.temporal import change_id
from baton.tokens import TokenStore
from baton.tools import PROJECT_ROOT
from cli.client import BatonApi
from cli.watch import follow, now_line

EXAMPLES = PROJECT_ROOT / "examples"
AUTHOR = "alice"
MERGER = "bob"
PR_CHECK = "baton/pr"
"""The commit status of the PR pipeline, required by the sample app's branch protection."""
WORKER_PATIENCE_S = 60
GREETING = re.compile(r'^DEFAULT_GREETING = ".*"$', re.MULTILINE)


class DemoFailed(BatonError):
    """The demo change did not make it through; the message says where and why."""


class EnvironmentReport(BaseModel):
    environment: str
    url: str | None
    version: dict | str | None
    gitops_pr: str | None


class DemoSummary(BaseModel):
    change_id: str
    commit: str | None
    state: str
    reason: str | None
    environments: list[EnvironmentReport]
    temporal_ui: str


def seed_repositories(
    forge: LocalForge, config: BatonConfig, gitops_seed: Path | None = None
) -> None:
    """Create the sample apps' and the GitOps repositories in the local forge when they are
    missing; an app is seeded from the directory of examples/ named as its repository. A GitOps
    repository made before an app was added gets that app's example inputs (files it lacks;
    files it has are left as they are). Each app's default branch is protected: its PRs merge
    once `baton/pr` is green."""
    for app in config.apps:
        if (EXAMPLES / app.repo).is_dir():
            forge.create_repo(app.repo, from_dir=EXAMPLES / app.repo)
            forge.protect_branch(app.repo, forge.default_branch(app.repo), [PR_CHECK])
    seed = gitops_seed or EXAMPLES / "gitops"
    if not forge.create_repo(config.gitops.repo, from_dir=seed):
        add_missing_files(forge, config.gitops.repo, seed)


def add_missing_files(forge: LocalForge, repo: str, from_dir: Path) -> list[str]:
    """Commit to `repo`'s default branch the files of `from_dir` it lacks; their paths."""
    with tempfile.TemporaryDirectory(prefix="baton-demo-") as tmp:
        work = Path(tmp) / repo
        subprocess.run(["git", "clone", "-q", forge.clone_url(repo), str(work)], check=True)
        missing = sorted(
            str(path.relative_to(from_dir))
            for path in from_dir.rglob("*")
            if path.is_file() and not (work / path.relative_to(from_dir)).exists()
        )
        if missing:
            for name in missing:
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(from_dir / name, work / name)
            git = _git(work, "baton")
            git("add", "--", *missing)
            git("commit", "-q", "-m", f"Add the example files {repo} lacks")
            git("push", "-q", "origin", "HEAD")
    return missing


def push_visible_change(
    forge: LocalForge, repo: str, stamp: str, edit: Callable[[Path], None] | None = None
) -> str:
    """Commit a new greeting (plus `edit(workdir)`) on a branch as the demo's author; returns it."""
    branch = f"demo/{stamp}"
    with tempfile.TemporaryDirectory(prefix="baton-demo-") as tmp:
        work = Path(tmp) / repo
        git = _git(work)
        subprocess.run(["git", "clone", "-q", forge.clone_url(repo), str(work)], check=True)
        git("checkout", "-q", "-b", branch)
        app_py = work / "app.py"
        text, found = GREETING.subn(
            f'DEFAULT_GREETING = "Hello from {repo} ({stamp})"', app_py.read_text()
        )
        if not found:
            raise DemoFailed(f"{app_py} has no DEFAULT_GREETING line to change")
        app_py.write_text(text)
        if edit is not None:
            edit(work)
        git("add", "-A")
        git("commit", "-q", "-m", f"Greet with {stamp}")
        git("push", "-q", "origin", branch)
    return branch


def gates_of(detail: changes.ChangeDetail, kind: str) -> list[Gate]:
    """The gates of `kind` the change waits at now: one per rollout under way (a parallel stage
    runs several, each at its own gate)."""
    return [
        r.gate
        for r in detail.running_rollouts
        if r.gate is not None and r.gate.kind == kind and r.gate.environment
    ]


def _git(cwd: Path, user: str = AUTHOR) -> Callable[..., None]:
    identity = ["-c", f"user.name={user}", "-c", f"user.email={user}@example.invalid"]

    def run(*args: str) -> None:
        subprocess.run(["git", *identity, *args], cwd=cwd, check=True)

    return run


class Demo:
    """Drives one change; `say` prints what happens to it, line by line, and `live` shows the
    stage and step it is at now, with elapsed time (a line rewritten in place)."""

    def __init__(
        self,
        client: Client,
        config: BatonConfig,
        settings: Settings,
        forge: LocalForge,
        *,
        auto_approve: bool,
        say: Callable[[str], None],
        app: str | None = None,
        live: Callable[[str], None] = lambda line: None,
        timeout_s: float = 1800,
    ) -> None:
        self.client = client
        self.config = config
        self.app = config.app(app) if app else config.apps[0]
        self.settings = settings
        self.forge = forge
        self.auto_approve = auto_approve
        self.say = say
        self.live = live
        self.timeout_s = timeout_s
        self.tokens: dict[str, str] = {}

    async def run(self) -> DemoSummary:
        app = self.app
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
        branch = push_visible_change(self.forge, app.repo, stamp)
        pr = self.forge.open_pull_request(
            app.repo,
            branch,
            "main",
            f"Greet with {stamp}",
            "A visible change for the demo.",
            AUTHOR,
        )
        change = change_id(app.name, pr.number)
        self.say(f"{AUTHOR} opened {app.repo}#{pr.number}: {change}")
        self.say(f"  follow it: baton changes show {change}")
        self.say(f"  or on the board: {self.settings.api_url}/board/changes/{app.name}/{pr.number}")
        status = await self._follow(change, merge=(app.repo, pr.number))
        return await self._summary(status)

    async def _follow(self, change_id: str, merge: tuple[str, int]) -> ChangeStatus:
        """Print the change as `baton changes watch` does; merge when validation passed; approve
        when asked to."""
        merged = False
        prompted: set[str] = set()
        answered = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    try:
                        async for events, detail in follow(self.client, change_id, poll_s=0.5):
                            for event in events:
                                self.say(f"  {event.text}")
                            self.live(now_line(detail))
                            status, answered = detail.change, time.monotonic()
                            if status.state == "awaiting-merge" and not merged:
                                if status.reason:
                                    raise DemoFailed(f"the PR pipeline failed: {status.reason}")
                                self.say(f"  {MERGER} merges {merge[0]}#{merge[1]}")
                                self.forge.user = MERGER
                                self.forge.merge_pull_request(merge[0], merge[1], status.head_sha)
                                merged = True
                            for gate in gates_of(detail, "approval"):
                                env = gate.environment or ""
                                await self._approvals(change_id, env, gate, prompted)
                            for gate in gates_of(detail, "freeze"):
                                self._freeze(change_id, gate.environment or "", prompted)
                        return status
                    except changes.ChangeNotFound:  # the API has not started it yet
                        await asyncio.sleep(0.5)
                    except changes.WorkerUnavailable:
                        # A change read through its query (started before status memos) with a
                        # busy or restarting worker: ask again, for a while.
                        if time.monotonic() - answered > WORKER_PATIENCE_S:
                            raise
                        await asyncio.sleep(0.5)
        except TimeoutError:
            raise DemoFailed(f"{change_id} did not finish within {self.timeout_s:.0f}s") from None

    async def _approvals(self, change_id: str, env: str, gate: Gate, prompted: set[str]) -> None:
        people = [user for user in gate.waiting_on if not user.startswith(GROUP_PREFIX)]
        if not self.auto_approve:
            if env not in prompted:
                prompted.add(env)
                self.say(f"  {env} needs {gate.required} approval(s) from {', '.join(people)}:")
                self.say(
                    f"    on the board, {self.settings.api_url}/board/decisions (sign in with the "
                    "token of the command below), or with the CLI:"
                )
                for user in people[: gate.required]:
                    self.say(
                        f"    BATON_TOKEN=$(baton token create --user {user} --expires 1d -q) "
                        f"baton approve {change_id} --env {env}"
                    )
            return
        missing = gate.required - len(gate.approved_by)
        for user in people[:missing]:
            api = BatonApi(token=self._token(user), base_url=self.settings.api_url)
            body = {"comment": "approved by baton demo --auto-approve"}
            try:
                message = await asyncio.to_thread(api.decide, change_id, env, "approve", body)
            except DecisionRefused as refused:
                self.say(f"  approval by {user} refused: {refused}")
                continue
            self.say(f"  {message}")

    def _freeze(self, change_id: str, env: str, prompted: set[str]) -> None:
        """Say once how to break the glass: the demo waits out a freeze, as a rollout does."""
        if f"freeze:{env}" in prompted:
            return
        prompted.add(f"freeze:{env}")
        board = f"{self.settings.api_url}/board/{change_id.replace('change/', 'changes/', 1)}"
        self.say(f"  {env} is frozen: to go ahead now, break the glass on the board, {board}, or")
        self.say(
            f"    BATON_TOKEN=$(baton token create --user <approver> --expires 1d -q) "
            f"baton override-freeze {change_id} --env {env} --reason '...'"
        )

    def _token(self, user: str) -> str:
        """A short-lived API token for a reviewer the demo plays (the embedded stack's admin
        path: the token store under BATON_HOME)."""
        if user not in self.tokens:
            store = TokenStore(self.settings.tokens_file)
            created = store.create(user, timedelta(hours=1), "baton demo --auto-approve")
            self.tokens[user] = created.token
        return self.tokens[user]

    async def _summary(self, status: ChangeStatus) -> DemoSummary:
        reports = []
        by_env = {r.environment: r for r in status.rollouts}
        for env in self.config.promotion_order(self.app):
            url = env.verify.url if env.verify else None
            rollout = by_env.get(env.name)
            reports.append(
                EnvironmentReport(
                    environment=env.name,
                    url=url,
                    version=_fetch(url) if url else None,
                    gitops_pr=rollout.gitops_pr.url if rollout and rollout.gitops_pr else None,
                )
            )
        return DemoSummary(
            change_id=status.id,
            commit=status.merge_commit,
            state=status.state,
            reason=status.reason,
            environments=reports,
            temporal_ui=f"{self.settings.temporal_ui_url}/namespaces/{self.client.namespace}/workflows",
        )


def _fetch(url: str) -> dict | str | None:
    try:
        answer = shared_http.client().get(url, timeout=5)
    except httpx.HTTPError as exc:
        return f"unreachable: {exc}"
    try:
        return answer.json()
    except ValueError:
        return answer.text[:200]
