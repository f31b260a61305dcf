"""Fixtures for end-to-end tests on the whole embedded stack."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import E2EStack, start_stack, stop_stack


@pytest.fixture(scope="module")
def baton_stack(
    tmp_path_factory: pytest.TempPathFactory, base_image: str, docker_client
) -> Iterator[E2EStack]:
    """The embedded stack on free ports, with the sample app and GitOps repositories seeded."""
    saved = dict(os.environ)
    os.environ["BATON_BASE_IMAGE"] = base_image
    workdir: Path = tmp_path_factory.mktemp("baton")
    stack = start_stack(workdir)
    try:
        yield stack
    finally:
        stop_stack(stack)
        os.environ.clear()
        os.environ.update(saved)
