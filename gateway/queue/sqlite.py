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

import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_args
from urllib.parse import quote

from gateway import constants as c
from gateway.commands import Command, Status
from gateway.errors import QueueSyncError, StartupError, StorageError
from gateway.queue import files
from gateway.queue import threads as thread_jobs
from gateway.queue.base import Completed, FailedUpdate, Queue, UpdateRecord
from gateway.queue.dbthread import DatabaseThread
from gateway.queue.deadletters import NEWEST_FAILED, dead_letters
from gateway.queue.lock import InstanceLock
from gateway.queue.schema import (
    COLUMNS,
    COMMANDS_TABLE,
    FAILED_UPDATES_TABLE,
    INSERT_CHUNK,
    INSERT_WIDTH,
    PARTS_TABLE,
    SIGNATURES_TABLE,
    UPDATES_TABLE,
    insert_sql,
    migrate,
)
from gateway.queue.storage import StorageWatch
from gateway.queue.threads import Thread

logger = logging.getLogger(__name__)

#: Bound of SQLite's page cache, in KiB (the queue's memory does not grow with its depth).
CACHE_KIB: Final = 8000

Synchronous = Literal["FULL", "NORMAL", "EXTRA"]


_NOT_FINAL = "status IN ('queued', 'sending')"
_SELECT = f"SELECT {COLUMNS} FROM {COMMANDS_TABLE}"
_HEAD = f"SELECT id FROM {COMMANDS_TABLE} WHERE lane = :lane AND {_NOT_FINAL} ORDER BY seq LIMIT 1"
_CLAIM = f"""UPDATE {COMMANDS_TABLE}
    SET status = 'sending', attempts = attempts + 1, updated_at = :now
    WHERE id = ({_HEAD}) AND status = 'queued' AND not_before <= :now
    RETURNING {COLUMNS}"""
# SQLite takes the bare columns of a min() aggregate from the row holding the minimum.
_HEAD_DUE = f"""SELECT status, not_before FROM {COMMANDS_TABLE}
    WHERE lane = ? AND {_NOT_FINAL} ORDER BY seq LIMIT 1"""
_LANE_HEADS = f"""SELECT lane, min(seq), status, not_before FROM {COMMANDS_TABLE}
    WHERE {_NOT_FINAL} GROUP BY lane"""
_PARTS = f"SELECT result FROM {PARTS_TABLE} WHERE command_id = ? ORDER BY part"
# Only a command that exists gets parts (rowcount 0 otherwise: KeyError).
_SAVE_PART = f"""INSERT OR REPLACE INTO {PARTS_TABLE} (command_id, part, result, saved_at)
    SELECT :id, :part, :result, :now WHERE EXISTS (SELECT 1 FROM {COMMANDS_TABLE} WHERE id = :id)"""


# Oldest first along the created_at index: a command accepted at or after `before` was not
# updated before it. Keyed commands stay until their idempotency window has passed.
_PRUNE = f"""DELETE FROM {COMMANDS_TABLE} WHERE seq IN (
    SELECT seq FROM {COMMANDS_TABLE}
    WHERE created_at < :before AND updated_at < :before
        AND status IN ('sent', 'failed', 'answered', 'expired')
        AND (idempotency_key IS NULL OR created_at < :keyed_before)
    ORDER BY created_at LIMIT :limit)
    RETURNING id"""

_SEEN = f"SELECT digest FROM {UPDATES_TABLE} WHERE bot_id = ? AND update_id = ?"

