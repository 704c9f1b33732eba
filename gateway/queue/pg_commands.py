"""Commands in PostgreSQL: their lifecycle from stored to final, one statement or transaction
each on a connection the queue lends (gateway/queue/postgres.py keeps the pool, the group
commit and the notifications)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from gateway import constants as c
from gateway.commands import Command, Status
from gateway.queue.pg_rows import Conn, count, with_parts
from gateway.queue.rows import command_from_row, dump, load
from gateway.queue.schema import COLUMNS, COMMANDS_TABLE, PARTS_TABLE

NOT_FINAL: Final = "status IN ('queued', 'sending')"
_SELECT = f"SELECT {COLUMNS} FROM {COMMANDS_TABLE}"
# A lane's head: a command `sending` first (the lane is busy), else its oldest queued one.
_HEADS = f"""SELECT DISTINCT ON (lane) lane, status, not_before FROM {COMMANDS_TABLE}
    WHERE {NOT_FINAL} ORDER BY lane, status = 'sending' DESC, seq"""
_HEAD = f"""SELECT id, status, not_before FROM {COMMANDS_TABLE} WHERE lane = $1 AND {NOT_FINAL}
    ORDER BY status = 'sending' DESC, seq LIMIT 1"""
_CLAIM = f"""UPDATE {COMMANDS_TABLE}
    SET status = 'sending', attempts = attempts + 1, updated_at = $2
    WHERE id = $1 AND status = 'queued' RETURNING {COLUMNS}"""


async def get(conn: Conn, command_id: str) -> Command | None:
    row = await conn.fetchrow(f"{_SELECT} WHERE id = $1", command_id)
    return await with_parts(conn, command_from_row(row)) if row else None


async def existing(conn: Conn, ids: Sequence[str]) -> set[str]:
    """Which of these command ids are stored already (`gateway migrate-queue`)."""
    rows = await conn.fetch(
        f"SELECT id FROM {COMMANDS_TABLE} WHERE id = ANY($1::text[])", list(ids)
    )
    return {row["id"] for row in rows}


async def find_idempotent(conn: Conn, key: str, since: float) -> Command | None:
    row = await conn.fetchrow(
        f"{_SELECT} WHERE idempotency_key = $1 AND created_at >= $2 ORDER BY seq LIMIT 1",
        key,
        since,
    )
    return command_from_row(row) if row else None


async def lanes(conn: Conn) -> dict[str, float]:
    rows = await conn.fetch(_HEADS)
    return {row["lane"]: row["not_before"] for row in rows if row["status"] == "queued"}


async def head_due(conn: Conn, chat: str) -> float | None:
    row = await conn.fetchrow(_HEAD, chat)
    if row is None or row["status"] != "queued":
        return None
    due: float = row["not_before"]
    return due


async def claim(conn: Conn, chat: str, now: float) -> Command | None:
    """Claim the lane's head if it is due; inside the caller's transaction, whose advisory
    lock on the lane keeps two claimers from both seeing it free."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", chat)
    head = await conn.fetchrow(_HEAD, chat)
    if head is None or head["status"] != "queued" or head["not_before"] > now:
        return None
    row = await conn.fetchrow(_CLAIM, head["id"], now)
    return await with_parts(conn, command_from_row(row)) if row else None


async def complete(conn: Conn, command_id: str, result: Any, now: float, status: Status) -> None:
    """Inside the caller's transaction."""
    await _update(
        conn,
        f"UPDATE {COMMANDS_TABLE} SET status = $2, result = $3, updated_at = $4 WHERE id = $1",
        command_id,
        status.value,
        dump(result),
        now,
    )
    # A split message's result (a list) takes the place of the parts saved on the way.
    if isinstance(result, list):
        await conn.execute(f"DELETE FROM {PARTS_TABLE} WHERE command_id = $1", command_id)


