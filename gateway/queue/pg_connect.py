"""Connecting to the PostgreSQL queue: the pool's settings, and what an outage looks like."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

import asyncpg

from gateway import constants as c
from gateway.errors import StartupError
from gateway.queue.pg_schema import migrate

#: What "the database is not there" looks like through asyncpg.
UNAVAILABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # disk full, too many connections
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, mid-failover
)

#: `problem()` while the database cannot be reached (short, no address: /healthz is public).
UNREACHABLE: Final = "the database is unreachable"


def where(dsn: str) -> str:
    """The database for messages: host, port and name, never the user or password."""
    parts = urlsplit(dsn)
    return f"postgresql://{parts.hostname or ''}:{parts.port or 5432}{parts.path}"


async def open_pool(dsn: str, pool_size: int) -> asyncpg.Pool:
    """Connect, and migrate the schema (under an advisory lock) before anything else."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=pool_size,
            timeout=c.PG_CONNECT_TIMEOUT,
            command_timeout=c.PG_COMMAND_TIMEOUT,
            server_settings={
                "idle_in_transaction_session_timeout": str(c.PG_IDLE_IN_TRANSACTION_SECONDS * 1000),
                # The server notices a replica that vanished mid-statement, too.
                "tcp_keepalives_idle": str(c.LEADER_KEEPALIVE_IDLE),
                "tcp_keepalives_interval": str(c.LEADER_KEEPALIVE_INTERVAL),
                "tcp_keepalives_count": str(c.LEADER_KEEPALIVE_COUNT),
            },
        )
    except (*UNAVAILABLE, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise StartupError(f"cannot open the queue database {where(dsn)}: {exc}") from None
    try:
        async with pool.acquire() as conn:
            await migrate(conn, where(dsn))
    except BaseException:
        await pool.close()
        raise
    return pool
