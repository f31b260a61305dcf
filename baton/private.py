"""A private directory per process for the credentials Baton hands to tools (helm's registry
config, skopeo's auth file, build secrets), so none is left in the temp directory.

Everything lives in `<temp dir>/baton-private-<pid>-<start>` (mode 0700, files 0600), named after
the process that made it and when that process started. Each use is a subdirectory removed when
the use ends, error or not (`scratch`); the directory itself is removed when the process exits
(atexit: a normal exit, Ctrl-C, or SIGTERM turned into one). A process killed outright (SIGKILL,
out of memory, its host restarted) cannot clean up: `remove_leftovers`, run when a worker starts,
removes the directories of processes that no longer run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

PREFIX = "baton-private-"
_lock = threading.Lock()
_own: Path | None = None


def _started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat's field 22); None when
    it does not run. Tells a process from a later one that reuses its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def directory() -> Path:
    """This process's private directory, made on first use (mode 0700)."""
    global _own
    with _lock:
        if _own is None:
            pid = os.getpid()
            path = Path(tempfile.gettempdir()) / f"{PREFIX}{pid}-{_started(pid) or 0}"
            path.mkdir(mode=0o700, exist_ok=True)
            path.chmod(0o700)  # whatever the umask let mkdir set
            atexit.register(shutil.rmtree, path, ignore_errors=True)
            _own = path
        return _own


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A fresh subdirectory of the private directory for one use, removed when the use ends."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=directory()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_secret(path: Path, text: str) -> Path:
    """Create `path` with `text`, readable by this user only (0600 from its creation on)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return path


def remove_leftovers() -> list[Path]:
    """Remove the private directories of processes that no longer run; returns them."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        pid, _, started = path.name.removeprefix(PREFIX).partition("-")
        if not pid.isdigit() or path == _own:
            continue
        running = _started(int(pid))
        if running is not None and started in (running, "0"):  # "0": no /proc to tell
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
