"""Forge adapters behind the `Forge` protocol; which one is used is configuration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from baton.config import ForgeConfig
from baton.errors import ConfigurationError
from baton.forges.base import Forge
from baton.settings import Settings

if TYPE_CHECKING:
    from baton.forges.azure_devops import AzureDevOpsForge
    from baton.forges.github import GitHubRestForge


def create_forge(config: ForgeConfig, settings: Settings) -> Forge:
    """The adapter for `config.kind`; hosted forges read their token now, from the credentials."""
    if config.kind == "local":
        from baton.local.forge import LocalForge

        return LocalForge(
            settings.forge_dir,
            webhook_url=f"{settings.api_url}/webhooks/github",
            webhook_secret=config.webhook_secret() or settings.webhook_secret,
            merge_method=config.merge or "merge",
        )
    adapter: type[GitHubRestForge | AzureDevOpsForge]
    if config.kind == "github":
        from baton.forges.github import GitHubForge as adapter
    elif config.kind == "gitea":
        from baton.forges.gitea import GiteaForge as adapter
    else:
        from baton.forges.azure_devops import AzureDevOpsForge as adapter
    assert config.url is not None  # ForgeConfig requires it for hosted forges
    credentials = config.credentials
    return adapter(
        config.url,
        credentials.token(),
        username=credentials.username,
        token_env=credentials.token_env,
        merge_method=config.merge,
    )


def local_repository(forge: Forge, repo: str) -> Path:
    """The directory of `repo` when the forge serves it from this machine (a file:// clone URL):
    the local forge's repositories, or a test fake's."""
    parts = urlsplit(forge.clone_url(repo))
    if parts.scheme != "file":
        # The URL may carry a token: it is not part of the message.
        raise ConfigurationError(
            f"{repo!r} is not on this machine ({parts.scheme} clone URL): the local cluster reads "
            "the GitOps repository from disk; with a hosted forge use sync.kind: flux"
        )
    return Path(unquote(parts.path))


def pull_request_page(forge: ForgeConfig, repo: str, number: int) -> str | None:
    """The web page of pull request `number` of `repo` on the configured forge, built from
    `forge.url` without a call, or None on the local forge (its pull requests have no page:
    `baton forge pr show` prints them).

    As each forge's `html_url` gives it: GitHub `https://github.com/OWNER/NAME/pull/N` (the API
    at api.github.com; GitHub Enterprise Server's at `HOST/api/v3`), Gitea
    `HOST/OWNER/NAME/pulls/N` (its API at `HOST/api/v1`), Azure DevOps
    `ORG/PROJECT/_git/REPO/pullrequest/N` (as `AzureDevOpsForge` builds it)."""
    if forge.kind == "local" or not forge.url:
        return None
    base = forge.url.rstrip("/")
    if forge.kind == "github":
        web = "https://github.com" if base == "https://api.github.com" else base
        return f"{web.removesuffix('/api/v3')}/{repo}/pull/{number}"
    if forge.kind == "gitea":
        return f"{base.removesuffix('/api/v1')}/{repo}/pulls/{number}"
    project, _, name = repo.partition("/")
    return f"{base}/{quote(project)}/_git/{quote(name)}/pullrequest/{number}"
