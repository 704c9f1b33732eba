"""The replay cache and Telegram's webhook updates in PostgreSQL: signatures seen, updates
already recorded (dedup by digest), and the dead letters aiogram could not validate."""

from __future__ import annotations

from gateway import constants as c
from gateway.queue.base import FailedUpdate, UpdateRecord
from gateway.queue.pg_rows import Conn, count
from gateway.queue.schema import FAILED_UPDATES_TABLE, SIGNATURES_TABLE, UPDATES_TABLE

_SEEN = f"SELECT digest FROM {UPDATES_TABLE} WHERE bot_id = $1 AND update_id = $2"


async def sweep_signatures(conn: Conn, now: float) -> None:
    """Delete the signatures that expired before `now`."""
    await conn.execute(f"DELETE FROM {SIGNATURES_TABLE} WHERE expires < $1", now)


async def remember_signature(
    conn: Conn, client: str, signature: str, expires: float, now: float
) -> bool:
    """Whether the signature is new (stored now), False for a replay."""
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


async def update_seen(conn: Conn, bot_id: int, update_id: int, digest: str) -> bool:
    seen = await conn.fetchval(_SEEN, bot_id, update_id)
    return bool(seen == digest)


async def record_update(conn: Conn, record: UpdateRecord, forget_before: float) -> bool:
    """Store the update (and its dead letter, if any) unless the same one is stored already;
    inside the caller's transaction, which also stores the update's commands."""
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
    return True


async def failed_updates(conn: Conn, limit: int) -> list[FailedUpdate]:
    rows = await conn.fetch(
        f"""SELECT bot_id, update_id, received_at, error, handled, body
            FROM {FAILED_UPDATES_TABLE} ORDER BY seq DESC LIMIT $1""",
        limit,
    )
    return [FailedUpdate(**dict(row)) for row in rows]
