"""A queue in PostgreSQL: what several replicas of the gateway share (issue 11).

Every method is one statement or one transaction on a pooled asyncpg connection, committed
before it returns (PostgreSQL's default `synchronous_commit = on`: the commit is on the
server's disk, and on its synchronous standbys if it has any). The semantics are the SQLite
queue's; what differs is that several processes may use the database at once:

- a lane's claim takes a transaction-level advisory lock on the lane, so two claimers never
  both see it free, and a lane with a command `sending` gives none (one in flight per lane,
  even when a command accepted concurrently gets a lower `seq` but commits later);
- `seq` comes from a sequence, so it orders the commands of one `put`, and those of puts that
  did not overlap in time.

The database being unreachable (refused, reset, timed out, shutting down) is raised as
`StorageError`, as SQLite's storage faults are: the API answers 503 `storage_unavailable`, the
worker retries in a second, and the pool reconnects once the server is back.

This class holds the pool, the group commit of puts and the notifications to replicas; the
statements live beside it, one module per concept: pg_commands.py (a command's lifecycle),
pg_updates.py (replay cache, webhook updates, dead letters), pg_threads.py (inlets' threads),
pg_shared.py (rate limits, migrated chats), pg_connect.py (the pool's settings, outages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import asyncpg

from gateway import constants as c
from gateway.commands import Command, Status
from gateway.errors import StorageError
from gateway.queue import pg_commands, pg_connect, pg_recent, pg_shared, pg_threads, pg_updates
from gateway.queue.base import FailedUpdate, Queue, UpdateRecord
from gateway.queue.pg_connect import UNAVAILABLE, UNREACHABLE
from gateway.queue.pg_rows import Conn, insert, payloads
from gateway.queue.pg_schema import LEADERSHIP_TABLE
from gateway.queue.threads import Thread

__all__ = ["UNAVAILABLE", "UNREACHABLE", "PostgresQueue"]

logger = logging.getLogger(__name__)


class PostgresQueue(Queue):
    """Commands in a PostgreSQL database, shared by every replica that points at it."""

    def __init__(self, dsn: str, *, pool_size: int = c.PG_POOL_SIZE) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        #: When this replica last deleted expired signatures.
        self._signatures_swept = 0.0
        #: What is wrong with the database (None: nothing known); cleared by `check`.
        self._problem: str | None = None
        #: Puts waiting for the next group INSERT, and the task inserting them.
        self._pending: list[tuple[Sequence[Command], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: Replicas (gateway.cluster): tell the others of new work and final commands
        #: (NOTIFY), and claim only as the leader of `epoch` (None: not leading).
        self.clustered = False
        self.epoch: int | None = None

    @property
    def where(self) -> str:
        """The database for messages: host, port and name, never the user or password."""
        return pg_connect.where(self._dsn)

    async def open(self) -> None:
        """Connect, and migrate the schema (under an advisory lock) before anything else."""
        if self._pool is None:
            self._pool = await pg_connect.open_pool(self._dsn, self._pool_size)

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # --- commands ---------------------------------------------------------------------------

    async def put(self, commands: Sequence[Command]) -> None:
        if not commands:
            return
        # Group commit: the puts that arrive while a batch is being inserted go together in
        # the next INSERT (one round trip and one commit for all of them).
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((commands, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._put_batch(batch)
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0][1], exc)
                    continue
                # One bad put must not fail the others: each on its own.
                for commands, done in batch:
                    try:
                        await self._put_batch([(commands, done)])
                    except Exception as one:
                        _settle(done, one)

    async def _put_batch(self, batch: list[tuple[Sequence[Command], asyncio.Future[None]]]) -> None:
        commands = [command for part, _ in batch for command in part]
        async with self._connection() as conn:
            seqs = await insert(conn, commands)
            await self._notify(conn, c.PG_WORK_CHANNEL, {command.lane for command in commands})
        for command in commands:
            command.seq = seqs[command.id]
        for _, done in batch:
            _settle(done, None)

    async def get(self, command_id: str) -> Command | None:
        async with self._connection() as conn:
            return await pg_commands.get(conn, command_id)

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of these command ids are stored already (`gateway migrate-queue`)."""
        async with self._connection() as conn:
            return await pg_commands.existing(conn, ids)

    async def find_idempotent(self, key: str, since: float) -> Command | None:
        async with self._connection() as conn:
            return await pg_commands.find_idempotent(conn, key, since)

    async def lanes(self) -> dict[str, float]:
        async with self._connection() as conn:
            return await pg_commands.lanes(conn)

    async def head_due(self, chat: str) -> float | None:
        async with self._connection() as conn:
            return await pg_commands.head_due(conn, chat)

    async def claim(self, chat: str, now: float) -> Command | None:
        async with self._connection() as conn, conn.transaction():
            if self.clustered and not await self._leading(conn):
                return None
            return await pg_commands.claim(conn, chat, now)

    async def _leading(self, conn: Conn) -> bool:
        """Whether this replica's epoch is the current one. A new leader's takeover waits
        for this share lock, so a claim is either before the takeover (and recovered by the
        new leader) or refused."""
        epoch = await conn.fetchval(f"SELECT epoch FROM {LEADERSHIP_TABLE} WHERE id = 1 FOR SHARE")
        if self.epoch is not None and epoch == self.epoch:
            return True
        logger.warning("claim refused: leadership epoch %s, ours %s", epoch, self.epoch)
        return False

    async def complete(
        self, command_id: str, result: Any, now: float, status: Status = Status.SENT
    ) -> None:
        async with self._connection() as conn, conn.transaction():
            await pg_commands.complete(conn, command_id, result, now, status)
            if status.final:
                await self._notify(conn, c.PG_FINAL_CHANNEL, [command_id])

    async def fail(self, command_id: str, error: dict[str, Any], now: float) -> None:
        async with self._connection() as conn, conn.transaction():
            await self._notify(conn, c.PG_FINAL_CHANNEL, [command_id])
            await pg_commands.fail(conn, command_id, error, now)

    async def retry(
        self,
        command_id: str,
        not_before: float,
        now: float,
        error: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        refund: bool = False,
    ) -> None:
        async with self._connection() as conn:
            await pg_commands.retry(conn, command_id, not_before, now, error, params, refund)

    async def save_part(self, command_id: str, part: int, result: Any, now: float) -> None:
        async with self._connection() as conn:
            await pg_commands.save_part(conn, command_id, part, result, now)

    async def recover(self) -> int:
        async with self._connection() as conn:
            return await pg_commands.recover(conn)

    async def prune(self, before: float, limit: int) -> int:
        async with self._connection() as conn, conn.transaction():
            return await pg_commands.prune(conn, before, limit)

    async def depth(self) -> int:
        async with self._connection() as conn:
            return await pg_commands.depth(conn)

    async def held_lanes(self, waiting_since: float) -> int:
        async with self._connection() as conn:
            return await pg_commands.held_lanes(conn, waiting_since)

    # --- questions --------------------------------------------------------------------------

    async def awaiting(self) -> list[Command]:
        async with self._connection() as conn:
            return await pg_commands.awaiting(conn)

    async def settle_question(
        self, command_id: str, status: Status, reply: dict[str, Any], now: float
    ) -> bool:
        async with self._connection() as conn, conn.transaction():
            if not await pg_commands.settle_question(conn, command_id, status, reply, now):
                return False
            await self._notify(conn, c.PG_FINAL_CHANNEL, [command_id])
            return True

    # --- replay cache, webhook updates --------------------------------------------------------

    async def remember_signature(
        self, client: str, signature: str, expires: float, now: float
    ) -> bool:
        async with self._connection() as conn:
            if now - self._signatures_swept >= 1.0:
                self._signatures_swept = now
                await pg_updates.sweep_signatures(conn, now)
            return await pg_updates.remember_signature(conn, client, signature, expires, now)

    async def update_seen(self, bot_id: int, update_id: int, digest: str) -> bool:
        async with self._connection() as conn:
            return await pg_updates.update_seen(conn, bot_id, update_id, digest)

    async def record_update(
        self, record: UpdateRecord, commands: Sequence[Command], forget_before: float
    ) -> bool:
        async with self._connection() as conn, conn.transaction():
            if not await pg_updates.record_update(conn, record, forget_before):
                return False
            seqs = await insert(conn, commands) if commands else {}
            await self._notify(conn, c.PG_WORK_CHANNEL, {command.lane for command in commands})
        for command in commands:
            command.seq = seqs[command.id]
        return True

    async def failed_updates(self, limit: int) -> list[FailedUpdate]:
        async with self._connection() as conn:
            return await pg_updates.failed_updates(conn, limit)

    # --- inlets' threads -------------------------------------------------------------------

    async def open_thread(self, inlet: str, chat: str, key: str) -> Thread | None:
        async with self._connection() as conn:
            return await pg_threads.open_thread(conn, inlet, chat, key)

    async def thread(self, thread_id: str) -> Thread | None:
        async with self._connection() as conn:
            return await pg_threads.thread(conn, thread_id)

    async def save_thread(
        self, thread: Thread, expected: int, commands: Sequence[Command]
    ) -> list[Command] | None:
        try:
            async with self._connection() as conn, conn.transaction():
                stored = await pg_threads.save(conn, thread, expected, commands)
                if stored:
                    await self._notify(conn, c.PG_WORK_CHANNEL, {cmd.lane for cmd in stored})
                return stored
        except asyncpg.UniqueViolationError:  # another replica opened the same thread
            return None

    async def thread_shown(
        self, thread_id: str, version: int, message_id: int | None, digest: str
    ) -> None:
        async with self._connection() as conn:
            await pg_threads.shown(conn, thread_id, version, message_id, digest)

    async def thread_message_gone(self, thread_id: str, message_id: int) -> None:
        async with self._connection() as conn:
            await pg_threads.gone(conn, thread_id, message_id)

    # --- state shared by replicas -------------------------------------------------------------

    async def take_token(self, client: str, rate: float, now: float) -> float:
        """The REST API's rate limit, shared by every replica (gateway/queue/pg_shared.py)."""
        async with self._connection() as conn:
            return await pg_shared.take_token(conn, client, rate, now)

    async def migrated_chats(self) -> dict[str, int]:
        async with self._connection() as conn:
            return await pg_shared.migrated_chats(conn)

    async def save_migrated_chat(self, lane: str, chat_id: int) -> None:
        async with self._connection() as conn:
            await pg_shared.save_migrated_chat(conn, lane, chat_id)

    async def recent_sends(self, since: float) -> list[pg_recent.RecentSend]:
        """What any replica sent to Telegram after `since` (Unix time), oldest first."""
        async with self._connection() as conn:
            return await pg_recent.recent_sends(conn, since)

    # --- the connection -----------------------------------------------------------------------

    async def _notify(self, conn: Conn, channel: str, items: Iterable[str]) -> None:
        """NOTIFY the other replicas (comma-separated items; sent when the data commits)."""
        if not self.clustered:
            return
        for payload in payloads(items):
            await conn.execute("SELECT pg_notify($1, $2)", channel, payload)

    def connection(self) -> contextlib.AbstractAsyncContextManager[Conn]:
        """A pooled connection, for stores sharing the database (gateway/media/store_pg.py);
        the database being unreachable becomes `StorageError`, as for the queue's own calls."""
        return self._connection()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        """A pooled connection; the database being unreachable becomes `StorageError`."""
        if self._pool is None:
            raise RuntimeError("the queue is not open")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        except asyncpg.InterfaceError as exc:
            if "closed" not in str(exc):
                raise
            raise self._unavailable(exc) from exc
        except asyncpg.exceptions.InternalClientError as exc:
            # A connection the server dropped in the middle of an operation is left in a state
            # asyncpg refuses to use ("another operation is in progress"), seen while
            # PostgreSQL shuts down; the pool discards it. An outage, not a bug: 503.
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> StorageError:
        """Note the trouble (logged once, when it starts) and the error to raise."""
        if self._problem is None:
            logger.error("the queue database %s is unavailable: %r", self.where, exc)
        self._problem = UNREACHABLE
        return StorageError(f"the queue database {self.where} is unavailable", UNREACHABLE)

    def problem(self) -> str | None:
        return self._problem

    async def check(self) -> str | None:
        """A round trip to the database: the only way a problem clears."""
        try:
            async with self._connection() as conn:
                await conn.fetchval("SELECT 1")
        except StorageError:
            return self._problem
        if self._problem is not None:
            logger.warning("the queue database %s is reachable again", self.where)
        self._problem = None
        return None


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():  # its caller was cancelled; the put stands all the same
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)