async def fail(conn: Conn, command_id: str, error: dict[str, Any], now: float) -> None:
    await _update(
        conn,
        f"UPDATE {COMMANDS_TABLE} SET status = 'failed', error = $2, updated_at = $3 WHERE id = $1",
        command_id,
        dump(error),
        now,
    )


async def retry(
    conn: Conn,
    command_id: str,
    not_before: float,
    now: float,
    error: dict[str, Any] | None,
    params: dict[str, Any] | None,
    refund: bool,
) -> None:
    # The command keeps its seq, so it stays the head of its lane; final stays final.
    await _update(
        conn,
        f"""UPDATE {COMMANDS_TABLE}
            SET status = 'queued', not_before = $2, updated_at = $3, error = $4,
                params = coalesce($5, params), attempts = attempts - $6
            WHERE id = $1 AND {NOT_FINAL}""",
        command_id,
        not_before,
        now,
        dump(error),
        dump(params),
        int(refund),
    )


async def save_part(conn: Conn, command_id: str, part: int, result: Any, now: float) -> None:
    status = await conn.execute(
        f"""INSERT INTO {PARTS_TABLE} (command_id, part, result, saved_at)
            SELECT $1, $2, $3, $4
            WHERE EXISTS (SELECT 1 FROM {COMMANDS_TABLE} WHERE id = $1)
            ON CONFLICT (command_id, part)
            DO UPDATE SET result = excluded.result, saved_at = excluded.saved_at""",
        command_id,
        part,
        dump(result),
        now,
    )
    if count(status) == 0:
        raise KeyError(command_id)


async def recover(conn: Conn) -> int:
    status = await conn.execute(
        f"UPDATE {COMMANDS_TABLE} SET status = 'queued' WHERE status = 'sending'"
    )
    return count(status)


async def prune(conn: Conn, before: float, limit: int) -> int:
    """Inside the caller's transaction: a pruned command's parts go with it."""
    keyed_before = min(before, time.time() - c.IDEMPOTENCY_WINDOW_SECONDS)
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


async def depth(conn: Conn) -> int:
    depth: int = await conn.fetchval(f"SELECT count(*) FROM {COMMANDS_TABLE} WHERE {NOT_FINAL}")
    return depth


async def held_lanes(conn: Conn, waiting_since: float) -> int:
    held: int = await conn.fetchval(
        f"""SELECT count(*) FROM (
                SELECT DISTINCT ON (lane) created_at, error FROM {COMMANDS_TABLE}
                WHERE {NOT_FINAL} ORDER BY lane, seq) AS heads
            WHERE created_at < $1 OR error IS NOT NULL""",
        waiting_since,
    )
    return held


async def awaiting(conn: Conn) -> list[Command]:
    rows = await conn.fetch(f"{_SELECT} WHERE status = 'awaiting_reply' ORDER BY seq")
    return [command_from_row(row) for row in rows]


async def settle_question(
    conn: Conn, command_id: str, status: Status, reply: dict[str, Any], now: float
) -> bool:
    """Inside the caller's transaction (the row is locked until it commits)."""
    row = await conn.fetchrow(
        f"SELECT status, meta FROM {COMMANDS_TABLE} WHERE id = $1 FOR UPDATE", command_id
    )
    if row is None:
        raise KeyError(command_id)
    if row["status"] != Status.AWAITING_REPLY.value:
        return False
    meta = {**(load(row["meta"]) or {}), "reply": reply}
    await conn.execute(
        f"UPDATE {COMMANDS_TABLE} SET status = $2, meta = $3, updated_at = $4 WHERE id = $1",
        command_id,
        status.value,
        dump(meta),
        now,
    )
    return True


async def _update(conn: Conn, sql: str, command_id: str, *args: Any) -> None:
    """Run one UPDATE of a command; KeyError when there is no such command."""
    if count(await conn.execute(sql, command_id, *args)):
        return
    if not await conn.fetchval(f"SELECT 1 FROM {COMMANDS_TABLE} WHERE id = $1", command_id):
        raise KeyError(command_id)
