"""The embedded stack behind `baton dev up`: Temporal dev server, Baton's worker and API, local cluster.

Each piece is a child process with a pid file and a log file in the data directory, so a detached
stack can be inspected and stopped by later commands (also while the configuration is broken).
Each process gets only the secrets it uses: Temporal and the registry none; the API the webhook
secrets, the forge token and the registry's pull password (`registry.pull_credentials`: the board
reads step logs from the store in the registry); the local cluster the pull password (it pulls
images, as a cluster's imagePullSecrets), the forge's read token (`forge.read_credentials`: it
reads the GitOps repository, as Flux's GitRepository secretRef) and the webhook secrets (it signs
Flux-format events); the worker the push password, the forge token, the webhook secrets and every
other secret the config names (`named_secrets`: mirror sources, notification URLs and signing
secrets, build secrets). A secret the config names is withheld from every other process even when
the shell that starts the stack exports it (its `_FILE` form too), and the CLI's `BATON_TOKEN`
from all. Where the config sets no pull (read) credentials, the readers get the push password
(forge token) instead, and `baton dev up` says so (`baton.config.reader_warnings`).

The embedded registry knows two htpasswd users, the push one and the pull one, each with a
password generated once into the secrets directory. Its htpasswd auth has no per-user
permissions, so locally the pull user is a separate secret, not a weaker one; on Harbor, GHCR,
ECR or Artifact Registry, pull_credentials name a pull-only robot account or read-only token.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import httpx
from pydantic import BaseModel

from baton import shared_http
from baton.config import (
    BatonConfig,
    BuildSecret,
    ConfigError,
    Credentials,
    RegistryConfig,
    load_config,
)
from baton.errors import InfrastructureError
from baton.local.registry import prepare_registry, registry_command
from baton.settings import Settings
from baton.temporal import SearchAttributes, dev_server_dynamic_config_flags
from baton.tools import PROJECT_ROOT, find_tool, search_path


class StackError(InfrastructureError):
    """The embedded stack cannot start or stop as asked."""


SERVICE_NAMES = ("temporal", "registry", "api", "worker", "cluster")
"""Every service the stack may run, in start order (the registry only for a local registry.url)."""
NEEDS = {
    "api": ("temporal",),
    "worker": ("temporal", "registry"),
    "cluster": ("registry", "api"),
}
"""What each service needs answering before it starts (and running until it stops). The rest
start together: the worker imports for seconds, and would otherwise wait for the API to do the
same before it begins; a change waits for the worker."""
FLUX_WEBHOOK_SECRET = "BATON_FLUX_WEBHOOK_SECRET"
BASE_IMAGE = "BATON_BASE_IMAGE"
LOCAL_BASE_IMAGE = "localhost/baton-python-base:bookworm"
"""The Debian-built Python base image `make docker` (scripts/base-image.sh) makes: the worker
builds app images from it (their Dockerfile's BASE_IMAGE) unless BATON_BASE_IMAGE says otherwise."""
CLIENT_CREDENTIAL = "BATON_TOKEN"
"""The CLI's API token (cli/client.py), maybe in the shell that runs `baton dev up`: no stack
process uses it."""


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    port: int
    ready_url: str | None = None
    port_from: str = ""  # where the port is set, for the hint when it is taken
    secrets: frozenset[str] = frozenset()  # the secret variables it may see (and their _FILE)


def secret_variables(config: BatonConfig) -> dict[str, frozenset[str]]:
    """The environment variables holding the secrets the configuration names, by what they are
    for: `registry` (its push password), `registry_pull` (what readers pull with: the pull
    password, else the push one), `forge` (its token), `forge_read` (what the local cluster
    reads the GitOps repository with), `webhook` (the webhook secrets), `store_read` (what the
    API reads an S3 store with: store.read_credentials, else store.credentials), `worker`
    (every other one `named_secrets` finds: the S3 store's access key, image mirror sources,
    notification URLs and signing secrets, build secrets...)."""

    def named(*names: str | None) -> frozenset[str]:
        return frozenset(name for name in names if name)

    store = config.store
    store_read = named_secrets(store.read_credentials) if store.read_credentials else frozenset()
    store_write = named_secrets(store.credentials) if store.credentials else frozenset()
    readers = {
        "registry": named(config.registry.credentials.token_env),
        "registry_pull": named(config.registry.pulling().token_env),
        "forge": named(config.forge.credentials.token_env),
        "forge_read": named(config.forge.reading().credentials.token_env),
        "webhook": named(config.forge.webhook_secret_env, FLUX_WEBHOOK_SECRET),
        "store_read": store_read or store_write,
    }
    only_read = readers["registry_pull"] | readers["forge_read"] | (store_read - store_write)
    rest = named_secrets(config) - only_read
    return readers | {"worker": rest}


def named_secrets(config: BaseModel) -> frozenset[str]:
    """Every environment variable `config` names as holding a secret, found through its models:
    `Credentials.token_env`, `BuildSecret.env` and every other field ending in `_env`
    (baton.config: such fields name where a secret lives, never the secret)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, BaseModel):
            for field in type(value).model_fields:
                item = getattr(value, field)
                if isinstance(item, str) and (
                    field.endswith("_env") or (field == "env" and isinstance(value, BuildSecret))
                ):
                    found.add(item)
                else:
                    walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(config)
    return frozenset(found)


def services(settings: Settings, config: BatonConfig) -> list[Service]:
    """The processes of the embedded stack, in start order, each with the secrets it uses."""
    python = sys.executable
    secrets = secret_variables(config)
    temporal = [
        find_tool("temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--db-filename",
        str(settings.home / "temporal.db"),
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "warn",
        *SearchAttributes.dev_server_flags(),
        *dev_server_dynamic_config_flags(),
    ]
    stack = [
        Service(
            "temporal",
            temporal,
            settings.temporal_port,
            settings.temporal_ui_url,
            "set BATON_TEMPORAL_PORT",
        )
    ]
    host, _, port = config.registry.url.partition(":")
    if host in ("127.0.0.1", "localhost"):
        registry = registry_command(settings.home / "registry" / "config.yml")
        stack.append(
            Service(
                "registry",
                registry,
                int(port or 80),
                f"http://{config.registry.url}/v2/",
                f"change the port of registry.url in {settings.config_file()}",
            )
        )
    return [
        *stack,
        Service(
            "api",
            [python, "-m", "api"],
            settings.api_port,
            f"{settings.api_url}/healthz",
            "set BATON_API_PORT",
            # The registry's pull password (or the S3 store's read key): the board reads step
            # logs from the store the workers write (baton.store.StoreReaders).
            secrets["forge"]
            | secrets["webhook"]
            | secrets["registry_pull"]
            | secrets["store_read"],
        ),
        Service(
            "worker",
            [python, "-m", "workers.main"],
            0,
            secrets=secrets["registry"] | secrets["forge"] | secrets["webhook"] | secrets["worker"],
        ),
        Service(
            "cluster",
            [python, "-m", "baton.local.cluster"],
            0,
            # It pulls images and reads the GitOps repository from the forge, as Flux's
            # GitRepository does with its secretRef.
            secrets=secrets["registry_pull"] | secrets["forge_read"] | secrets["webhook"],
        ),
    ]


# The files in the stack's secrets directory that hold the embedded registry's passwords, by
# the registry config's field (`Stack.registry_passwords` generates them once).
REGISTRY_SECRETS = {
    "credentials": "registry-password",
    "pull_credentials": "registry-pull-password",
}


def with_stack_registry_secrets(settings: Settings, registry: RegistryConfig) -> RegistryConfig:
    """`registry` as a command on the embedded stack's host signs in to it: a credential whose
    variable is unset reads the password the stack generated (its secrets directory), as the
    stack's own processes get it, so `baton images ls` needs no exported password."""

    def local(credentials: Credentials | None, field: str) -> Credentials | None:
        secret = settings.secrets_dir / REGISTRY_SECRETS[field]
        if credentials is None or credentials.token() is not None or not secret.is_file():
            return credentials
        return credentials.model_copy(update={"token_file": secret})

    return registry.model_copy(
        update={
            "credentials": local(registry.credentials, "credentials"),
            "pull_credentials": local(registry.pull_credentials, "pull_credentials"),
        }
    )


def local_base_image() -> bool:
    """Whether the Docker engine holds LOCAL_BASE_IMAGE (False when no engine answers)."""
    try:
        client = docker.from_env()
        try:
            client.images.get(LOCAL_BASE_IMAGE)
        finally:
            client.close()
    except docker.errors.DockerException:
        return False
    return True


class Stack:
    """Start, inspect and stop the embedded stack's processes."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.run_dir = self.settings.home / "run"
        self.log_dir = self.settings.home / "logs"
        self._config: BatonConfig | None = None

    @property
    def config(self) -> BatonConfig:
        """The configuration, read when first needed; raises `ConfigError` when it is broken."""
        if self._config is None:
            self._config = load_config(self.settings.config_file())
        return self._config

    def config_problem(self) -> ConfigError | None:
        """Why the configuration cannot be read, or None when it can."""
        try:
            self._config = self.config
        except ConfigError as problem:
            return problem
        return None

    def names(self) -> list[str]:
        """The services of this stack, in start order. While the configuration is broken: every
        service that may run, the registry only when it was started (its pid file is there)."""
        if self.config_problem() is None:
            return [service.name for service in services(self.settings, self.config)]
        return [
            name for name in SERVICE_NAMES if name != "registry" or self._pid_file(name).exists()
        ]

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        """The pid of a running service, or None (a stale pid file is removed)."""
        path = self._pid_file(name)
        try:
            pid = int(path.read_text())
            _reap(pid)
            os.kill(pid, 0)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            return None
        return pid

    def status(self) -> dict[str, int | None]:
        """Each service's pid, None when it does not run; readable with a broken configuration."""
        return {name: self.pid(name) for name in self.names()}

    def up(self, *, timeout_s: float = 60) -> list[str]:
        """Start every service that is not running; returns the names started."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        assert self.settings.webhook_secret  # created once, before any child reads it
        to_start = [s for s in services(self.settings, self.config) if self.pid(s.name) is None]
        if any(s.name == "registry" for s in to_start):
            self._prepare_registry()
        for service in to_start:
            if service.port and not port_free(service.port):
                raise StackError(
                    f"port {service.port} on 127.0.0.1 is in use by another process "
                    f"(needed by {service.name}): stop that process or {service.port_from}"
                )
        started = []
        starting: dict[str, str] = {}  # spawned, not seen answering yet: name -> ready URL
        try:
            for service in to_start:
                for name in NEEDS.get(service.name, ()):
                    if name in starting:
                        self._wait_ready(name, starting.pop(name), timeout_s)
                self._spawn(service)
                started.append(service.name)
                if service.ready_url:
                    starting[service.name] = service.ready_url
            for name, url in starting.items():
                self._wait_ready(name, url, timeout_s)
        except BaseException:
            self.down()
            raise
        return started

    def registry_passwords(self) -> dict[str, str]:
        """The local registry's passwords by the env var the config reads each from: the push
        one (`registry-password` in the secrets directory) and the pull one
        (`registry-pull-password`), each from its variable when set, else generated once."""
        registry = self.config.registry
        passwords: dict[str, str] = {}
        for credentials, name in (
            (registry.credentials, REGISTRY_SECRETS["credentials"]),
            (registry.pull_credentials, REGISTRY_SECRETS["pull_credentials"]),
        ):
            if credentials is not None and credentials.token_env:
                passwords.setdefault(
                    credentials.token_env,
                    self.settings.local_secret(credentials.token_env, name),
                )
        return passwords

    def _prepare_registry(self) -> None:
        registry = self.config.registry
        passwords = self.registry_passwords()
        users: dict[str, str] = {}
        for field, credentials in (
            ("credentials", registry.credentials),
            ("pull_credentials", registry.pull_credentials),
        ):
            if credentials is None:
                continue
            if credentials.username is None or credentials.token_env is None:
                raise StackError(
                    f"the embedded registry needs registry.{field}.username and token_env in "
                    "the config"
                )
            password = passwords[credentials.token_env]
            if users.setdefault(credentials.username, password) != password:
                raise StackError(
                    "registry.pull_credentials and registry.credentials name the same username "
                    "with different secrets: give the pull user a username of its own"
                )
        prepare_registry(self.settings.home / "registry", registry.url, users)

    def _spawn(self, service: Service) -> None:
        withheld = frozenset().union(*secret_variables(self.config).values()) - service.secrets
        withheld |= {CLIENT_CREDENTIAL}
        withheld |= {f"{name}_FILE" for name in withheld}
        env = {key: value for key, value in os.environ.items() if key not in withheld}
        env |= {"PATH": search_path(), "BATON_HOME": str(self.settings.home)}
        for name, password in self.registry_passwords().items():
            if name in service.secrets:
                env.setdefault(name, password)
        env.setdefault("TEMPORAL_ADDRESS", f"127.0.0.1:{self.settings.temporal_port}")
        # Builds here start FROM the local base image (`make docker`) when the engine holds it,
        # never Docker Hub, whether `make demo` (which exports it) or `baton dev up` started the
        # stack; BATON_BASE_IMAGE set (empty: the Dockerfile's own) wins.
        if service.name == "worker":
            # The stack's API serves the board: notifications link a change's page there.
            env.setdefault("BATON_API_BASE", self.settings.api_base or self.settings.api_url)
        if service.name == "worker" and BASE_IMAGE not in env and local_base_image():
            env[BASE_IMAGE] = LOCAL_BASE_IMAGE  # as `make demo` passes it: not Docker Hub's
        with open(self.log_dir / f"{service.name}.log", "ab") as log:
            process = subprocess.Popen(
                service.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=PROJECT_ROOT,
                start_new_session=True,
            )
        self._pid_file(service.name).write_text(str(process.pid))

    def _wait_ready(self, name: str, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid(name) is None:
                raise StackError(f"{name} exited while starting: see {self.log_dir / name}.log")
            try:
                if shared_http.client().get(url, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise StackError(f"{name} did not answer {url} within {timeout_s:.0f}s")

    def down(self, *, timeout_s: float = 20) -> list[str]:
        """Stop every running service, newest first; returns the names stopped. Services that no
        other running one needs stop together, then those they needed."""
        running = {name: pid for name in reversed(self.names()) if (pid := self.pid(name))}
        stopped: list[str] = []
        while running:
            needed = {need for name in running for need in NEEDS.get(name, ())}
            now = [name for name in running if name not in needed] or list(running)
            _terminate([running.pop(name) for name in now], timeout_s)
            for name in now:
                self._pid_file(name).unlink(missing_ok=True)
            stopped += now
        return stopped


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _terminate(pids: list[int], timeout_s: float) -> None:
    """SIGTERM each process group, then SIGKILL those that outlive the timeout."""
    alive = []
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        alive.append(pid)
    deadline = time.monotonic() + timeout_s
    while alive and time.monotonic() < deadline:
        for pid in alive:
            _reap(pid)
        alive = [pid for pid in alive if _exists(pid)]
        if alive:
            time.sleep(0.1)
    for pid in alive:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    """Collect a child that exited, so it does not linger as a zombie that looks alive."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
