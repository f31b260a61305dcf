"""bench/run.py keeps the JSON object a benchmark prints last, after a dev server's banner."""

from __future__ import annotations

import pytest

from bench.run import last_json

BANNER = """Temporal CLI 1.9.1 (Server 1.32.0, UI 2.54.1)

Temporal Server:      localhost:46357
Temporal Persistence: in-memory
"""


def test_the_object_after_the_dev_servers_banner_is_kept() -> None:
    printed = BANNER + '{\n "benchmark": "cli",\n "commands": {"raw_update": {"ratio": 1.0}}\n}\n'
    assert last_json(printed) == {"benchmark": "cli", "commands": {"raw_update": {"ratio": 1.0}}}


def test_output_without_an_object_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="no JSON object"):
        last_json(BANNER)
