"""Fixtures for end-to-end tests on the whole embedded stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import E2EStack, running_stack


@pytest.fixture(scope="module")
def baton_stack(
    tmp_path_factory: pytest.TempPathFactory, base_image: str, docker_client
) -> Iterator[E2EStack]:
    """The embedded stack on free ports, with the sample app and GitOps repositories seeded."""
    with running_stack(tmp_path_factory.mktemp("baton"), base_image) as stack:
        yield stack
