"""A command as a database row, for both backends: JSON columns in, `Command` out."""

from __future__ import annotations

import json
from typing import Any

from gateway.commands import Command, Status


def dump(value: Any) -> str | None:
    """A JSON column's text (None stays NULL)."""
    if value is None:  # most results and errors: skip the encoder
        return None
    # ASCII escapes keep lone surrogates (valid in JSON input) storable as UTF-8 text.
    return json.dumps(value, separators=(",", ":"))


def load(text: str | None) -> Any:
    """A JSON column's value (NULL stays None)."""
    return None if text is None else json.loads(text)


def command_values(command: Command) -> tuple[Any, ...]:
    """The INSERT values of a command, without its seq (the writer allots that)."""
    return (
        command.id,
        command.lane,
        command.method,
        dump(command.params),
        command.status.value,
        command.attempts,
        command.created_at,
        command.updated_at,
        command.not_before,
        dump(command.result),
        dump(command.error),
        command.idempotency_key,
        command.client,
        dump(command.meta) if command.meta else None,
    )


def command_from_row(row: Any) -> Command:
    """A `Command` from a commands row of either backend (sqlite3.Row or asyncpg.Record)."""
    command = Command(
        method=row["method"],
        params=load(row["params"]),
        id=row["id"],
        status=Status(row["status"]),
        attempts=row["attempts"],
        created_at=row["created_at"],
        not_before=row["not_before"],
        result=load(row["result"]),
        error=load(row["error"]),
        idempotency_key=row["idempotency_key"],
        seq=row["seq"],
        client=row["client"],
        meta=load(row["meta"]) or {},
    )
    # Assigned after construction: __post_init__ would derive them when they are falsy.
    command.updated_at, command.lane = row["updated_at"], row["lane"]
    return command
