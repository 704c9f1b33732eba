"""The SQLite queue's commands: lane heads, claims, deliveries, split-message parts.

Statements and jobs (functions run in the queue's database thread, see
gateway/queue/sqlite_commit.py); `SqliteQueue` calls them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from gateway.commands import Command, Status
from gateway.queue.rows import command_from_row, command_values, dump, load
from gateway.queue.schema import COLUMNS, COMMANDS_TABLE, PARTS_TABLE, insert_sql
from gateway.queue.sqlite_commit import Seqs

NOT_FINAL: Final = "status IN ('queued', 'sending')"
SELECT: Final = f"SELECT {COLUMNS} FROM {COMMANDS_TABLE}"
_HEAD = f"SELECT id FROM {COMMANDS_TABLE} WHERE lane = :lane AND {NOT_FINAL} ORDER BY seq LIMIT 1"
_CLAIM = f"""UPDATE {COMMANDS_TABLE}
    SET status = 'sending', attempts = attempts + 1, updated_at = :now
    WHERE id = ({_HEAD}) AND status = 'queued' AND not_before <= :now
    RETURNING {COLUMNS}"""
# SQLite takes the bare columns of a min() aggregate from the row holding the minimum.
HEAD_DUE: Final = f"""SELECT status, not_before FROM {COMMANDS_TABLE}
    WHERE lane = ? AND {NOT_FINAL} ORDER BY seq LIMIT 1"""
LANE_HEADS: Final = f"""SELECT lane, min(seq), status, not_before FROM {COMMANDS_TABLE}
    WHERE {NOT_FINAL} GROUP BY lane"""
_PARTS = f"SELECT result FROM {PARTS_TABLE} WHERE command_id = ? ORDER BY part"
# Only a command that exists gets parts (rowcount 0 otherwise: KeyError).
_SAVE_PART = f"""INSERT OR REPLACE INTO {PARTS_TABLE} (command_id, part, result, saved_at)
    SELECT :id, :part, :result, :now WHERE EXISTS (SELECT 1 FROM {COMMANDS_TABLE} WHERE id = :id)"""
_FAIL: Final = f"""UPDATE {COMMANDS_TABLE} SET status = 'failed', error = ?, updated_at = ?
    WHERE id = ?"""
# The command keeps its seq, so it stays the head of its lane.
_RETRY: Final = f"""UPDATE {COMMANDS_TABLE}
    SET status = 'queued', not_before = ?, updated_at = ?, error = ?,
        params = ifnull(?, params), attempts = attempts - ?
    WHERE id = ? AND {NOT_FINAL}"""
#: Lanes whose head has waited since before a time, or failed an attempt already.
HELD_LANES: Final = f"""SELECT count(*) FROM (
    SELECT min(seq), created_at, error FROM {COMMANDS_TABLE} WHERE {NOT_FINAL} GROUP BY lane)
    WHERE created_at < ? OR error IS NOT NULL"""


def select(db: sqlite3.Connection, command_id: str) -> Command | None:
    """A command by id, with the parts of a split message saved so far."""
    rows = db.execute(f"{SELECT} WHERE id = ?", (command_id,)).fetchall()
    return with_parts(db, command_from_row(rows[0])) if rows else None


def claim(db: sqlite3.Connection, chat: str, now: float) -> Command | None:
    """The head of the chat's lane, now `sending`, if it is queued and due."""
    rows = db.execute(_CLAIM, {"lane": chat, "now": now}).fetchall()
    return with_parts(db, command_from_row(rows[0])) if rows else None


def head_due(db: sqlite3.Connection, lane: str) -> float | None:
    """When the lane's head is due; None when the lane is empty or its head is out."""
    rows = db.execute(HEAD_DUE, (lane,)).fetchall()
    return rows[0]["not_before"] if rows and rows[0]["status"] == Status.QUEUED else None


def complete(
    db: sqlite3.Connection, command_id: str, result: Any, now: float, status: Status
) -> bool:
    """Record a delivery; False when there is no such command."""
    sql = f"UPDATE {COMMANDS_TABLE} SET status = ?, result = ?, updated_at = ? WHERE id = ?"
    if db.execute(sql, (status.value, dump(result), now, command_id)).rowcount:
        # A split message's result (a list) takes the place of the parts saved on the way.
        if isinstance(result, list):
            db.execute(f"DELETE FROM {PARTS_TABLE} WHERE command_id = ?", (command_id,))
        return True
    return exists(db, command_id)


def settle_question(
    db: sqlite3.Connection, command_id: str, status: Status, reply: dict[str, Any], now: float
) -> bool:
    """Record the reply to a question still awaiting one; False when it was settled already."""
    rows = db.execute(
        f"SELECT status, meta FROM {COMMANDS_TABLE} WHERE id = ?", (command_id,)
    ).fetchall()
    if not rows:
        raise KeyError(command_id)
    if rows[0]["status"] != Status.AWAITING_REPLY.value:
        return False
    meta = {**(load(rows[0]["meta"]) or {}), "reply": reply}
    db.execute(
        f"UPDATE {COMMANDS_TABLE} SET status = ?, meta = ?, updated_at = ? WHERE id = ?",
        (status.value, dump(meta), now, command_id),
    )
    return True


def fail(db: sqlite3.Connection, command_id: str, error: dict[str, Any], now: float) -> bool:
    """Mark a command failed; False when there is no such command."""
    return update(db, command_id, _FAIL, (dump(error), now, command_id))


def retry(
    db: sqlite3.Connection,
    command_id: str,
    not_before: float,
    now: float,
    error: dict[str, Any] | None,
    params: dict[str, Any] | None,
    refund: bool,
) -> bool:
    """Queue a command not final yet again; False when there is no such command."""
    values = (not_before, now, dump(error), dump(params), int(refund), command_id)
    return update(db, command_id, _RETRY, values)


def save_part(db: sqlite3.Connection, command_id: str, part: int, result: Any, now: float) -> bool:
    """Keep what one part of a split message became; False when there is no such command."""
    values = {"id": command_id, "part": part, "result": dump(result), "now": now}
    return bool(db.execute(_SAVE_PART, values).rowcount)


def recover(db: sqlite3.Connection) -> int:
    """Queue again what was being sent when the last process stopped."""
    sql = f"UPDATE {COMMANDS_TABLE} SET status = 'queued' WHERE status = 'sending'"
    return db.execute(sql).rowcount


def insert_each(db: sqlite3.Connection, commands: Sequence[Command], seqs: Seqs) -> None:
    """Number and insert a few commands made in a job (one statement)."""
    if not commands:
        return
    values: list[Any] = []
    for command in commands:
        command.seq = seqs.allot(1)
        row = command_values(command)
        values += (row[0], command.seq, *row[1:])
    db.execute(insert_sql(len(commands)), values)


def update(db: sqlite3.Connection, command_id: str, sql: str, params: Sequence[Any]) -> bool:
    """Run one UPDATE of a command; False when there is no such command."""
    return bool(db.execute(sql, params).rowcount) or exists(db, command_id)


def exists(db: sqlite3.Connection, command_id: str) -> bool:
    found = db.execute(f"SELECT 1 FROM {COMMANDS_TABLE} WHERE id = ?", (command_id,))
    return found.fetchone() is not None


def with_parts(db: sqlite3.Connection, command: Command) -> Command:
    """A split message not complete yet: its result is the list of the parts saved so far."""
    if command.result is None and command.method == "sendMessage":
        parts = db.execute(_PARTS, (command.id,)).fetchall()
        if parts:
            command.result = [load(row[0]) for row in parts]
    return command