_T = TypeVar("_T")
#: A write job: runs in the database thread, inside the batch's transaction.
_Job = Callable[[sqlite3.Connection], Any]


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
        self._seq = 0
        #: When the database thread last deleted expired signatures.
        self._signatures_swept = 0.0
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
        rows = [_row(command) for command in commands]
        first: int = await self._guard(self._database().write(_Work(rows=rows)))
        for offset, command in enumerate(commands):
            command.seq = first + offset

    async def get(self, command_id: str) -> Command | None:
        def get(db: sqlite3.Connection) -> Command | None:
            rows = db.execute(f"{_SELECT} WHERE id = ?", (command_id,)).fetchall()
            return _with_parts(db, command_from_row(rows[0])) if rows else None

        command: Command | None = await self._database().call(get)
        return command

    async def find_idempotent(self, key: str, since: float) -> Command | None:
        rows = await self._read(
            f"{_SELECT} WHERE idempotency_key = ? AND created_at >= ? ORDER BY seq LIMIT 1",
            (key, since),
        )
        return command_from_row(rows[0]) if rows else None

    async def lanes(self) -> dict[str, float]:
        rows = await self._read(_LANE_HEADS, ())
        return {row["lane"]: row["not_before"] for row in rows if row["status"] == Status.QUEUED}

    async def head_due(self, chat: str) -> float | None:
        rows = await self._read(_HEAD_DUE, (chat,))
        if not rows or rows[0]["status"] != Status.QUEUED:
            return None
        due: float = rows[0]["not_before"]
        return due

    async def claim(self, chat: str, now: float) -> Command | None:
        def claim(db: sqlite3.Connection) -> Command | None:
            rows = db.execute(_CLAIM, {"lane": chat, "now": now}).fetchall()
            return _with_parts(db, command_from_row(rows[0])) if rows else None

        try:
            return await self._write(claim)
        except QueueSyncError as exc:
            # Committed, only not confirmed on disk: go on with it, or it would sit in
            # `sending` with nobody sending it. Lost in a crash, it is just queued again.
            claimed: Command | None = exc.result
            return claimed

    async def complete(
        self, command_id: str, result: Any, now: float, status: Status = Status.SENT
    ) -> None:
        if not await self._write(lambda db: _complete_job(db, command_id, result, now, status)):
            raise KeyError(command_id)

    async def complete_and_peek(
        self, command_id: str, result: Any, now: float, status: Status, lane: str
    ) -> Completed:
        # One transaction records the delivery and reads the lane's next head; the answer
        # comes at the commit, the sync follows (see `Queue.complete_and_peek`).
        def complete(db: sqlite3.Connection) -> tuple[bool, float | None]:
            found = _complete_job(db, command_id, result, now, status)
            rows = db.execute(_HEAD_DUE, (lane,)).fetchall()
            due = rows[0]["not_before"] if rows and rows[0]["status"] == Status.QUEUED else None
            return found, due

        committed, durable = self._database().write_committed(_Work(job=complete))
        found, due = await self._guard(committed)
        if not found:
            raise KeyError(command_id)
        return Completed(due, durable)

    async def awaiting(self) -> list[Command]:
        # A literal, not a parameter: that is what lets SQLite use the partial index.
        rows = await self._read(f"{_SELECT} WHERE status = 'awaiting_reply'", ())
        return [command_from_row(row) for row in rows]

    async def settle_question(
        self, command_id: str, status: Status, reply: dict[str, Any], now: float
    ) -> bool:
        def settle(db: sqlite3.Connection) -> bool:
            rows = db.execute(
                f"SELECT status, meta FROM {COMMANDS_TABLE} WHERE id = ?", (command_id,)
            ).fetchall()
            if not rows:
                raise KeyError(command_id)
            if rows[0]["status"] != Status.AWAITING_REPLY.value:
                return False
            meta = {**(_load(rows[0]["meta"]) or {}), "reply": reply}
            db.execute(
                f"UPDATE {COMMANDS_TABLE} SET status = ?, meta = ?, updated_at = ? WHERE id = ?",
                (status.value, _dump(meta), now, command_id),
            )
            return True

        return await self._write(settle)

    async def fail(self, command_id: str, error: dict[str, Any], now: float) -> None:
        await self._update(
            command_id,
            f"UPDATE {COMMANDS_TABLE} SET status = 'failed', error = ?, updated_at = ? "
            "WHERE id = ?",
            (_dump(error), now, command_id),
        )

    async def retry(
        self,
        command_id: str,
        not_before: float,
        now: float,
        error: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        refund: bool = False,
    ) -> None:
        # The command keeps its seq, so it stays the head of its lane.
        await self._update(
            command_id,
            f"""UPDATE {COMMANDS_TABLE}
                SET status = 'queued', not_before = ?, updated_at = ?, error = ?,
                    params = ifnull(?, params), attempts = attempts - ?
                WHERE id = ? AND {_NOT_FINAL}""",
            (
                not_before,
                now,
                _dump(error),
                _dump(params),
                int(refund),
                command_id,
            ),
        )

    async def save_part(self, command_id: str, part: int, result: Any, now: float) -> None:
        # Committed before the next part goes out, so a restart does not send a part twice.
        # A row of its own: updating the command would rewrite its whole text every time.
        def save(db: sqlite3.Connection) -> bool:
            values = {"id": command_id, "part": part, "result": _dump(result), "now": now}
            return bool(db.execute(_SAVE_PART, values).rowcount)

        if not await self._write(save):
            raise KeyError(command_id)

    async def remember_signature(
        self, client: str, signature: str, expires: float, now: float
    ) -> bool:
        def remember(db: sqlite3.Connection) -> bool:
            if now - self._signatures_swept >= 1.0:
                db.execute(f"DELETE FROM {SIGNATURES_TABLE} WHERE expires < ?", (now,))
                self._signatures_swept = now
            # A row that expired but was not swept yet gives way to the new one.
            inserted = db.execute(
                f"""INSERT INTO {SIGNATURES_TABLE} (client, signature, expires) VALUES (?, ?, ?)
                    ON CONFLICT (client, signature) DO UPDATE SET expires = excluded.expires
                    WHERE {SIGNATURES_TABLE}.expires < ?""",
                (client, signature, expires, now),
            ).rowcount
            return bool(inserted)

        return await self._write(remember)

    async def recover(self) -> int:
        def recover(db: sqlite3.Connection) -> int:
            sql = f"UPDATE {COMMANDS_TABLE} SET status = 'queued' WHERE status = 'sending'"
            return db.execute(sql).rowcount

        return await self._write(recover)

    async def prune(self, before: float, limit: int) -> int:
        keyed_before = min(before, time.time() - c.IDEMPOTENCY_WINDOW_SECONDS)
        values = {"before": before, "keyed_before": keyed_before, "limit": limit}

        def prune(db: sqlite3.Connection) -> int:
            ids = db.execute(_PRUNE, values).fetchall()
            if ids:
                db.executemany(f"DELETE FROM {PARTS_TABLE} WHERE command_id = ?", ids)
                files.give_back_free_pages(db, c.VACUUM_PAGES)
            return len(ids)

        return await self._write(prune)

    def storage_bytes(self) -> int | None:
        return files.size_on_disk(self.path)

    async def depth(self) -> int:
        rows = await self._read(f"SELECT count(*) FROM {COMMANDS_TABLE} WHERE {_NOT_FINAL}", ())
        count: int = rows[0][0]
        return count

    async def update_seen(self, bot_id: int, update_id: int, digest: str) -> bool:
        rows = await self._read(_SEEN, (bot_id, update_id))
        return bool(rows) and rows[0]["digest"] == digest

    async def record_update(
        self, record: UpdateRecord, commands: Sequence[Command], forget_before: float
    ) -> bool:
        rows = [_row(command) for command in commands]

        def store(db: sqlite3.Connection) -> int | None:
            seen = db.execute(_SEEN, (record.bot_id, record.update_id)).fetchone()
            if seen is not None and seen["digest"] == record.digest:
                return None
            db.execute(f"DELETE FROM {UPDATES_TABLE} WHERE received_at < ?", (forget_before,))
            db.execute(
                f"INSERT OR REPLACE INTO {UPDATES_TABLE} VALUES (?, ?, ?, ?)",
                (record.bot_id, record.update_id, record.digest, record.received_at),
            )
            failure = record.failure
            if failure is not None:
                db.execute(
                    f"""INSERT INTO {FAILED_UPDATES_TABLE}
                        (bot_id, update_id, received_at, error, handled, body)
                        VALUES (?, ?, ?, ?, ?, ?)""",
                    (
                        failure.bot_id,
                        failure.update_id,
                        failure.received_at,
                        failure.error,
                        failure.handled,
                        failure.body,
                    ),
                )
                db.execute(
                    f"""DELETE FROM {FAILED_UPDATES_TABLE} WHERE seq <=
                        (SELECT max(seq) FROM {FAILED_UPDATES_TABLE}) - ?""",
                    (c.FAILED_UPDATES_KEPT,),
                )
            first = self._seq + 1
            self._seq += len(rows)
            values = [v for n, row in enumerate(rows) for v in (row[0], first + n, *row[1:])]
            for start in range(0, len(values), INSERT_CHUNK * INSERT_WIDTH):
                chunk = values[start : start + INSERT_CHUNK * INSERT_WIDTH]
                db.execute(insert_sql(len(chunk) // INSERT_WIDTH), chunk)
            return first

        first = await self._write(store)
        if first is None:
            return False
        for offset, command in enumerate(commands):
            command.seq = first + offset
        return True

    async def failed_updates(self, limit: int) -> list[FailedUpdate]:
        return dead_letters(await self._read(NEWEST_FAILED, (limit,)))

    async def held_lanes(self, waiting_since: float) -> int:
        heads = f"""SELECT min(seq), created_at, error FROM {COMMANDS_TABLE}
            WHERE {_NOT_FINAL} GROUP BY lane"""
        rows = await self._read(
            f"SELECT count(*) FROM ({heads}) WHERE created_at < ? OR error IS NOT NULL",
            (waiting_since,),
        )
        count: int = rows[0][0]
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

        def insert(db: sqlite3.Connection, stored: Sequence[Command]) -> None:
            if not stored:
                return
            values: list[Any] = []
            # Rows only for the commands stored: a showThread is not while the thread's last
            # one waits (most notifications), and it is a few bytes to encode when it is.
            for command in stored:  # one statement, as for a batch of new commands
                self._seq += 1
                command.seq = self._seq
                row = _row(command)
                values += (row[0], command.seq, *row[1:])
            db.execute(insert_sql(len(stored)), values)

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

    # --- the connection ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """In the database thread: open, configure, migrate; note the highest seq."""
        timeout = c.QUEUE_BUSY_TIMEOUT_SECONDS
        if self.read_only:
            uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
            db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=timeout)
        else:
            files.make_private(self.path)
            # isolation_level=None: transactions are ours (BEGIN IMMEDIATE ... COMMIT).
            db = sqlite3.connect(self.path, isolation_level=None, timeout=timeout)
        try:
            db.row_factory = sqlite3.Row
            if not self.read_only:  # a look changes nothing
                files.use_incremental_vacuum(db, self.path)
            self._configure(db)
            migrate(db, self.path)
            row = db.execute(f"SELECT ifnull(max(seq), 0) FROM {COMMANDS_TABLE}").fetchone()
            self.storage.opened(db)
        except BaseException:
            db.close()
            raise
        self._seq = int(row[0])
        return db

    def _configure(self, db: sqlite3.Connection) -> None:
        row = db.execute("PRAGMA journal_mode = WAL").fetchone()
        mode = row[0] if row else None
        if mode != "wal":
            raise StartupError(f"the queue database {self.path} cannot use WAL (mode {mode})")
        # FULL is NORMAL plus a sync of the log after each commit, done by the sync thread.
        level = "NORMAL" if self.synchronous == "FULL" else self.synchronous
        db.execute(f"PRAGMA synchronous = {level}")
        db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        # A checkpointed log shrinks back to this size, so the reserve covers the next one.
        db.execute(f"PRAGMA journal_size_limit = {c.QUEUE_RESERVE_BYTES}")

    def _database(self) -> DatabaseThread:
        if self._thread is None:
            raise RuntimeError("the queue is not open")
        return self._thread

    async def _read(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        rows: list[sqlite3.Row] = await self._guard(
            self._database().call(lambda db: db.execute(sql, params).fetchall())
        )
        return rows

    async def _guard(self, answer: Awaitable[_T]) -> _T:
        """The answer of the database thread; a storage failure is noted in `health`."""
        try:
            return await answer
        except StorageError as exc:
            self.health.trouble(exc.reason)
            raise

    async def _update(
        self, command_id: str, sql: str, params: Sequence[Any], then: str | None = None
    ) -> None:
        """Run one UPDATE of a command (and `then`, a statement taking its id, if it changed
        it); KeyError when there is no such command."""

        def update(db: sqlite3.Connection) -> bool:
            if db.execute(sql, params).rowcount:
                if then is not None:
                    db.execute(then, (command_id,))
                return True
            found = db.execute(f"SELECT 1 FROM {COMMANDS_TABLE} WHERE id = ?", (command_id,))
            return found.fetchone() is not None

        if not await self._write(update):
            raise KeyError(command_id)

    # --- group commit -----------------------------------------------------------------------

    async def _write(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `job` in the next transaction; return once that is committed (and synced)."""
        result: _T = await self._guard(self._database().write(_Work(job=job)))
        return result

    def _transaction(self, db: sqlite3.Connection, batch: list[_Work]) -> list[Any]:
        """In the database thread, one transaction for the whole batch: all the new commands in
        one INSERT, then the other writes. They were all submitted concurrently, so their order
        among themselves is free; each put's commands keep theirs.

        A batch of new commands only (the common case under load) is one INSERT statement,
        which SQLite commits on its own: one call into SQLite, so the thread gives up and
        takes back Python's GIL once per batch, not once per statement.
        """
        self.storage.check_identity(db)
        seq = self._seq
        results: list[Any] = [None] * len(batch)
        values: list[Any] = []
        jobs = False
        for index, work in enumerate(batch):
            if work.job is not None:
                jobs = True
                continue
            results[index] = seq + 1
            for row in work.rows:
                seq += 1
                values += (row[0], seq, *row[1:])
        inserts = [
            values[start : start + INSERT_CHUNK * INSERT_WIDTH]
            for start in range(0, len(values), INSERT_CHUNK * INSERT_WIDTH)
        ]
        # Allotted before the jobs run, so a job that inserts commands (record_update) numbers
        # them after this batch's; a rolled-back batch leaves a gap, which is harmless.
        self._seq = seq
        if len(inserts) == 1 and not jobs:
            db.execute(insert_sql(len(values) // INSERT_WIDTH), values)
        else:
            db.execute("BEGIN IMMEDIATE")
            try:
                for chunk in inserts:
                    db.execute(insert_sql(len(chunk) // INSERT_WIDTH), chunk)
                for index, work in enumerate(batch):
                    if work.job is not None:
                        results[index] = work.job(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return results


@dataclass(eq=False)
class _Work:
    """A write: new command rows to insert, or a job to run in the transaction."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    job: _Job | None = None


def _complete_job(
    db: sqlite3.Connection, command_id: str, result: Any, now: float, status: Status
) -> bool:
    """Record a delivery in the database thread; False when there is no such command."""
    sql = f"UPDATE {COMMANDS_TABLE} SET status = ?, result = ?, updated_at = ? WHERE id = ?"
    if db.execute(sql, (status.value, _dump(result), now, command_id)).rowcount:
        # A split message's result (a list) takes the place of the parts saved on the way.
        if isinstance(result, list):
            db.execute(f"DELETE FROM {PARTS_TABLE} WHERE command_id = ?", (command_id,))
        return True
    found = db.execute(f"SELECT 1 FROM {COMMANDS_TABLE} WHERE id = ?", (command_id,))
    return found.fetchone() is not None


def _dump(value: Any) -> str | None:
    if value is None:  # most results and errors: skip the encoder
        return None
    # ASCII escapes keep lone surrogates (valid in JSON input) storable as UTF-8 text.
    return json.dumps(value, separators=(",", ":"))


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _row(command: Command) -> tuple[Any, ...]:
    """The INSERT values of a command, without its seq (the writer allots that)."""
    return (
        command.id,
        command.lane,
        command.method,
        _dump(command.params),
        command.status.value,
        command.attempts,
        command.created_at,
        command.updated_at,
        command.not_before,
        _dump(command.result),
        _dump(command.error),
        command.idempotency_key,
        command.client,
        _dump(command.meta) if command.meta else None,
    )


def _with_parts(db: sqlite3.Connection, command: Command) -> Command:
    """A split message not complete yet: its result is the list of the parts saved so far."""
    if command.result is None and command.method == "sendMessage":
        parts = db.execute(_PARTS, (command.id,)).fetchall()
        if parts:
            command.result = [_load(row[0]) for row in parts]
    return command


def command_from_row(row: Any) -> Command:
    """A `Command` from a commands row of either backend (sqlite3.Row or asyncpg.Record)."""
    command = Command(
        method=row["method"],
        params=_load(row["params"]),
        id=row["id"],
        status=Status(row["status"]),
        attempts=row["attempts"],
        created_at=row["created_at"],
        not_before=row["not_before"],
        result=_load(row["result"]),
        error=_load(row["error"]),
        idempotency_key=row["idempotency_key"],
        seq=row["seq"],
        client=row["client"],
        meta=_load(row["meta"]) or {},
    )
    # Assigned after construction: __post_init__ would derive them when they are falsy.
    command.updated_at, command.lane = row["updated_at"], row["lane"]
    return command
