"""State the replicas share besides the queue: per-client rate limits, migrated chats."""

from __future__ import annotations

from gateway.queue.pg_rows import Conn
from gateway.queue.pg_schema import MIGRATED_TABLE, RATE_TABLE


async def take_token(conn: Conn, client: str, rate: float, now: float) -> float:
    """The REST API's rate limit, one bucket per client for every replica: 0 when a
    request is allowed now, else seconds until one is.

    The same limit as gateway.guards.RateLimiter (`rate` per second, bursts of up to
    max(1, rate)), kept as a generic cell rate: the row holds the theoretical arrival time
    of the next request, and one atomic upsert both checks and advances it, so requests
    spread over replicas add up to the one limit. `now` is wall-clock time (shared by
    every replica).
    """
    interval = 1.0 / rate
    tolerance = (max(1.0, rate) - 1.0) * interval
    allowed = await conn.fetchval(
        f"""INSERT INTO {RATE_TABLE} AS b (client, tat)
            VALUES ($1, $2::float8 + $3::float8)
            ON CONFLICT (client)
            DO UPDATE SET tat = greatest(b.tat, $2::float8) + $3::float8
            WHERE greatest(b.tat, $2::float8) - $2::float8 <= $4::float8
            RETURNING true""",
        client,
        now,
        interval,
        tolerance,
    )
    if allowed:
        return 0.0
    tat: float = await conn.fetchval(f"SELECT tat FROM {RATE_TABLE} WHERE client = $1", client)
    return max(interval / 1000, tat - now - tolerance)


async def migrated_chats(conn: Conn) -> dict[str, int]:
    """Every chat Telegram moved to a supergroup: lane → the new chat id."""
    rows = await conn.fetch(f"SELECT lane, chat_id FROM {MIGRATED_TABLE}")
    return {row["lane"]: row["chat_id"] for row in rows}


async def save_migrated_chat(conn: Conn, lane: str, chat_id: int) -> None:
    """Remember that the chat of `lane` is now `chat_id` (for every replica, for good)."""
    await conn.execute(
        f"""INSERT INTO {MIGRATED_TABLE} (lane, chat_id) VALUES ($1, $2)
            ON CONFLICT (lane) DO UPDATE SET chat_id = excluded.chat_id""",
        lane,
        chat_id,
    )
