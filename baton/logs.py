"""Full logs of checks and builds, kept outside workflow history.

Workflow history only carries a `LogRef` (the sha256 of the log) and a short `excerpt`; the full
text lives in a content-addressed `LogStore`, so the same output stored twice is one file.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from baton.errors import InfrastructureError
from baton.models import LogRef
from baton.settings import Settings

Progress = Callable[[str], None]
"""Called with a one-line status while a long operation runs; activities heartbeat from it."""

T = TypeVar("T")

_REF = re.compile(r"^sha256:([0-9a-f]{64})$")


class LogNotFound(InfrastructureError):
    """A log reference names no stored log."""

    def __init__(self, ref: str, root: Path) -> None:
        super().__init__(
            f"log {ref} is not in {root}: logs are kept on the worker that produced them; "
            "look there or re-run the step"
        )


class LogStore:
    """Content-addressed log files under `root` (`root/ab/cdef...`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def default(cls) -> LogStore:
        """The store under the Baton data directory."""
        return cls(Settings().home / "logs")

    def put(self, text: str) -> LogRef:
        """Store `text` and return its reference; storing the same text again is a no-op."""
        data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a concurrent reader never sees a partial log.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return f"sha256:{digest}"

    def get(self, ref: LogRef) -> str:
        """The text stored under `ref`."""
        match = _REF.match(ref)
        if match is None:
            raise LogNotFound(ref, self.root)
        try:
            return self._path(match.group(1)).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise LogNotFound(ref, self.root) from None

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]


def excerpt(text: str, lines: int = 20, max_bytes: int = 2048) -> str:
    """The last `lines` non-blank lines of `text`, cut from the front to at most `max_bytes`."""
    tail = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    data = "\n".join(tail).encode()
    if len(data) <= max_bytes:
        return data.decode()
    marker = "…\n"
    kept = data[len(data) - max_bytes + len(marker.encode()) :].decode(errors="ignore")
    # Start at a line boundary so the excerpt does not begin mid-line.
    if "\n" in kept:
        kept = kept.split("\n", 1)[1]
    return marker + kept


def follow(items: Iterable[T], every_s: float) -> Iterator[T | None]:
    """Items of a blocking iterable as they arrive, and None each time `every_s` passes without one.

    The iterable is read in a daemon thread, so the caller can report progress (and enforce a
    deadline) while a quiet build step or test run produces no output.
    """
    done = object()
    inbox: queue.Queue[object] = queue.Queue()
    failure: list[BaseException] = []

    def pump() -> None:
        try:
            for item in items:
                inbox.put(item)
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)
        finally:
            inbox.put(done)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            item = inbox.get(timeout=every_s)
        except queue.Empty:
            yield None
            continue
        if item is done:
            if failure:
                raise failure[0]
            return
        yield item  # type: ignore[misc]
