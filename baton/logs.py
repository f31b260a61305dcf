"""Full logs of checks and builds, kept outside workflow history.

Workflow history only carries a `LogRef` (the sha256 of the log) and a short `excerpt`; the full
text lives in a content-addressed `LogStore`, so the same output stored twice is one file.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from baton.store import BlobNotFound, FileBlobStore

Progress = Callable[[str], None]
"""Called with a one-line status while a long operation runs; activities heartbeat from it."""

T = TypeVar("T")


LogNotFound = BlobNotFound
"""A log reference names no stored log (the store's BlobNotFound)."""

LogStore = FileBlobStore
"""Content-addressed log files on one machine's disk (`baton.store.FileBlobStore`)."""


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
