"""Exactly one replica delivers: the one whose session holds a PostgreSQL advisory lock.

Each replica keeps a connection of its own to the database (not the queue's pool) and, every
`LEADER_POLL_SECONDS`:

- as a follower, tries `pg_try_advisory_lock`. When it gets it, the previous leader's session
  is gone (the server releases a session's locks when it ends: at once for a killed process,
  after the TCP keepalives for a lost machine), so it increments the `leadership` epoch, and
  becomes the leader of that epoch: it recovers the commands the old leader had in flight,
  starts delivering and registers the webhook and the bot's menu (once per leadership);
- as the leader, checks its session within `LEADER_CHECK_SECONDS`. When the check fails it
  stops delivering at once: well before the server gives its lock away (keepalives), so two
  leaders never deliver together; and every claim checks the epoch (gateway/queue/postgres.py),
  so a leader that missed its own deposition cannot take another command.

The same connection LISTENs: new work committed by any replica wakes the leader's worker, and
a command becoming final anywhere wakes `GET /commands/{id}?wait=N` here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import asyncpg

from gateway import constants as c
from gateway.queue.pg_schema import LEADERSHIP_TABLE
from gateway.queue.postgres import UNAVAILABLE, PostgresQueue

logger = logging.getLogger(__name__)

Role = Literal["leader", "follower"]
#: Called with the new epoch when this replica starts leading; awaited.
OnElected = Callable[[int], Awaitable[None]]
#: Called when it stops leading (deposed, cut off, shutting down); awaited.
OnDeposed = Callable[[], Awaitable[None]]


class Leadership:
    """This replica's part in the election, and its view of who leads."""

    def __init__(
        self,
        dsn: str,
        queue: PostgresQueue,
        identity: str,
        *,
        on_elected: OnElected,
        on_deposed: OnDeposed,
        on_work: Callable[[list[str]], None],
        on_final: Callable[[str], None],
    ) -> None:
        self._dsn = dsn
        self._queue = queue
        self.identity = identity
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._on_work = on_work
        self._on_final = on_final
        self.role: Role = "follower"
        #: The leader as last seen (this replica's identity when it leads); "" when unknown.
        self.leader = ""
        self.epoch: int | None = None
        #: How many times this replica became leader.
        self.elections = 0
        #: Whether the election connection is up (the database is reachable).
        self.connected = False

    async def run(self) -> None:
        """Take part until cancelled; on the way out, stop leading (and release the lock)."""
        try:
            while True:
                try:
                    await self._session()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("leadership: database session lost (%s)", _describe(exc))
                finally:
                    self.connected = False
                    await self._step_down()
                await asyncio.sleep(c.LEADER_POLL_SECONDS)
        finally:
            await self._step_down()

    async def _session(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=c.PG_CONNECT_TIMEOUT,
            server_settings={
                # The server notices a leader that vanished (a lost machine, a cut link).
                "tcp_keepalives_idle": str(c.LEADER_KEEPALIVE_IDLE),
                "tcp_keepalives_interval": str(c.LEADER_KEEPALIVE_INTERVAL),
                "tcp_keepalives_count": str(c.LEADER_KEEPALIVE_COUNT),
                "application_name": f"gateway {self.identity}"[:63],
            },
        )
        try:
            await conn.add_listener(c.PG_WORK_CHANNEL, self._heard)
            await conn.add_listener(c.PG_FINAL_CHANNEL, self._heard)
            self.connected = True
            while True:
                if self.role == "leader":
                    await conn.fetchval("SELECT 1", timeout=c.LEADER_CHECK_SECONDS)
                else:
                    await self._try_to_lead(conn)
                await asyncio.sleep(c.LEADER_POLL_SECONDS)
        finally:
            # Closing ends the session: the server releases the lock for the next leader.
            conn.terminate()

    async def _try_to_lead(self, conn: asyncpg.Connection[Any]) -> None:
        check = c.LEADER_CHECK_SECONDS
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", c.PG_LEADER_LOCK):
            self.leader = await conn.fetchval(
                f"SELECT leader FROM {LEADERSHIP_TABLE} WHERE id = 1", timeout=check
            )
            return
        # Waits for claims of the old epoch in progress (they hold a share lock on the row).
        epoch: int = await conn.fetchval(
            f"""UPDATE {LEADERSHIP_TABLE} SET epoch = epoch + 1, leader = $1, since = $2
                WHERE id = 1 RETURNING epoch""",
            self.identity,
            time.time(),
        )
        self.role, self.leader, self.epoch = "leader", self.identity, epoch
        self.elections += 1
        self._queue.epoch = epoch
        logger.info("leadership: %s leads (epoch %d)", self.identity, epoch)
        await self._on_elected(epoch)

    async def _step_down(self) -> None:
        if self.role != "leader":
            return
        self._queue.epoch = None
        self.role, self.epoch, self.leader = "follower", None, ""
        logger.warning("leadership: %s stopped leading", self.identity)
        await self._on_deposed()

    def _heard(self, _conn: Any, _pid: int, channel: str, payload: object) -> None:
        items = [item for item in str(payload).split(",") if item]
        if channel == c.PG_FINAL_CHANNEL:
            for command_id in items:
                self._on_final(command_id)
        elif self.role == "leader":
            self._on_work(items)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UNAVAILABLE):
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return repr(exc)
