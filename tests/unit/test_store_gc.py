"""`baton store gc`: what nothing stored again for a while leaves the store, as a user runs it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from baton.settings import Settings
from baton.store import BlobNotFound, FileBlobStore, FileRecordStore, Stores
from tests.fixtures.cli import run_baton

DAY_S = 24 * 3600


def test_gc_deletes_the_logs_and_manifests_of_home_not_stored_again_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))
    stores = Stores.home(Settings())
    old, kept, used_again = (stores.logs.put(f"step {n}\n") for n in range(3))
    manifests = stores.blobs.put("kind: ConfigMap\n")
    assert isinstance(stores.records, FileRecordStore)
    stores.records.save("reconcile", "heads", b"{}")
    ten_days_ago = time.time() - 10 * DAY_S
    for store, ref in ((stores.logs, old), (stores.logs, used_again), (stores.blobs, manifests)):
        assert isinstance(store, FileBlobStore)
        os.utime(store.root / ref[7:9] / ref[9:], (ten_days_ago, ten_days_ago))
    stores.logs.put("step 2\n")  # used again today: its age starts over

    dry = run_baton("store", "gc", "--older-than", "7d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete 1 step logs" in dry.stdout
    assert "would delete 1 rendered manifests" in dry.stdout
    assert stores.logs.get(old) == "step 0\n"

    done = run_baton("store", "gc", "--older-than", "7d")
    assert done.returncode == 0, done.stderr
    assert "deleted 1 step logs" in done.stdout
    with pytest.raises(BlobNotFound):
        stores.logs.get(old)
    with pytest.raises(BlobNotFound):
        stores.blobs.get(manifests)
    assert stores.logs.get(kept) == "step 1\n"
    assert stores.logs.get(used_again) == "step 2\n"
    assert stores.records.load("reconcile", "heads") == b"{}"


@pytest.mark.parametrize(
    ("store", "args", "says"),
    [
        ("home", ["--older-than", "1h"], "give a duration of at least 2d"),
        ("home", ["--older-than", "soon"], "give a duration of at least 2d"),
        (
            "registry",
            ["--older-than", "90d"],
            "expire baton/logs and baton/blobs with the registry",
        ),
    ],
)
def test_gc_refuses_in_one_line(
    store: str, args: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BATON_STORE", store)
    result = run_baton("store", "gc", *args)
    assert result.returncode == 2  # usage: a wrong command line or configuration
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
