"""Rows of the PostgreSQL queue: commands in and out, notification payloads, command tags."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, TypeAlias

import asyncpg

from gateway import constants as c
from gateway.commands import Command
from gateway.queue.rows import command_values, load
from gateway.queue.schema import COLUMNS, COMMANDS_TABLE, PARTS_TABLE

#: A connection lent by the pool.
Conn: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

_INSERT: Final = f"""INSERT INTO {COMMANDS_TABLE} ({COLUMNS.replace("seq, ", "")})
    SELECT id, lane, method, params, status, attempts, created_at, updated_at, not_before,
        result, error, idempotency_key, client, meta
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
        $7::float8[], $8::float8[], $9::float8[], $10::text[], $11::text[], $12::text[],
        $13::text[], $14::text[])
        WITH ORDINALITY AS t(id, lane, method, params, status, attempts, created_at,
            updated_at, not_before, result, error, idempotency_key, client, meta, n)
    ORDER BY n
    RETURNING id, seq"""
_PARTS: Final = f"SELECT result FROM {PARTS_TABLE} WHERE command_id = $1 ORDER BY part"


def payloads(items: Iterable[str]) -> list[str]:
    """`items` joined by commas, in payloads NOTIFY accepts."""
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    for item in items:
        if current and size + len(item) + 1 > c.PG_NOTIFY_PAYLOAD:
            payloads.append(",".join(current))
            current, size = [], 0
        current.append(item)
        size += len(item) + 1
    if current:
        payloads.append(",".join(current))
    return payloads


def count(status: str) -> int:
    """The row count of a command tag ("UPDATE 3", "INSERT 0 1")."""
    return int(status.rsplit(" ", 1)[-1])


async def insert(conn: Conn, commands: Sequence[Command]) -> dict[str, int]:
    """Insert the commands (one statement, numbered in order); their seq by id."""
    rows = [command_values(command) for command in commands]
    columns = [list(column) for column in zip(*rows, strict=True)]
    found = await conn.fetch(_INSERT, *columns)
    return {row["id"]: row["seq"] for row in found}


async def with_parts(conn: Conn, command: Command) -> Command:
    """A split message not complete yet: its result is the list of the parts saved so far."""
    if command.result is None and command.method == "sendMessage":
        parts = await conn.fetch(_PARTS, command.id)
        if parts:
            command.result = [load(row["result"]) for row in parts]
    return command
