"""Credentials handed to tools live in a private directory per process that nothing outlives:
removed after each use, at exit, and (after a crash) when the next worker starts."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from baton import private
from baton.tools import PROJECT_ROOT

MAKE_AND_WAIT = """
import sys, time
from baton import private
with private.scratch("helm-") as scratch:
    private.write_secret(scratch / "registry.json", "s3cret")
    print(scratch, flush=True)
    if sys.argv[1] == "wait":
        time.sleep(600)
"""


def run_python(tmp: Path, mode: str) -> subprocess.Popen[str]:
    """A process that writes a credential into its private directory, then exits or waits."""
    return subprocess.Popen(
        [sys.executable, "-c", MAKE_AND_WAIT, mode],
        env={**os.environ, "TMPDIR": str(tmp)},
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(private.tempfile, "tempdir", None)  # read TMPDIR again
    monkeypatch.setattr(private, "_own", None)
    return tmp_path


def test_a_credential_is_0600_in_a_0700_directory_removed_after_its_use(tmp: Path) -> None:
    with pytest.raises(RuntimeError), private.scratch("helm-") as scratch:
        secret = private.write_secret(scratch / "registry.json", "s3cret")
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert stat.S_IMODE(private.directory().stat().st_mode) == 0o700
        assert scratch.parent == private.directory() and scratch.parent.parent == tmp
        raise RuntimeError("helm failed")
    assert not scratch.exists()


def test_the_private_directory_is_gone_when_its_process_exits(tmp: Path) -> None:
    process = run_python(tmp, "exit")
    assert process.stdout is not None
    scratch = Path(process.stdout.readline().strip())
    assert process.wait() == 0
    assert scratch.parent.name.startswith(private.PREFIX)
    assert list(tmp.iterdir()) == []


def test_a_killed_process_leftovers_are_removed_and_a_running_ones_kept(tmp: Path) -> None:
    killed, running = run_python(tmp, "wait"), run_python(tmp, "wait")
    try:
        assert killed.stdout is not None and running.stdout is not None
        left = Path(killed.stdout.readline().strip()).parent
        kept = Path(running.stdout.readline().strip()).parent
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert (left / next(iter(os.listdir(left))) / "registry.json").read_text() == "s3cret"

        assert private.remove_leftovers() == [left]

        assert not left.exists() and kept.exists()
    finally:
        running.kill()
        running.wait()
