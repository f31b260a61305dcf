"""The web page of a change's pull request, as each forge's own `html_url` gives it."""

from __future__ import annotations

import pytest

from baton.config import ForgeConfig
from baton.forges import pull_request_page


@pytest.mark.parametrize(
    ("kind", "url", "repo", "page"),
    [
        ("github", "https://api.github.com", "acme/web", "https://github.com/acme/web/pull/7"),
        (
            "github",
            "https://ghe.example.com/api/v3/",
            "acme/web",
            "https://ghe.example.com/acme/web/pull/7",
        ),
        (
            "gitea",
            "https://git.example.com/api/v1",
            "acme/web",
            "https://git.example.com/acme/web/pulls/7",
        ),
        (
            "azure-devops",
            "https://dev.azure.com/acme",
            "Shop Floor/web",
            "https://dev.azure.com/acme/Shop%20Floor/_git/web/pullrequest/7",
        ),
    ],
)
def test_a_hosted_forges_pull_request_page(kind: str, url: str, repo: str, page: str) -> None:
    assert pull_request_page(ForgeConfig(kind=kind, url=url), repo, 7) == page


def test_the_local_forges_pull_requests_have_no_page() -> None:
    assert pull_request_page(ForgeConfig(), "web", 7) is None
