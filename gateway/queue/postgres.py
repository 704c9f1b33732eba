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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg

from gateway import constants as c
from gateway.commands import Command, Status
from gateway.errors import StartupError, StorageError
from gateway.queue import pg_recent, pg_shared, pg_threads
from gateway.queue.base import FailedUpdate, Queue, UpdateRecord
from gateway.queue.pg_rows import Conn, count, insert, payloads, with_parts
from gateway.queue.pg_schema import LEADERSHIP_TABLE, migrate
from gateway.queue.schema import (
    COLUMNS,
    COMMANDS_TABLE,
    FAILED_UPDATES_TABLE,
    PARTS_TABLE,
    SIGNATURES_TABLE,
    UPDATES_TABLE,
)
from gateway.queue.sqlite import _dump, _load, command_from_row
from gateway.queue.threads import Thread

logger = logging.getLogger(__name__)


#: What "the database is not there" looks like through asyncpg.
UNAVAILABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # disk full, too many connections
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, mid-failover
)

_NOT_FINAL = "status IN ('queued', 'sending')"
_SELECT = f"SELECT {COLUMNS} FROM {COMMANDS_TABLE}"
# A lane's head: a command `sending` first (the lane is busy), else its oldest queued one.
_HEADS = f"""SELECT DISTINCT ON (lane) lane, status, not_before FROM {COMMANDS_TABLE}
    WHERE {_NOT_FINAL} ORDER BY lane, status = 'sending' DESC, seq"""
_HEAD = f"""SELECT id, status, not_before FROM {COMMANDS_TABLE} WHERE lane = $1 AND {_NOT_FINAL}
    ORDER BY status = 'sending' DESC, seq LIMIT 1"""
_CLAIM = f"""UPDATE {COMMANDS_TABLE}
    SET status = 'sending', attempts = attempts + 1, updated_at = $2
    WHERE id = $1 AND status = 'queued' RETURNING {COLUMNS}"""
