"""The inlets' threads on PostgreSQL (gateway/queue/threads.py has the model and SQLite's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from gateway.commands import Command
from gateway.queue.pg_rows import Conn, insert
from gateway.queue.threads import (
    CLOSED_THREAD_KEEP_SECONDS,
    COLUMNS,
    THREADS_TABLE,
    Thread,
    adopt_stored,
    encode_thread_state,
    thread_from_row,
)

#: PostgreSQL schema step adding the threads table (pg_schema.MIGRATIONS[2]).
MIGRATION: Final = (
    f"""CREATE TABLE {THREADS_TABLE} (
        id text PRIMARY KEY,
        inlet text NOT NULL,
        chat text NOT NULL,
        key text NOT NULL,
        version bigint NOT NULL,
        shown bigint NOT NULL,
        message_id bigint,
        pending text,
        closed boolean NOT NULL,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        digest text,
        state text NOT NULL
    )""",
    f"""CREATE UNIQUE INDEX {THREADS_TABLE}_open ON {THREADS_TABLE} (inlet, chat, key)
        WHERE NOT closed""",
    f"CREATE INDEX {THREADS_TABLE}_closed ON {THREADS_TABLE} (updated_at) WHERE closed",
)


async def open_thread(conn: Conn, inlet: str, chat: str, key: str) -> Thread | None:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM {THREADS_TABLE} "
        "WHERE inlet = $1 AND chat = $2 AND key = $3 AND NOT closed",
        inlet,
        chat,
        key,
    )
    return thread_from_row(row) if row else None


async def thread(conn: Conn, thread_id: str) -> Thread | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM {THREADS_TABLE} WHERE id = $1", thread_id)
    return thread_from_row(row) if row else None


async def save(
    conn: Conn, thread: Thread, expected: int, commands: Sequence[Command]
) -> list[Command] | None:
    """`Queue.save_thread`, in the caller's transaction (the row is locked while it runs)."""
    row = await conn.fetchrow(
        f"""SELECT t.version, t.pending, t.message_id, t.shown, t.digest, c.status AS waiting
            FROM {THREADS_TABLE} AS t LEFT JOIN commands AS c ON c.id = t.pending
            WHERE t.id = $1 FOR UPDATE OF t""",
        thread.id,
    )
    if (row["version"] if row else 0) != expected:
        return None
    if row is None and await open_thread(conn, thread.inlet, thread.chat, thread.key):
        return None
    kept = adopt_stored(thread, row, row is not None and row["waiting"] == "queued", commands)
    inserted = await conn.fetchval(
        f"""INSERT INTO {THREADS_TABLE} ({COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
            ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                pending = excluded.pending, closed = excluded.closed,
                updated_at = excluded.updated_at, state = excluded.state
            RETURNING true""",
        thread.id,
        thread.inlet,
        thread.chat,
        thread.key,
        thread.version,
        thread.shown,
        thread.message_id,
        thread.pending,
        thread.closed,
        thread.created_at,
        thread.updated_at,
        thread.digest,
        encode_thread_state(thread),
    )
    if not inserted:
        return None
    if thread.closed:
        await conn.execute(
            f"DELETE FROM {THREADS_TABLE} WHERE closed AND updated_at < $1",
            thread.updated_at - CLOSED_THREAD_KEEP_SECONDS,
        )
    if kept:
        seqs = await insert(conn, kept)
        for command in kept:
            command.seq = seqs[command.id]
    return kept


async def gone(conn: Conn, thread_id: str, message_id: int) -> None:
    await conn.execute(
        f"""UPDATE {THREADS_TABLE} SET message_id = NULL, digest = NULL
            WHERE id = $1 AND message_id = $2""",
        thread_id,
        message_id,
    )


async def shown(
    conn: Conn, thread_id: str, version: int, message_id: int | None, digest: str
) -> None:
    await conn.execute(
        f"""UPDATE {THREADS_TABLE} SET
            digest = CASE WHEN $1 >= shown THEN $4 ELSE digest END,
            shown = greatest(shown, $1), message_id = coalesce(message_id, $2) WHERE id = $3""",
        version,
        message_id,
        thread_id,
        digest,
    )
