"""A whole embedded Baton stack for end-to-end tests, on free ports and a throwaway data directory.

It is the stack `baton dev up` starts (Temporal dev server, registry, API, worker, local cluster),
started the same way, so the tests exercise exactly what a user runs.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import yaml
from temporalio.service import RPCError

from baton import changes
from baton.config import BatonConfig, load_config
from baton.images import push_image
from baton.local.cluster import remove_app_containers
from baton.local.forge import LocalForge
from baton.local.stack import BASE_IMAGE, Stack
from baton.models import TERMINAL_STATES, ChangeStatus
from baton.registry import Registry, candidate
from baton.settings import Settings
from baton.store import BlobStore, Stores
from baton.temporal import connect
from baton.tools import PROJECT_ROOT
from cli.demo import AUTHOR, push_visible_change
from tests.conftest import eventually
from tests.fixtures.cli import run_baton
from tests.fixtures.docker import running_registry
from tests.fixtures.ports import free_port

EXAMPLES = PROJECT_ROOT / "examples"
ENVIRONMENTS = ("dev", "staging", "prod")
KUSTOMIZE_APP = "sample-kustomize"


@dataclass
class E2EStack:
    settings: Settings
    config: BatonConfig
    env: dict[str, str]
    stack: Stack
    ports: dict[str, int]
    tokens: dict[str, str] = field(default_factory=dict)  # each user's, made once (`token`)

    def forge(self, user: str = "baton") -> LocalForge:
        return LocalForge(
            self.settings.forge_dir,
            webhook_url=f"{self.settings.api_url}/webhooks/github",
            webhook_secret=self.settings.webhook_secret,
            user=user,
        )

    def baton(
        self, *args: str, user: str | None = None, timeout: float = 1200
    ) -> subprocess.CompletedProcess[str]:
        """Run the `baton` CLI as a user would, against this stack; with `user`, holding an API
        token an administrator created for them (BATON_TOKEN)."""
        env = dict(self.env)
        env.pop("BATON_TOKEN", None)
        if user is not None:
            env["BATON_TOKEN"] = self.token(user)
        return run_baton(*args, env=env, timeout=timeout)

    def token(self, user: str) -> str:
        """An API token for `user`, made the administrator's way (`baton token create`) the
        first time and kept for the stack's life (a day), as a user keeps theirs."""
        if user not in self.tokens:
            created = self.baton("token", "create", "--user", user, "--expires", "1d", "--quiet")
            assert created.returncode == 0, created.stderr
            self.tokens[user] = created.stdout.strip()
        return self.tokens[user]

    def open_pr(self, stamp: str, edit: Callable[[Path], None] | None = None) -> tuple[str, object]:
        """Push a branch of the sample app with a visible change (plus `edit(workdir)`) and open
        its PR as alice; the change id and the PR."""
        alice = self.forge(AUTHOR)
        branch = push_visible_change(alice, "sample-app", stamp, edit=edit)
        pr = alice.open_pull_request("sample-app", branch, "main", stamp, "", AUTHOR)
        return f"change/sample-app/{pr.number}", pr

    def release(self, stamp: str, edit: Callable[[Path], None] | None = None) -> tuple[str, str]:
        """Open a PR as `open_pr` does and have bob merge it once the change started; the change
        id and the merge commit."""
        change, pr = self.open_pr(stamp, edit)
        self.wait(change, lambda d: bool(d.change.timeline))
        return change, self.forge("bob").merge_pull_request("sample-app", pr.number, pr.head_sha)

    def run(self, coro_fn: Callable) -> object:
        async def main():
            return await coro_fn(await connect(self.env["TEMPORAL_ADDRESS"]))

        return asyncio.run(main())

    def status(self, change_id: str) -> ChangeStatus:
        return self.run(lambda client: changes.show(client, change_id)).change

    def detail(self, change_id: str) -> changes.ChangeDetail | None:
        """The change as `baton changes show` has it; None while it cannot be read (not started
        yet, or no worker answering, as while one restarts)."""
        try:
            return self.run(lambda client: changes.show(client, change_id))
        except (changes.ChangeNotFound, changes.WorkerUnavailable, RPCError):
            return None

    def wait(
        self, change_id: str, done: Callable[[changes.ChangeDetail], bool], timeout: float = 400
    ) -> changes.ChangeDetail:
        """Poll the change until `done(detail)`; fails with the last status seen, at once if the
        change ended elsewhere."""

        def settled(detail: changes.ChangeDetail | None) -> bool:
            return detail is not None and (done(detail) or detail.change.state in TERMINAL_STATES)

        detail = eventually(
            lambda: self.detail(change_id),
            settled,
            timeout=timeout,
            every=0.5,
            what=f"{change_id} to reach the expected state",
            show=lambda d: d.model_dump_json(indent=1) if d else "never started",
        )
        assert done(detail), f"{change_id} ended elsewhere:\n{detail.model_dump_json(indent=1)}"
        return detail

    def kill(self, service: str) -> None:
        """SIGKILL one of the stack's processes, as a crash would, and wait until it is gone."""
        pid = self.stack.pid(service)
        assert pid is not None, f"{service} is not running"
        os.kill(pid, signal.SIGKILL)
        eventually(lambda: self.stack.pid(service) is None, what=f"{service} to end on SIGKILL")

    def wait_for_activity(self, workflow_id: str, activity: str, timeout: float = 400) -> None:
        """Wait until `activity` is running in `workflow_id`."""

        async def running(client) -> bool:
            try:
                description = await client.get_workflow_handle(workflow_id).describe()
            except RPCError:
                return False
            pending = description.raw_description.pending_activities
            return any(a.activity_type.name == activity for a in pending)

        eventually(
            lambda: self.run(running),
            timeout=timeout,
            every=0.2,
            what=f"{activity} to run in {workflow_id}",
        )

    def registry_tags(self, name: str) -> list[str]:
        token_env = self.config.registry.credentials.token_env
        answer = httpx.get(
            f"http://{self.config.registry.url}/v2/{name}/tags/list",
            auth=(self.config.registry.credentials.username, os.environ[token_env]),
        )
        return answer.json()["tags"]

    def registry_catalog(self) -> list[str]:
        """The repositories the stack's registry holds."""
        token_env = self.config.registry.credentials.token_env
        answer = httpx.get(
            f"http://{self.config.registry.url}/v2/_catalog",
            auth=(self.config.registry.credentials.username, os.environ[token_env]),
        )
        return answer.json()["repositories"]

    @property
    def logs(self) -> BlobStore:
        """The step logs the workers keep, as the API and anyone else reads them."""
        return Stores.configured(self.settings, self.config.registry, self.config.store).logs

    def registry_digest(self, name: str, tag: str) -> str | None:
        from activities.context import Context

        return Context(self.settings, self.config).registry.manifest_digest(name, tag)


