"""The API's journal of accepted workflow starts: a verified delivery that starts a change is
written here (SQLite in WAL mode, synced to disk on every commit) and answered at once; a task
of the API process then starts the workflows from it, retrying until Temporal accepts each start,
and only then removes the entry. An API that stops (SIGTERM) first gives the entries left a
while to be made (BATON_API_DRAIN_S: a replica scaled down for good leaves none behind while
Temporal answers); one that stops or crashes with entries left starts them when it opens the
journal again, before anything it accepts later.

Starts are idempotent by workflow id (the journal holds one entry per id, and Temporal's id
policies join a start to an existing run), so a start made twice, by a retry or by two API
processes sharing a home, starts one workflow.

A start no retry can make (`StartRefused`: an entry an earlier Baton wrote whose input this one
cannot read) is put aside, with its reason, in the journal's `refused_starts` table, logged as an
error and counted (`refused()`), instead of being tried forever; its change's later deliveries
go on, and the reconciler, which reads the forge, starts a change its PR still needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baton.errors import InfrastructureError

log = logging.getLogger(__name__)

CONCURRENT_STARTS = 32
"""Starts in flight at once: enough to keep up with a burst of deliveries (a start takes
tens of milliseconds), few enough not to flood a Temporal that is struggling."""
FIRST_RETRY_S, LAST_RETRY_S = 0.5, 30.0
SETTLE_TIMEOUT_S = 10.0
"""How long a signal to a workflow whose start is still journaled waits for it, before the
delivery is answered 503 (for the forge to redeliver)."""


class StartRefused(Exception):
    """Raised by a start function for a start no retry can make; the message says why."""


@dataclass(frozen=True)
class PendingStart:
    """A workflow start the API accepted: its id, its input (JSON) and its summary; `value`:
    the input itself, while the process that accepted it runs."""

    workflow_id: str
    input_json: str
    summary: str
    value: Any = None


StartFunction = Callable[[PendingStart], Awaitable[None]]
ReadFunction = Callable[[PendingStart], PendingStart]


class StartJournal:
    """Durable pending starts, and the task that makes them (`open` ... `close`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # One thread owns the connection: SQLite's writes (and their fsync) leave the event loop.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="start-journal")
        self._db: sqlite3.Connection | None = None
        self._pending: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._start: StartFunction | None = None
        self._slots = asyncio.Semaphore(CONCURRENT_STARTS)
        # Group commit: what arrives while a commit is being written goes in the next one.
        self._inserts: list[tuple[PendingStart, asyncio.Future[None]]] = []
        self._deletes: list[str] = []
        self._refusals: list[tuple[PendingStart, str]] = []
        self._refused = 0
        self._writing = False

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    def _connect(self) -> list[PendingStart]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # every commit is on disk before the 202
        db.execute("PRAGMA busy_timeout=5000")  # another API process sharing the home
        db.execute(
            "CREATE TABLE IF NOT EXISTS pending_starts ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " workflow_id TEXT NOT NULL UNIQUE,"
            " input TEXT NOT NULL,"
            " summary TEXT NOT NULL)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS refused_starts ("
            " workflow_id TEXT NOT NULL,"
            " input TEXT NOT NULL,"
            " summary TEXT NOT NULL,"
            " reason TEXT NOT NULL,"
            " refused_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        self._db = db
        (self._refused,) = db.execute("SELECT COUNT(*) FROM refused_starts").fetchone()
        rows = db.execute("SELECT workflow_id, input, summary FROM pending_starts ORDER BY seq")
        return [PendingStart(*row) for row in rows]

    async def open(self, start: StartFunction, read: ReadFunction | None = None) -> int:
        """Open the journal and start what it holds (left by a previous run) with `start`,
        before anything added from now on; how many entries it held. `read` reads an entry
        left by an earlier run (its `value` set), raising `StartRefused` for one this Baton
        cannot read: those are put aside at once, before any start is made."""
        self._start = start
        try:
            left = await self._call(self._connect)
        except sqlite3.Error as exc:
            raise InfrastructureError(f"cannot open the start journal {self.path}: {exc}") from None
        if left:
            log.info("starting %d workflow(s) accepted before the API stopped", len(left))
        readable = []
        for entry in left:
            try:
                readable.append(read(entry) if read is not None else entry)
            except StartRefused as exc:
                self._refuse(entry, exc)
        if self._refusals:
            self._queue()  # the first commit, before any start is made
        for entry in readable:
            self._schedule(entry)
        return len(left)

    def _refuse(self, entry: PendingStart, exc: StartRefused) -> None:
        """Put `entry` aside with the next commit, saying why in the log."""
        log.error(
            "start of %s refused, put aside in %s (table refused_starts): %s",
            entry.workflow_id,
            self.path,
            exc,
        )
        self._refusals.append((entry, str(exc)))

    def _write(
        self,
        inserts: list[PendingStart],
        deletes: list[str],
        refusals: list[tuple[PendingStart, str]],
    ) -> int:
        """One transaction (one sync to disk) for every entry added, removed and put aside
        since the last; how many entries it put aside (none that another API process sharing
        the journal moved first). Removals come first: an entry added for a workflow id is
        always newer than one removed for it."""
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            moved = self._db.executemany(
                "INSERT INTO refused_starts (workflow_id, input, summary, reason) "
                "SELECT workflow_id, input, summary, ? FROM pending_starts WHERE workflow_id = ?",
                [(why, e.workflow_id) for e, why in refusals],
            ).rowcount
            self._db.executemany(
                "DELETE FROM pending_starts WHERE workflow_id = ?",
                [(d,) for d in deletes] + [(e.workflow_id,) for e, _ in refusals],
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO pending_starts (workflow_id, input, summary) "
                "VALUES (?, ?, ?)",
                [(e.workflow_id, e.input_json, e.summary) for e in inserts],
            )
        return max(moved, 0)

    async def _flush(self) -> None:
        """Write what is queued, and what queues meanwhile, then wake the writers waiting."""
        self._writing = True
        try:
            while self._inserts or self._deletes or self._refusals:
                inserts, self._inserts = self._inserts, []
                deletes, self._deletes = self._deletes, []
                refusals, self._refusals = self._refusals, []
                try:
                    self._refused += await self._call(
                        self._write, [entry for entry, _ in inserts], deletes, refusals
                    )
                except sqlite3.Error as exc:
                    for _, done in inserts:
                        done.set_exception(
                            InfrastructureError(
                                f"the delivery could not be journaled ({exc}): redeliver it later"
                            )
                        )
                    if deletes or refusals:  # a restart tries them again, which joins them
                        log.warning("made or refused, but their journal entries stay: %s", exc)
                    continue
                for _, done in inserts:
                    done.set_result(None)
        finally:
            self._writing = False

    def _queue(self) -> None:
        if not self._writing:
            task = asyncio.create_task(self._flush(), name="start journal commit")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self._writing = True

    async def add(self, entry: PendingStart) -> None:
        """Journal `entry` (on disk when this returns) and start it in the background; an entry
        for a workflow id already pending is the same start."""
        if entry.workflow_id in self._pending:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inserts.append((entry, done))
        self._queue()
        await done
        if entry.workflow_id not in self._pending:
            self._schedule(entry)

    def _schedule(self, entry: PendingStart) -> None:
        self._pending[entry.workflow_id] = asyncio.Event()
        task = asyncio.create_task(self._run(entry), name=f"start {entry.workflow_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, entry: PendingStart) -> None:
        """Start `entry` until Temporal takes it, then remove it from the journal; one no
        retry can make (`StartRefused`) is put aside instead."""
        assert self._start is not None
        delay = FIRST_RETRY_S
        while True:
            try:
                async with self._slots:
                    await self._start(entry)
                self._deletes.append(entry.workflow_id)  # with the next commit
                break
            except StartRefused as exc:
                self._refuse(entry, exc)
                break
            except Exception as exc:  # noqa: BLE001 - Temporal down or refusing: keep it, retry
                log.warning(
                    "start of %s failed (%s: %s); retrying in %.1f s",
                    entry.workflow_id,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, LAST_RETRY_S)
        self._queue()
        self._pending.pop(entry.workflow_id).set()

    def pending(self) -> list[str]:
        """The workflow ids whose starts are journaled and not yet made."""
        return list(self._pending)

    def refused(self) -> int:
        """How many starts the journal holds put aside (`StartRefused`), this run's and before."""
        return self._refused

    async def settled(self, workflow_id: str, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Return once `workflow_id` has no journaled start left (at once when it has none);
        raise `InfrastructureError` when it is still pending after `timeout_s`."""
        event = self._pending.get(workflow_id)
        if event is None:
            return
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            raise InfrastructureError(
                f"the start of {workflow_id} is still waiting for Temporal: redeliver it later"
            ) from None

    async def drained(self) -> None:
        """Return once every start journaled so far has been made."""
        while self._pending:
            await next(iter(self._pending.values())).wait()

    async def close(self, drain_s: float = 0.0) -> None:
        """Give the pending starts up to `drain_s` to be made, then stop starting (what is left
        stays journaled for the next run) and close."""
        if self._pending and drain_s > 0:
            log.info("making %d pending start(s) before stopping", len(self._pending))
            try:
                await asyncio.wait_for(self.drained(), drain_s)
            except TimeoutError:
                log.warning(
                    "stopping with %d start(s) still journaled in %s: Temporal did not take "
                    "them within %g s; the next run on this journal makes them",
                    len(self._pending),
                    self.path,
                    drain_s,
                )
        for task in list(self._tasks):
            if task.get_name() != "start journal commit":  # commits finish
                task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._db is not None:
            await self._call(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)