_SEEN = f"SELECT digest FROM {UPDATES_TABLE} WHERE bot_id = $1 AND update_id = $2"


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
        parts = urlsplit(self._dsn)
        return f"postgresql://{parts.hostname or ''}:{parts.port or 5432}{parts.path}"

    async def open(self) -> None:
        """Connect, and migrate the schema (under an advisory lock) before anything else."""
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                timeout=c.PG_CONNECT_TIMEOUT,
                command_timeout=c.PG_COMMAND_TIMEOUT,
                server_settings={
                    "idle_in_transaction_session_timeout": str(
                        c.PG_IDLE_IN_TRANSACTION_SECONDS * 1000
                    ),
                    # The server notices a replica that vanished mid-statement, too.
                    "tcp_keepalives_idle": str(c.LEADER_KEEPALIVE_IDLE),
                    "tcp_keepalives_interval": str(c.LEADER_KEEPALIVE_INTERVAL),
                    "tcp_keepalives_count": str(c.LEADER_KEEPALIVE_COUNT),
                },
            )
        except (*UNAVAILABLE, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise StartupError(f"cannot open the queue database {self.where}: {exc}") from None
        try:
            async with pool.acquire() as conn:
                await migrate(conn, self.where)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

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
            row = await conn.fetchrow(f"{_SELECT} WHERE id = $1", command_id)
            return await with_parts(conn, command_from_row(row)) if row else None

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of these command ids are stored already (`gateway migrate-queue`)."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT id FROM {COMMANDS_TABLE} WHERE id = ANY($1::text[])", list(ids)
            )
        return {row["id"] for row in rows}

    async def find_idempotent(self, key: str, since: float) -> Command | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"{_SELECT} WHERE idempotency_key = $1 AND created_at >= $2 ORDER BY seq LIMIT 1",
                key,
                since,
            )
        return command_from_row(row) if row else None

    async def lanes(self) -> dict[str, float]:
        async with self._connection() as conn:
            rows = await conn.fetch(_HEADS)
        return {row["lane"]: row["not_before"] for row in rows if row["status"] == "queued"}

    async def head_due(self, chat: str) -> float | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(_HEAD, chat)
        if row is None or row["status"] != "queued":
            return None
        due: float = row["not_before"]
        return due

    async def claim(self, chat: str, now: float) -> Command | None:
        async with self._connection() as conn, conn.transaction():
            if self.clustered and not await self._leading(conn):
                return None
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", chat)
            head = await conn.fetchrow(_HEAD, chat)
            if head is None or head["status"] != "queued" or head["not_before"] > now:
                return None
            row = await conn.fetchrow(_CLAIM, head["id"], now)
            return await with_parts(conn, command_from_row(row)) if row else None

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
            await self._update(
                conn,
                f"UPDATE {COMMANDS_TABLE} SET status = $2, result = $3, updated_at = $4 "
                "WHERE id = $1",
                command_id,
                status.value,
                _dump(result),
                now,
            )
            # A split message's result (a list) takes the place of the parts saved on the way.
            if isinstance(result, list):
                await conn.execute(f"DELETE FROM {PARTS_TABLE} WHERE command_id = $1", command_id)
            if status.final:
                await self._notify(conn, c.PG_FINAL_CHANNEL, [command_id])

    async def fail(self, command_id: str, error: dict[str, Any], now: float) -> None:
        async with self._connection() as conn, conn.transaction():
            await self._notify(conn, c.PG_FINAL_CHANNEL, [command_id])
            await self._update(
                conn,
                f"UPDATE {COMMANDS_TABLE} SET status = 'failed', error = $2, updated_at = $3 "
                "WHERE id = $1",
                command_id,
                _dump(error),
                now,
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
        # The command keeps its seq, so it stays the head of its lane; final stays final.
        async with self._connection() as conn:
            await self._update(
                conn,
                f"""UPDATE {COMMANDS_TABLE}
                    SET status = 'queued', not_before = $2, updated_at = $3, error = $4,
                        params = coalesce($5, params), attempts = attempts - $6
                    WHERE id = $1 AND {_NOT_FINAL}""",
                command_id,
                not_before,
                now,
                _dump(error),
                _dump(params),
                int(refund),
            )

    async def save_part(self, command_id: str, part: int, result: Any, now: float) -> None:
        async with self._connection() as conn:
            status = await conn.execute(
                f"""INSERT INTO {PARTS_TABLE} (command_id, part, result, saved_at)
                    SELECT $1, $2, $3, $4
                    WHERE EXISTS (SELECT 1 FROM {COMMANDS_TABLE} WHERE id = $1)
                    ON CONFLICT (command_id, part)
                    DO UPDATE SET result = excluded.result, saved_at = excluded.saved_at""",
                command_id,
                part,
                _dump(result),
                now,
            )
        if count(status) == 0:
            raise KeyError(command_id)

    async def recover(self) -> int:
        async with self._connection() as conn:
            status = await conn.execute(
                f"UPDATE {COMMANDS_TABLE} SET status = 'queued' WHERE status = 'sending'"
            )
        return count(status)

    async def prune(self, before: float, limit: int) -> int:
        keyed_before = min(before, time.time() - c.IDEMPOTENCY_WINDOW_SECONDS)
        async with self._connection() as conn, conn.transaction():
            ids = await conn.fetch(
                f"""DELETE FROM {COMMANDS_TABLE} WHERE seq IN (
                        SELECT seq FROM {COMMANDS_TABLE}
                        WHERE created_at < $1 AND updated_at < $1
                            AND status IN ('sent', 'failed', 'answered', 'expired')
                            AND (idempotency_key IS NULL OR created_at < $2)
                        ORDER BY created_at LIMIT $3)
                    RETURNING id""",
                before,
                keyed_before,
                limit,
            )
            if ids:
                await conn.execute(
                    f"DELETE FROM {PARTS_TABLE} WHERE command_id = ANY($1::text[])",
                    [row["id"] for row in ids],
                )
        return len(ids)

    async def depth(self) -> int:
        async with self._connection() as conn:
            count: int = await conn.fetchval(
                f"SELECT count(*) FROM {COMMANDS_TABLE} WHERE {_NOT_FINAL}"
            )
        return count

    # --- questions --------------------------------------------------------------------------

    async def awaiting(self) -> list[Command]:
        async with self._connection() as conn:
            rows = await conn.fetch(f"{_SELECT} WHERE status = 'awaiting_reply' ORDER BY seq")
        return [command_from_row(row) for row in rows]

    async def settle_question(
        self, command_id: str, status: Status, reply: dict[str, Any], now: float
    ) -> bool:
        async with self._connection() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT status, meta FROM {COMMANDS_TABLE} WHERE id = $1 FOR UPDATE", command_id
            )
            if row is None:
                raise KeyError(command_id)
            if row["status"] != Status.AWAITING_REPLY.value:
                return False
            meta = {**(_load(row["meta"]) or {}), "reply": reply}
            await conn.execute(
                f"UPDATE {COMMANDS_TABLE} SET status = $2, meta = $3, updated_at = $4 "
                "WHERE id = $1",
                command_id,
                status.value,
                _dump(meta),
                now,
            )
            await self._notify(conn, c.PG_FINAL_CHANNEL, [command_id])
            return True

    # --- replay cache, webhook updates --------------------------------------------------------

    async def remember_signature(
        self, client: str, signature: str, expires: float, now: float
    ) -> bool:
        async with self._connection() as conn:
            if now - self._signatures_swept >= 1.0:
                self._signatures_swept = now
                await conn.execute(f"DELETE FROM {SIGNATURES_TABLE} WHERE expires < $1", now)
            # A row that expired but was not swept yet gives way to the new one.
            status = await conn.execute(
                f"""INSERT INTO {SIGNATURES_TABLE} (client, signature, expires)
                    VALUES ($1, $2, $3)
                    ON CONFLICT (client, signature) DO UPDATE SET expires = excluded.expires
                    WHERE {SIGNATURES_TABLE}.expires < $4""",
                client,
                signature,
                expires,
                now,
            )
        return count(status) > 0

    async def update_seen(self, bot_id: int, update_id: int, digest: str) -> bool:
        async with self._connection() as conn:
            seen = await conn.fetchval(_SEEN, bot_id, update_id)
        return bool(seen == digest)

    async def record_update(
        self, record: UpdateRecord, commands: Sequence[Command], forget_before: float
    ) -> bool:
        async with self._connection() as conn, conn.transaction():
            # A concurrent re-send of the same update waits here for this one's commit, then
            # finds its digest and stores nothing.
            stored = await conn.fetchval(
                f"""INSERT INTO {UPDATES_TABLE} (bot_id, update_id, digest, received_at)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT (bot_id, update_id) DO UPDATE
                    SET digest = excluded.digest, received_at = excluded.received_at
                    WHERE {UPDATES_TABLE}.digest <> excluded.digest
                    RETURNING true""",
                record.bot_id,
                record.update_id,
                record.digest,
                record.received_at,
            )
            if not stored:
                return False
            await conn.execute(f"DELETE FROM {UPDATES_TABLE} WHERE received_at < $1", forget_before)
            failure = record.failure
            if failure is not None:
                await conn.execute(
                    f"""INSERT INTO {FAILED_UPDATES_TABLE}
                        (bot_id, update_id, received_at, error, handled, body)
                        VALUES ($1, $2, $3, $4, $5, $6)""",
                    failure.bot_id,
                    failure.update_id,
                    failure.received_at,
                    failure.error,
                    failure.handled,
                    failure.body,
                )
                await conn.execute(
                    f"""DELETE FROM {FAILED_UPDATES_TABLE} WHERE seq <=
                        (SELECT max(seq) FROM {FAILED_UPDATES_TABLE}) - $1""",
                    c.FAILED_UPDATES_KEPT,
                )
            seqs = await insert(conn, commands) if commands else {}
            await self._notify(conn, c.PG_WORK_CHANNEL, {command.lane for command in commands})
        for command in commands:
            command.seq = seqs[command.id]
        return True

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

    async def failed_updates(self, limit: int) -> list[FailedUpdate]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"""SELECT bot_id, update_id, received_at, error, handled, body
                    FROM {FAILED_UPDATES_TABLE} ORDER BY seq DESC LIMIT $1""",
                limit,
            )
        return [FailedUpdate(**dict(row)) for row in rows]

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

    async def held_lanes(self, waiting_since: float) -> int:
        async with self._connection() as conn:
            count: int = await conn.fetchval(
                f"""SELECT count(*) FROM (
                        SELECT DISTINCT ON (lane) created_at, error FROM {COMMANDS_TABLE}
                        WHERE {_NOT_FINAL} ORDER BY lane, seq) AS heads
                    WHERE created_at < $1 OR error IS NOT NULL""",
                waiting_since,
            )
        return count

    async def _update(self, conn: Conn, sql: str, command_id: str, *args: Any) -> None:
        """Run one UPDATE of a command; KeyError when there is no such command."""
        if count(await conn.execute(sql, command_id, *args)):
            return
        if not await conn.fetchval(f"SELECT 1 FROM {COMMANDS_TABLE} WHERE id = $1", command_id):
            raise KeyError(command_id)


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():  # its caller was cancelled; the put stands all the same
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)


#: `problem()` while the database cannot be reached (short, no address: /healthz is public).
UNREACHABLE: Final = "the database is unreachable"