def only_dev(config: dict) -> dict:
    """Keep the dev environment alone in `config` (a quicker stack); returns dev's mapping, to edit."""
    dev = next(env for env in config["environments"] if env["name"] == "dev")
    config["environments"] = [dev]
    config["promotion"] = ["dev"]
    return dev


def stack_env(
    workdir: Path, edit_config: Callable[[dict], None] | None = None
) -> tuple[dict[str, str], dict[str, int]]:
    """Environment variables for a stack of its own: free ports, a config using them, a data dir.

    `edit_config` may change the config (as a YAML mapping) before it is written.
    """
    taken: set[int] = set()
    ports = {
        name: free_port(taken)
        for name in ("api", "temporal", "ui", "registry", "worker-metrics", *ENVIRONMENTS)
    }
    # Apps with their own verify (the Kustomize sample) answer on ports of their own.
    ports |= {f"{KUSTOMIZE_APP}/{name}": free_port(taken) for name in ENVIRONMENTS}
    config = yaml.safe_load((EXAMPLES / "baton.yaml").read_text())
    config["registry"]["url"] = f"127.0.0.1:{ports['registry']}"
    verifies = [(env["name"], env["verify"]) for env in config["environments"]]
    verifies += [
        (f"{a['name']}/{e}", v) for a in config["apps"] for e, v in a.get("verify", {}).items()
    ]
    for name, verify in verifies:
        verify["url"] = f"http://127.0.0.1:{ports[name]}/version"
        verify["timeout_s"] = 60
    for env in config["environments"]:
        env["sync"]["timeout_s"] = 180
    if edit_config is not None:
        edit_config(config)
        # A test that keeps fewer environments keeps the apps' own verify for those only.
        kept = {env["name"] for env in config["environments"]}
        for app in config["apps"]:
            if "verify" in app:
                app["verify"] = {name: v for name, v in app["verify"].items() if name in kept}
    config_file = workdir / "baton.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {
        **os.environ,
        "BATON_HOME": str(workdir / "home"),
        "XDG_CONFIG_HOME": str(workdir / "config"),  # no token `baton login` kept elsewhere
        "BATON_CONFIG": str(config_file),
        "BATON_API_PORT": str(ports["api"]),
        "BATON_TEMPORAL_PORT": str(ports["temporal"]),
        "BATON_TEMPORAL_UI_PORT": str(ports["ui"]),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
        "BATON_WORKER_METRICS_ADDRESS": f"127.0.0.1:{ports['worker-metrics']}",
    }
    return env, ports


