"""Processes that only read get only a credential that reads: the registry's pull credentials
(`registry.pull_credentials`) for the API and the local cluster, the forge's read token
(`forge.read_credentials`) for the local cluster; the push password stays with the workers."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.board.routes import COOKIE
from baton.config import BatonConfig, Credentials, RegistryConfig, parse_config, reader_warnings
from baton.forges.http import TokenRejected
from baton.local.cluster import gitops_directory
from baton.local.stack import StackError
from baton.registry import RegistryAuthError
from baton.settings import Settings
from baton.store import StoreReaders, Stores
from baton.tokens import TokenStore
from tests.fakes.forges import FakeGitHub
from tests.fixtures.cli import run_baton
from tests.fixtures.docker import LocalRegistry
from tests.fixtures.ports import free_port
from tests.unit.test_cli_errors import PULL, PUSH, local_stack, spawned_secrets

APP = "apps: [{name: web, repo: web, image: web, chart: chart}]\n"
PUSH_WARNING = (
    "registry.pull_credentials is unset or names the push secret: the API and the local cluster, "
    "which only read, hold the registry's push password; set it to a pull-only robot account or "
    "read-only token"
)
FORGE_WARNING = (
    "forge.read_credentials is unset or names the same token as forge.credentials: the local "
    "cluster, which only reads the GitOps repository, holds a token that writes; set it to a "
    "read-only token (a deploy token)"
)


def _edit(path: Path, **sections: dict[str, object] | None) -> None:
    """Replace (None: remove) keys of the registry and forge sections of the config at `path`."""
    config = yaml.safe_load(path.read_text())
    for dotted, value in sections.items():
        section, key = dotted.split("__")
        if value is None:
            config[section].pop(key, None)
        else:
            config[section][key] = value
    path.write_text(yaml.safe_dump(config))


def test_without_pull_credentials_readers_fall_back_to_the_push_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = local_stack(tmp_path, monkeypatch)
    _edit(
        tmp_path / "baton.yaml",
        registry__pull_credentials=None,
        forge__credentials={"token_env": "FORGE_TOKEN"},
    )
    monkeypatch.setenv("FORGE_TOKEN", "forge-secret")
    monkeypatch.delenv(PULL, raising=False)

    seen = spawned_secrets(stack, (PUSH, PULL, "FORGE_TOKEN"))

    push = (stack.settings.secrets_dir / "registry-password").read_text().strip()
    assert seen == {
        "temporal": {},
        "registry": {},
        "api": {PUSH: push, "FORGE_TOKEN": "forge-secret"},
        "worker": {PUSH: push, "FORGE_TOKEN": "forge-secret"},
        "cluster": {PUSH: push, "FORGE_TOKEN": "forge-secret"},
    }


def test_the_embedded_registry_has_a_push_user_and_a_pull_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = local_stack(tmp_path, monkeypatch)
    stack._prepare_registry()

    htpasswd = stack.settings.home / "registry" / "htpasswd"
    assert [line.split(":")[0] for line in htpasswd.read_text().splitlines()] == [
        "baton",
        "baton-pull",
    ]
    assert htpasswd.stat().st_mode & 0o777 == 0o600
    passwords = stack.registry_passwords()
    assert set(passwords) == {PUSH, PULL}
    assert passwords[PUSH] != passwords[PULL]


def test_a_pull_user_named_like_the_push_user_with_another_secret_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = local_stack(tmp_path, monkeypatch)
    _edit(
        tmp_path / "baton.yaml", registry__pull_credentials={"username": "baton", "token_env": PULL}
    )
    with pytest.raises(StackError) as refused:
        stack._prepare_registry()
    assert str(refused.value) == (
        "registry.pull_credentials and registry.credentials name the same username with "
        "different secrets: give the pull user a username of its own"
    )


def test_config_check_warns_once_when_readers_would_hold_the_push_password(
    tmp_path: Path,
) -> None:
    path = tmp_path / "baton.yaml"
    path.write_text(
        APP + "registry: {credentials: {username: baton, token_env: BATON_REGISTRY_PASSWORD}}\n"
    )
    checked = run_baton("config", "check", str(path))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.splitlines() == [f"{path}: warning: {PUSH_WARNING}"]
    assert checked.stdout.startswith(f"{path}: ok")
    as_json = run_baton("config", "check", str(path), "--json")
    assert json.loads(as_json.stdout)["warnings"] == [PUSH_WARNING]

    # The default configuration (what `baton init` writes) has a pull user: nothing to say.
    example = run_baton("config", "check", str(Path("examples") / "baton.yaml"))
    assert example.returncode == 0 and example.stderr == ""


def test_dev_up_says_the_readers_hold_the_push_password_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    stack = local_stack(tmp_path, monkeypatch, registry_port=port)
    _edit(tmp_path / "baton.yaml", registry__pull_credentials=None)
    with socket.socket() as busy:  # the start stops at once, at the registry's port
        busy.bind(("127.0.0.1", port))
        busy.listen()
        up = run_baton("dev", "up", "--detach")
    lines = up.stderr.splitlines()
    assert up.returncode != 0 and f"port {port} on 127.0.0.1 is in use" in lines[-1], up.stderr
    assert lines[0] == f"warning: {PUSH_WARNING}"
    assert sum(PUSH_WARNING in line for line in lines) == 1
    assert "Traceback" not in up.stderr
    assert stack.status() == dict.fromkeys(stack.names())


@pytest.mark.parametrize(
    ("pull", "warned"),
    [
        (None, True),
        ({"username": "baton", "token_env": "BATON_REGISTRY_PASSWORD"}, True),  # the push secret
        ({"username": "robot$baton-pull", "token_env": "BATON_REGISTRY_PULL_PASSWORD"}, False),
    ],
)
def test_the_registry_warning_names_readers_holding_the_push_secret(
    pull: dict[str, str] | None, warned: bool
) -> None:
    registry = {"credentials": {"username": "baton", "token_env": "BATON_REGISTRY_PASSWORD"}}
    if pull is not None:
        registry["pull_credentials"] = pull
    config = BatonConfig.model_validate(yaml.safe_load(APP) | {"registry": registry})
    assert reader_warnings(config) == ([PUSH_WARNING] if warned else [])


def test_the_forge_warning_only_concerns_a_local_cluster_reading_a_hosted_forge() -> None:
    forge = "forge: {kind: github, url: https://api.github.com, credentials: {token_env: GH}}\n"
    local = parse_config(APP + forge + "environments: [{name: dev, namespace: dev}]\n")
    assert reader_warnings(local) == [FORGE_WARNING]
    flux = "environments: [{name: dev, namespace: dev, sync: {kind: flux}}]\n"
    assert reader_warnings(parse_config(APP + forge + flux)) == []
    read = forge.replace("}}", "}, read_credentials: {token_env: GH_READ}}")
    assert (
        reader_warnings(parse_config(APP + read + "environments: [{name: dev, namespace: dev}]\n"))
        == []
    )
    assert local.forge.reading().credentials.token_env == "GH"
    assert parse_config(APP + read).forge.reading().credentials.token_env == "GH_READ"


def test_a_pull_username_without_a_secret_is_one_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "baton.yaml"
    path.write_text(APP + "registry: {pull_credentials: {username: baton-pull}}\n")
    checked = run_baton("config", "check", str(path))
    assert checked.returncode == 2
    problem = "registry: pull_credentials: a username needs token_env or token_file"
    assert checked.stderr.splitlines() == [f"{path}: {problem} (where its secret is)"]


async def test_the_api_reads_a_log_a_worker_wrote_holding_only_the_pull_password(
    tmp_path: Path,
    registry: LocalRegistry,
    temporal_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BATON_STORE")  # the default: the registry
    monkeypatch.setenv("TEST_PUSH_PASSWORD", registry.password)
    pushing = RegistryConfig(
        url=registry.host,
        credentials=Credentials(username=registry.username, token_env="TEST_PUSH_PASSWORD"),
        pull_credentials=Credentials(username=registry.pull_username, token_env="TEST_PULL"),
    )
    settings = Settings(home=tmp_path / "home")
    ref = Stores.configured(settings, pushing).logs.put("FAILED tests/test_app.py\n")

    # The API's process: the pull password alone, as the embedded stack starts it.
    monkeypatch.delenv("TEST_PUSH_PASSWORD")
    monkeypatch.setenv("TEST_PULL", registry.pull_password)
    readers = StoreReaders.configured(settings, pushing)
    assert not hasattr(readers.logs, "put") and not hasattr(readers.records, "save")
    config = BatonConfig.model_validate(yaml.safe_load(APP) | {"registry": pushing.model_dump()})
    app = create_app(settings, config, temporal_env.client)
    token = TokenStore(settings.tokens_file).create("carol").token
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://baton", cookies={COOKIE: token}
        ) as http:
            log = await http.get(f"/board/logs/{ref}")
    assert log.status_code == 200, log.text
    assert log.text == "FAILED tests/test_app.py\n"
    assert app.state.store_readers.logs.registry.username == registry.pull_username

    # A pull password that is wrong is refused by the registry: the reads did use it.
    monkeypatch.setenv("TEST_PULL", "not-the-pull-password")
    with pytest.raises(RegistryAuthError, match="rejected the credentials for user baton-pull"):
        StoreReaders.configured(settings, pushing).logs.get(ref)


def test_the_local_cluster_finds_the_gitops_repository_with_the_forges_read_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITOPS_WRITE_TOKEN", raising=False)  # as the stack starts the cluster
    monkeypatch.setenv("GITOPS_READ_TOKEN", "read-only-token")
    settings = Settings(home=tmp_path / "home")
    with FakeGitHub(tmp_path / "forge", {"read-only-token": "gitops-reader"}) as fake:
        fake.create_repo("acme/gitops")
        forge = (
            f'forge: {{kind: github, url: "{fake.url}", credentials: {{token_env: '
            "GITOPS_WRITE_TOKEN}, read_credentials: {token_env: GITOPS_READ_TOKEN}}\n"
            "gitops: {repo: acme/gitops}\n"
        )
        config = parse_config(APP + forge)
        assert gitops_directory(config, settings) == Path(
            urlsplit(fake.clone_url("acme/gitops")).path
        )
        # The write token is not there, so without the read token the forge refuses the read.
        unread = config.model_copy(
            update={"forge": config.forge.model_copy(update={"read_credentials": None})}
        )
        with pytest.raises(TokenRejected):
            gitops_directory(unread, settings)
