"""A durable queue in one SQLite file: what the gateway accepted survives a crash.

Durability. The database runs in WAL mode. With `synchronous="FULL"` (the default) the WAL is
synced to disk after each commit and before any write of that commit returns, so once `put`
returns the command is on disk and survives a process kill, an OS crash and a power cut.
SQLite itself commits at its NORMAL level and the log is fdatasync'ed by a thread of its own,
so the next transaction commits while the last one waits for the disk (see
gateway/queue/dbthread.py). `"NORMAL"` skips that sync: commits still survive the process being
killed (the OS has the data), but the last ones may be lost if the machine goes down. `"EXTRA"`
leaves the syncing to SQLite (inside each commit, directory included), the slowest.

Throughput comes from group commit. The connection lives in a database thread of its own, which
takes every write that arrived while it was busy into one transaction, so fifty concurrent
`put`s cost one commit and one sync instead of fifty; new commands go in as one multi-row
INSERT. Reads run in the same thread after the writes submitted before them.

Nothing is cached in Python: the commands live in the file, and SQLite's page cache is bounded
(`CACHE_KIB`). One process owns the file at a time (`seq` is allotted by the writer): `open`
takes an exclusive lock beside it first (gateway/queue/lock.py); `read_only` opens skip the lock.

Storage faults become `StorageError`; `storage` (gateway/queue/storage.py) keeps the current
problem, and only `check` (called periodically) declares it over. A full disk gives up the
reserve file and checkpoints the log; a database file deleted under us refuses writes.

The file stays bounded: `prune` deletes old final commands (see gateway/retention.py) and the
database uses incremental auto-vacuum, so the pages they held go back to the file system (the
file shrinks at the next checkpoint) instead of waiting on SQLite's free list. It is private:
created 0600 in a directory created 0700, and SQLite gives its -wal and -shm files that mode.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, get_args

from gateway import constants as c
from gateway.commands import Command, Status
from gateway.errors import QueueSyncError, StartupError, StorageError
from gateway.queue import files, rows
from gateway.queue import sqlite_commands as commands_jobs
from gateway.queue import threads as thread_jobs
from gateway.queue.base import Completed, FailedUpdate, Queue, UpdateRecord
from gateway.queue.dbthread import DatabaseThread
from gateway.queue.deadletters import NEWEST_FAILED, dead_letters
from gateway.queue.lock import InstanceLock
from gateway.queue.rows import command_from_row
from gateway.queue.schema import COMMANDS_TABLE
from gateway.queue.sqlite_commands import HEAD_DUE, HELD_LANES, LANE_HEADS, NOT_FINAL, SELECT
from gateway.queue.sqlite_commit import Seqs, Work, transaction
from gateway.queue.sqlite_connect import CACHE_KIB, Synchronous, connect
from gateway.queue.sqlite_replay import SEEN, Signatures
from gateway.queue.sqlite_replay import record_update as record_update_job
from gateway.queue.sqlite_retention import prune as prune_job
from gateway.queue.storage import StorageWatch
from gateway.queue.threads import Thread

__all__ = [
    "CACHE_KIB",
    "SqliteQueue",
    "Synchronous",
    "command_from_row",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class SqliteQueue(Queue):
    """Commands in an SQLite database file, written by one group-committing database thread."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Synchronous = "FULL",
        read_only: bool = False,
        reserve_bytes: int = c.QUEUE_RESERVE_BYTES,
    ) -> None:
        if synchronous not in get_args(Synchronous):
            raise ValueError(f"synchronous must be one of {', '.join(get_args(Synchronous))}")
        self.path = path
        self.synchronous = synchronous
        #: For tools that only look: no lock, no schema changes, every write refused.
        self.read_only = read_only
        self.storage = StorageWatch(path, 0 if read_only else reserve_bytes)
        self.health = self.storage.health
        # The connection lives in a thread of its own: sqlite3 objects stay in their thread.
        self._thread: DatabaseThread | None = None
        self._seqs = Seqs()
        self._signatures = Signatures()
        self._lock = InstanceLock(path)

    async def open(self) -> None:
        """Take the instance lock, create the file, its directory and the schema (or migrate
        it), start the threads, make sure the storage reserve is there."""
        if self._thread is not None:
            return
        if not self.read_only:
            try:
                files.make_directory(self.path)  # 0700, before the lock file goes into it
            except OSError as exc:
                raise StartupError(f"cannot open the queue database {self.path}: {exc}") from None
            self._lock.acquire()  # before anything touches the database
        # FULL is SQLite's NORMAL plus a sync of the log after each commit, done off the
        # writer's path by the sync thread (see gateway/queue/dbthread.py).
        wal = self.path.with_name(self.path.name + "-wal")
        sync_log = wal if self.synchronous == "FULL" and not self.read_only else None
        thread = DatabaseThread("queue", self._transaction, sync_log, self.storage.make_room)
        try:
            await thread.start(self._connect)
        except (OSError, sqlite3.Error) as exc:
            self._lock.release()
            raise StartupError(f"cannot open the queue database {self.path}: {exc}") from None
        except BaseException:
            self._lock.release()
            raise
        self._thread = thread
        await thread.call(lambda _: self.storage.reserve_at_start())

    async def close(self) -> None:
        """Commit and sync what is pending, stop the threads, close the file, unlock."""
        thread, self._thread = self._thread, None
        if thread is not None:
            await thread.stop()
            self._lock.release()

    def problem(self) -> str | None:
        return self.health.problem

    async def check(self) -> str | None:
        thorough = self.health.problem is not None
        try:
            probe = self.storage.probe
            await self._guard(self._database().call(lambda db: probe(db, thorough, self.read_only)))
        except StorageError:
            return self.health.problem
        if thorough:  # a light look proves nothing about a failure that came meanwhile
            self.health.clear()
        return self.health.problem

    async def put(self, commands: Sequence[Command]) -> None:
        if not commands:
            return
        # Serialised here, so a command that is not JSON fails its own caller only.
        values = [rows.command_values(command) for command in commands]
        first: int = await self._guard(self._database().write(Work(rows=values)))
        for offset, command in enumerate(commands):
            command.seq = first + offset

    async def get(self, command_id: str) -> Command | None:
        command: Command | None = await self._database().call(
            lambda db: commands_jobs.select(db, command_id)
        )
        return command

    async def find_idempotent(self, key: str, since: float) -> Command | None:
        found = await self._read(
            f"{SELECT} WHERE idempotency_key = ? AND created_at >= ? ORDER BY seq LIMIT 1",
            (key, since),
        )
        return command_from_row(found[0]) if found else None

    async def lanes(self) -> dict[str, float]:
        heads = await self._read(LANE_HEADS, ())
        return {row["lane"]: row["not_before"] for row in heads if row["status"] == Status.QUEUED}

    async def head_due(self, chat: str) -> float | None:
        heads = await self._read(HEAD_DUE, (chat,))
        if not heads or heads[0]["status"] != Status.QUEUED:
            return None
        due: float = heads[0]["not_before"]
        return due

    async def claim(self, chat: str, now: float) -> Command | None:
        try:
            return await self._write(lambda db: commands_jobs.claim(db, chat, now))
        except QueueSyncError as exc:
            # Committed, only not confirmed on disk: go on with it, or it would sit in
            # `sending` with nobody sending it. Lost in a crash, it is just queued again.
            claimed: Command | None = exc.result
            return claimed

    async def complete(
        self, command_id: str, result: Any, now: float, status: Status = Status.SENT
    ) -> None:
        if not await self._write(
            lambda db: commands_jobs.complete(db, command_id, result, now, status)
        ):
            raise KeyError(command_id)

    async def complete_and_peek(
        self, command_id: str, result: Any, now: float, status: Status, lane: str
    ) -> Completed:
        # One transaction records the delivery and reads the lane's next head; the answer
        # comes at the commit, the sync follows (see `Queue.complete_and_peek`).
        def complete(db: sqlite3.Connection) -> tuple[bool, float | None]:
            found = commands_jobs.complete(db, command_id, result, now, status)
            return found, commands_jobs.head_due(db, lane)

        committed, durable = self._database().write_committed(Work(job=complete))
        found, due = await self._guard(committed)
        if not found:
            raise KeyError(command_id)
        return Completed(due, durable)

    async def awaiting(self) -> list[Command]:
        # A literal, not a parameter: that is what lets SQLite use the partial index.
        found = await self._read(f"{SELECT} WHERE status = 'awaiting_reply'", ())
        return [command_from_row(row) for row in found]

    async def settle_question(
        self, command_id: str, status: Status, reply: dict[str, Any], now: float
    ) -> bool:
        return await self._write(
            lambda db: commands_jobs.settle_question(db, command_id, status, reply, now)
        )

    async def fail(self, command_id: str, error: dict[str, Any], now: float) -> None:
        if not await self._write(lambda db: commands_jobs.fail(db, command_id, error, now)):
            raise KeyError(command_id)

    async def retry(
        self,
        command_id: str,
        not_before: float,
        now: float,
        error: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        refund: bool = False,
    ) -> None:
        if not await self._write(
            lambda db: commands_jobs.retry(db, command_id, not_before, now, error, params, refund)
        ):
            raise KeyError(command_id)

    async def save_part(self, command_id: str, part: int, result: Any, now: float) -> None:
        # Committed before the next part goes out, so a restart does not send a part twice.
        # A row of its own: updating the command would rewrite its whole text every time.
        if not await self._write(
            lambda db: commands_jobs.save_part(db, command_id, part, result, now)
        ):
            raise KeyError(command_id)

    async def remember_signature(
        self, client: str, signature: str, expires: float, now: float
    ) -> bool:
        return await self._write(
            lambda db: self._signatures.remember(db, client, signature, expires, now)
        )

    async def recover(self) -> int:
        return await self._write(commands_jobs.recover)

    async def prune(self, before: float, limit: int) -> int:
        keyed_before = min(before, time.time() - c.IDEMPOTENCY_WINDOW_SECONDS)
        return await self._write(lambda db: prune_job(db, before, keyed_before, limit))

    def storage_bytes(self) -> int | None:
        return files.size_on_disk(self.path)

    async def depth(self) -> int:
        found = await self._read(f"SELECT count(*) FROM {COMMANDS_TABLE} WHERE {NOT_FINAL}", ())
        count: int = found[0][0]
        return count

    async def update_seen(self, bot_id: int, update_id: int, digest: str) -> bool:
        found = await self._read(SEEN, (bot_id, update_id))
        return bool(found) and found[0]["digest"] == digest

    async def record_update(
        self, record: UpdateRecord, commands: Sequence[Command], forget_before: float
    ) -> bool:
        values = [rows.command_values(command) for command in commands]
        first = await self._write(
            lambda db: record_update_job(db, record, values, forget_before, self._seqs)
        )
        if first is None:
            return False
        for offset, command in enumerate(commands):
            command.seq = first + offset
        return True

    async def failed_updates(self, limit: int) -> list[FailedUpdate]:
        return dead_letters(await self._read(NEWEST_FAILED, (limit,)))

    async def held_lanes(self, waiting_since: float) -> int:
        found = await self._read(HELD_LANES, (waiting_since,))
        count: int = found[0][0]
        return count

    async def open_thread(self, inlet: str, chat: str, key: str) -> Thread | None:
        found: Thread | None = await self._database().call(
            lambda db: thread_jobs.select_open(db, inlet, chat, key)
        )
        return found

    async def thread(self, thread_id: str) -> Thread | None:
        found: Thread | None = await self._database().call(
            lambda db: thread_jobs.select_by_id(db, thread_id)
        )
        return found

    async def save_thread(
        self, thread: Thread, expected: int, commands: Sequence[Command]
    ) -> list[Command] | None:
        state = thread_jobs.encode_thread_state(thread)  # here, not in the database thread

        # Rows only for the commands stored: a showThread is not while the thread's last
        # one waits (most notifications), and it is a few bytes to encode when it is.
        def insert(db: sqlite3.Connection, stored: Sequence[Command]) -> None:
            commands_jobs.insert_each(db, stored, self._seqs)

        return await self._write(
            lambda db: thread_jobs.save(db, thread, expected, commands, insert, state)
        )

    async def thread_shown(
        self, thread_id: str, version: int, message_id: int | None, digest: str
    ) -> None:
        await self._write(
            lambda db: thread_jobs.mark_shown(db, thread_id, version, message_id, digest)
        )

    async def thread_message_gone(self, thread_id: str, message_id: int) -> None:
        await self._write(lambda db: thread_jobs.mark_gone(db, thread_id, message_id))

    # --- the database thread ----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """In the database thread: open, configure, migrate; note the highest seq."""
        db, last = connect(self.path, self.synchronous, self.read_only, self.storage)
        self._seqs.last = last
        return db

    def _transaction(self, db: sqlite3.Connection, batch: list[Work]) -> list[Any]:
        """In the database thread: one transaction for the batch (see sqlite_commit.py)."""
        self.storage.check_identity(db)
        return transaction(db, batch, self._seqs)

    def _database(self) -> DatabaseThread:
        if self._thread is None:
            raise RuntimeError("the queue is not open")
        return self._thread

    async def _read(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        found: list[sqlite3.Row] = await self._guard(
            self._database().call(lambda db: db.execute(sql, params).fetchall())
        )
        return found

    async def _write(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `job` in the next transaction; return once that is committed (and synced)."""
        result: _T = await self._guard(self._database().write(Work(job=job)))
        return result

    async def _guard(self, answer: Awaitable[_T]) -> _T:
        """The answer of the database thread; a storage failure is noted in `health`."""
        try:
            return await answer
        except StorageError as exc:
            self.health.trouble(exc.reason)
            raise