def start_stack(
    workdir: Path,
    edit_config: Callable[[dict], None] | None = None,
    seed: Callable[[Settings, Path], None] | None = None,
) -> E2EStack:
    """Start the stack on free ports; seed the sample app and GitOps repos (values on those ports).

    `edit_config` goes to `stack_env`. `seed(settings, gitops_dir)` replaces seeding the local
    forge, before the stack starts: a hosted forge must hold the repositories by then.
    """
    env, ports = stack_env(workdir, edit_config)
    gitops = shutil.copytree(EXAMPLES / "gitops", workdir / "gitops-seed")
    for name in ENVIRONMENTS:
        values = gitops / "environments" / name / "sample-app" / "values.yaml"
        values.write_text(re.sub(r"port: \d+", f"port: {ports[name]}", values.read_text()))
        overlay = gitops / "environments" / name / KUSTOMIZE_APP / "kustomization.yaml"
        port = str(ports[f"{KUSTOMIZE_APP}/{name}"])
        overlay.write_text(re.sub(r"\b1809\d\b", port, overlay.read_text()))
    os.environ.update({k: v for k, v in env.items() if k.startswith(("BATON_", "TEMPORAL_"))})
    settings = Settings()
    if seed is not None:
        seed(settings, gitops)
    stack = Stack(settings)
    if "registry" in stack.names() and os.environ.get(BASE_IMAGE):
        layers = base_layers(workdir.parent, os.environ[BASE_IMAGE])
        # Each app's repository, and its candidates' (CI's first push goes there).
        images = [app.image for app in stack.config.apps]
        seed_base_layers(
            settings.home / "registry", layers, images + [candidate(image) for image in images]
        )
    stack.up()
    token_env = stack.config.registry.credentials.token_env
    env[token_env] = os.environ[token_env] = settings.local_secret(token_env, "registry-password")
    e2e = E2EStack(settings, load_config(Path(env["BATON_CONFIG"])), env, stack, ports)
    if seed is None:
        forge = e2e.forge()
        forge.create_repo("sample-app", from_dir=EXAMPLES / "sample-app")
        forge.create_repo(KUSTOMIZE_APP, from_dir=EXAMPLES / KUSTOMIZE_APP)
        forge.create_repo("gitops", from_dir=gitops)
    return e2e


REGISTRY_V2 = Path("storage", "docker", "registry", "v2")
"""Where the registry (`baton.local.registry`) keeps blobs and repositories under its directory."""
SEED_REPOSITORY = "base"


@functools.cache
def base_layers(basetemp: Path, base_image: str) -> Path:
    """A registry directory holding `base_image`'s layers in repository `base`, pushed once per
    session (the registry stopped again): `seed_base_layers` copies them into each new stack's."""
    workdir = Path(tempfile.mkdtemp(prefix="base-layers-", dir=basetemp))
    with running_registry(workdir) as running:
        with Registry(running.url, running.username, running.password) as registry:
            push_image(base_image, registry, SEED_REPOSITORY, "seed")
            pushed = f"{registry.repository(SEED_REPOSITORY)}:seed"
        docker.from_env().images.remove(pushed)  # the tag only: the base image stays
    return workdir


def seed_base_layers(registry_dir: Path, layers: Path, repositories: list[str]) -> None:
    """Give a new stack's registry the base image's layers in each app's repository, as a
    registry that held the app's images before holds them: CI's first push then sends only the
    app's own layers. A fresh registry would otherwise have the engine compress and upload the
    whole base image again (about 190 MB) in every module's first change. The blobs are hard
    links (a registry never rewrites one); no tag or manifest is copied."""
    source, target = layers / REGISTRY_V2, registry_dir / REGISTRY_V2
    shutil.copytree(source / "blobs", target / "blobs", copy_function=os.link)
    for name in repositories:
        shutil.copytree(
            source / "repositories" / SEED_REPOSITORY / "_layers",
            target / "repositories" / name / "_layers",
        )


@contextmanager
def running_stack(
    workdir: Path,
    base_image: str,
    edit_config: Callable[[dict], None] | None = None,
    seed: Callable[[Settings, Path], None] | None = None,
    environ: dict[str, str] | None = None,
) -> Iterator[E2EStack]:
    """A stack for a test module: started with BATON_BASE_IMAGE (and `environ`) set; stopped,
    and the process environment restored, afterwards."""
    saved = dict(os.environ)
    os.environ |= {"BATON_BASE_IMAGE": base_image, **(environ or {})}
    try:
        stack = start_stack(workdir, edit_config, seed)
        try:
            yield stack
        finally:
            stop_stack(stack)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def stop_stack(e2e: E2EStack) -> None:
    e2e.stack.down()
    # The app containers and the networks of local clusters that publish their ports
    # (sync.host_port_offset): a test's teardown need not wait for them to stop.
    remove_app_containers(e2e.settings.home, docker.from_env(), graceful=False)


def version(url: str) -> dict:
    return httpx.get(url, timeout=5).json()
