"""The queue database's threads: one owns the SQLite connection, one syncs its log to disk.

The event loop hands work over through thread-safe queues and gets each answer back as a
future; no loop iteration sits between a request and the thread that serves it.

- The **database thread** takes everything that arrived while it was busy. All the writes go
  into one transaction (group commit: fifty concurrent `put`s cost one commit); then the reads
  run, after the writes, so they see them.
- With `sync_log` (the queue's FULL durability) SQLite commits at its NORMAL level and the
  committed batch goes to the **sync thread**, which fdatasyncs the write-ahead log and only
  then answers the batch's callers. One fdatasync covers every transaction committed before it
  began, so the database thread commits the next batch while the last one waits for the disk:
  nothing is acknowledged before it is on disk, and the disk wait is overlapped. A write whose
  sync failed is answered with `QueueSyncError`: it is committed, but whether it reached the
  disk is unknown, so its caller must not claim it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from gateway.errors import QueueSyncError
from gateway.queue.storage import storage_error

logger = logging.getLogger(__name__)

#: Runs in the database thread: one batch of writes (opaque to this module) in one transaction,
#: returning one result per write, or raising to fail them all.
Transaction = Callable[[sqlite3.Connection, list[Any]], list[Any]]
#: A call that runs in the database thread outside any transaction (reads, close).
Call = Callable[[sqlite3.Connection], Any]
#: Runs in the database thread after a batch failed because of the storage.
OnStorageError = Callable[[sqlite3.Connection, BaseException], None]
#: What goes back to the loop: the future, then a result or an exception.
_Answer = tuple["asyncio.Future[Any]", Any, BaseException | None]
#: What the loop hands over: the work, its future, whether it is a write, and (for a
#: `write_committed`) the future answered once it is durable.
_Item = tuple[Any, "asyncio.Future[Any]", bool, "asyncio.Future[None] | None"]

_STOP: Final = object()
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class DatabaseThread:
    """An SQLite connection in a thread of its own, fed with writes (group-committed) and calls."""

    def __init__(
        self,
        name: str,
        transaction: Transaction,
        sync_log: Path | None,
        on_storage_error: OnStorageError | None = None,
    ) -> None:
        self._name = name
        self._transaction = transaction
        self._sync_log = sync_log
        self._on_storage_error = on_storage_error
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._to_sync: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db_thread: threading.Thread | None = None
        self._sync_thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        self._log_fd: int | None = None

    async def start(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Start the threads; the database thread opens the connection with `connect`."""
        self._loop = asyncio.get_running_loop()
        opened = self._loop.create_future()
        if self._sync_log is not None:
            self._sync_thread = threading.Thread(
                target=self._sync_forever, name=f"{self._name}-sync", daemon=True
            )
            self._sync_thread.start()
        self._db_thread = threading.Thread(
            target=self._serve, args=(connect, opened), name=f"{self._name}-db", daemon=True
        )
        self._db_thread.start()
        try:
            await opened
        except BaseException:
            await self.stop()
            raise

    def write(self, work: Any) -> asyncio.Future[Any]:
        """Commit `work` with the next batch; the future answers once it is durable."""
        future = self._future()
        self._inbox.put((work, future, True, None))
        return future

    def write_committed(self, work: Any) -> tuple[asyncio.Future[Any], asyncio.Future[None]]:
        """Commit `work` with the next batch: the first future answers once it is committed,
        the second once it is durable (or with `QueueSyncError`). Every write committed after
        it is synced after it: the log is one sequential file."""
        future, durable = self._future(), self._future()
        self._inbox.put((work, future, True, durable))
        return future, durable

    def call(self, fn: Call) -> asyncio.Future[Any]:
        """Run `fn(connection)` in the database thread, after the writes submitted before it."""
        future = self._future()
        self._inbox.put((fn, future, False, None))
        return future

    async def stop(self) -> None:
        """Finish what was submitted, sync it, close the connection, end the threads."""
        thread, self._db_thread = self._db_thread, None
        if thread is None:
            return
        self._inbox.put(_STOP)
        await asyncio.to_thread(thread.join)

    def _future(self) -> asyncio.Future[Any]:
        if self._loop is None or self._db_thread is None:
            raise RuntimeError("the queue is not open")
        return self._loop.create_future()

    # --- the database thread ----------------------------------------------------------------

    def _serve(
        self, connect: Callable[[], sqlite3.Connection], opened: asyncio.Future[Any]
    ) -> None:
        try:
            self._db = connect()
        except BaseException as exc:
            self._answer([(opened, None, exc)])
            self._stop_sync()
            return
        self._answer([(opened, None, None)])
        try:
            while True:
                items = _drain(self._inbox)
                stop = any(item is _STOP for item in items)
                work = [item for item in items if item is not _STOP]
                try:
                    self._run_batch(work)
                except Exception as exc:  # a bug here must not leave callers waiting forever
                    logger.exception("queue database thread: batch failed")
                    self._answer([(future, None, exc) for _, future, _, _ in work])
                if stop:
                    return
        finally:
            self._stop_sync()  # every committed batch is synced before the connection closes
            self._db.close()

    def _stop_sync(self) -> None:
        if self._sync_thread is not None:
            self._to_sync.put(_STOP)
            self._sync_thread.join()

    def _run_batch(self, items: list[_Item]) -> None:
        assert self._db is not None
        # A caller that gave up before its transaction began is not owed a write.
        writes = [
            (work, fut) for work, fut, is_write, _ in items if is_write and not fut.cancelled()
        ]
        calls = [(fn, fut) for fn, fut, is_write, _ in items if not is_write]
        written = self._commit(writes) if writes else []
        # A `write_committed` is answered now; its durable future takes its place below.
        early = {id(fut): durable for _, fut, _, durable in items if durable is not None}
        answers: list[_Answer] = []
        if early:
            answers = [answer for answer in written if id(answer[0]) in early]
            written = [
                (early[id(fut)], None, None) if id(fut) in early else (fut, result, exc)
                for fut, result, exc in written
                if id(fut) not in early or exc is None  # not committed: nothing to sync
            ]
        if written and self._sync_log is not None:
            self._to_sync.put(written)
            written = []
        answers += written
        for fn, future in calls:
            try:
                answers.append((future, fn(self._db), None))
            except Exception as exc:
                answers.append((future, None, storage_error(exc) or exc))
        if answers:
            self._answer(answers)

    def _commit(self, writes: list[tuple[Any, asyncio.Future[Any]]]) -> list[_Answer]:
        assert self._db is not None
        try:
            results = self._transaction(self._db, [work for work, _ in writes])
        except Exception as exc:
            error = storage_error(exc)
            if error is not None:
                self._storage_failed(exc)
                return [(future, None, error) for _, future in writes]
            if len(writes) == 1:
                return [(writes[0][1], None, exc)]
            # One bad write must not fail the others: replay each in its own transaction.
            logger.warning("queue batch of %d failed (%s); replaying one by one", len(writes), exc)
            return [answer for write in writes for answer in self._commit([write])]
        return [(future, result, None) for (_, future), result in zip(writes, results, strict=True)]

    def _storage_failed(self, exc: BaseException) -> None:
        if self._on_storage_error is None or self._db is None:
            return
        try:
            self._on_storage_error(self._db, exc)
        except Exception:  # making room is best effort; the caller has its answer already
            logger.exception("queue database thread: handling a storage error failed")

    # --- the sync thread --------------------------------------------------------------------

    def _sync_forever(self) -> None:
        try:
            while True:
                items = _drain(self._to_sync)
                answers = [answer for item in items if item is not _STOP for answer in item]
                if answers:
                    self._answer(self._synced(answers))
                if any(item is _STOP for item in items):
                    return
        finally:
            if self._log_fd is not None:
                os.close(self._log_fd)
                self._log_fd = None

    def _synced(self, answers: list[_Answer]) -> list[_Answer]:
        """The answers, once the log is on disk; failed ones if it could not be synced."""
        try:
            self._sync()
        except OSError as exc:  # the queue's health logs the trouble once, not once per sync
            logger.debug("cannot sync the queue database's log %s: %s", self._sync_log, exc)
            reason = "the disk did not confirm a write"  # EIO: it may or may not be there
            if exc.errno != errno.EIO and (known := storage_error(exc)) is not None:
                reason = known.reason  # say "read-only", "disk full" when that is what it is
            message = f"the queue database could not be synced to disk: {exc}"
            return [
                (future, None, exc_ or QueueSyncError(message, reason, result))
                for future, result, exc_ in answers
            ]
        return answers

    def _sync(self) -> None:
        """fdatasync the log (opened once: SQLite keeps the file while a connection is open)."""
        assert self._sync_log is not None
        if self._log_fd is None:
            self._log_fd = os.open(self._sync_log, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            # A new log file is durable only once its directory entry is.
            directory = os.open(self._sync_log.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        _datasync(self._log_fd)

    # --- back to the loop -------------------------------------------------------------------

    def _answer(self, answers: list[_Answer]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(_settle, answers)


def _drain(inbox: queue.SimpleQueue[Any]) -> list[Any]:
    """Wait for the first item, then take every other one already there."""
    items = [inbox.get()]
    while True:
        try:
            items.append(inbox.get_nowait())
        except queue.Empty:
            return items


def _settle(answers: list[_Answer]) -> None:
    for future, result, exc in answers:
        if future.done():  # the caller was cancelled; the write stands all the same
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
