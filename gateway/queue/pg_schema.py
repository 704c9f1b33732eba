"""The PostgreSQL queue's schema, and the steps between its versions.

Table `gateway_schema` holds the version a database is at. `migrate` runs the missing steps
in one transaction under a transaction-level advisory lock, so replicas that start together
apply them once: the first takes the lock and migrates, the others wait for it, then find
nothing left to do. A database at a version newer than this gateway's is refused.

The tables mirror the SQLite queue's (gateway/queue/schema.py), with JSON kept as text (as
SQLite keeps it: `\\u0000` and lone surrogates, which `jsonb` refuses, stay storable) and
times as seconds since the epoch (`double precision`).
"""

from __future__ import annotations

import logging
from typing import Final

import asyncpg

from gateway import constants as c
from gateway.errors import StartupError
from gateway.queue import pg_media, pg_recent, pg_threads
from gateway.queue.schema import (
    COMMANDS_TABLE,
    FAILED_UPDATES_TABLE,
    PARTS_TABLE,
    SIGNATURES_TABLE,
    UPDATES_TABLE,
)

logger = logging.getLogger(__name__)

VERSION_TABLE: Final = "gateway_schema"
#: The REST API's per-client rate limit, shared by every replica: when each client's next
#: request is due (generic cell rate algorithm, the token bucket's equivalent).
RATE_TABLE: Final = "rate_buckets"
#: Chats Telegram moved to a supergroup: lane (the chat id as accepted) → the new chat id.
MIGRATED_TABLE: Final = "migrated_chats"
#: Which replica delivers (gateway/cluster/leadership.py), and since which epoch.
LEADERSHIP_TABLE: Final = "leadership"

#: `MIGRATIONS[n]` takes a database from version n - 1 to n.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        f"""CREATE TABLE {COMMANDS_TABLE} (
            seq bigserial PRIMARY KEY,
            id text NOT NULL UNIQUE,
            lane text NOT NULL,
            method text NOT NULL,
            params text NOT NULL,
            status text NOT NULL,
            attempts integer NOT NULL,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            not_before double precision NOT NULL,
            result text,
            error text,
            idempotency_key text,
            client text,
            meta text
        )""",
        # The head of every lane: its oldest command that is not final.
        f"""CREATE INDEX {COMMANDS_TABLE}_lane_head ON {COMMANDS_TABLE} (lane, seq)
            WHERE status IN ('queued', 'sending')""",
        f"""CREATE INDEX {COMMANDS_TABLE}_idempotency
            ON {COMMANDS_TABLE} (idempotency_key, created_at)
            WHERE idempotency_key IS NOT NULL""",
        f"""CREATE INDEX {COMMANDS_TABLE}_awaiting ON {COMMANDS_TABLE} (seq)
            WHERE status = 'awaiting_reply'""",
        # Retention: the pruner walks commands oldest first.
        f"CREATE INDEX {COMMANDS_TABLE}_created ON {COMMANDS_TABLE} (created_at)",
        f"""CREATE TABLE {PARTS_TABLE} (
            command_id text NOT NULL,
            part integer NOT NULL,
            result text,
            saved_at double precision NOT NULL,
            PRIMARY KEY (command_id, part)
        )""",
        f"""CREATE TABLE {SIGNATURES_TABLE} (
            client text NOT NULL,
            signature text NOT NULL,
            expires double precision NOT NULL,
            PRIMARY KEY (client, signature)
        )""",
        f"CREATE INDEX {SIGNATURES_TABLE}_expires ON {SIGNATURES_TABLE} (expires)",
        f"""CREATE TABLE {UPDATES_TABLE} (
            bot_id bigint NOT NULL,
            update_id bigint NOT NULL,
            digest text NOT NULL,
            received_at double precision NOT NULL,
            PRIMARY KEY (bot_id, update_id)
        )""",
        f"CREATE INDEX {UPDATES_TABLE}_received ON {UPDATES_TABLE} (received_at)",
        f"""CREATE TABLE {FAILED_UPDATES_TABLE} (
            seq bigserial PRIMARY KEY,
            bot_id bigint NOT NULL,
            update_id bigint NOT NULL,
            received_at double precision NOT NULL,
            error text NOT NULL,
            handled text NOT NULL,
            body text NOT NULL
        )""",
        f"""CREATE TABLE {RATE_TABLE} (
            client text PRIMARY KEY,
            tat double precision NOT NULL
        )""",
        f"""CREATE TABLE {MIGRATED_TABLE} (
            lane text PRIMARY KEY,
            chat_id bigint NOT NULL
        )""",
        # One row: the epoch of the current leadership (incremented by each new leader, and
        # checked by every claim: a deposed leader's claims are refused) and who holds it.
        f"""CREATE TABLE {LEADERSHIP_TABLE} (
            id integer PRIMARY KEY CHECK (id = 1),
            epoch bigint NOT NULL,
            leader text NOT NULL,
            since double precision NOT NULL
        )""",
        f"INSERT INTO {LEADERSHIP_TABLE} VALUES (1, 0, '', 0)",
    ),
    # Inlets: the message each alert group (or storm) is shown in (gateway/queue/threads.py).
    2: pg_threads.MIGRATION,
    # What a new leader reads to keep its predecessor's flood limits (gateway/cluster/recent.py).
    3: pg_recent.MIGRATION,
    # Files (gateway/queue/pg_media.py): every replica can send every file.
    4: pg_media.MIGRATION,
}
SCHEMA_VERSION: Final = max(MIGRATIONS)


async def migrate(
    conn: asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
    where: str,
) -> int:
    """Bring the database to `SCHEMA_VERSION` (refusing a newer one); the version it was at.

    `where` names the database in messages (host and database, never the password).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", c.PG_SCHEMA_LOCK)
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version integer)")
        found = await conn.fetchval(f"SELECT max(version) FROM {VERSION_TABLE}")
        version = int(found or 0)
        if version > SCHEMA_VERSION:
            raise StartupError(
                f"the queue database {where} has schema version {version}, newer than this "
                f"gateway's {SCHEMA_VERSION}: upgrade the gateway"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                await conn.execute(statement)
            logger.info("queue database %s: schema version %d", where, target)
        if version < SCHEMA_VERSION:
            await conn.execute(f"DELETE FROM {VERSION_TABLE}")
            await conn.execute(f"INSERT INTO {VERSION_TABLE} VALUES ($1)", SCHEMA_VERSION)
    return version
