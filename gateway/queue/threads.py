"""Threads: one Telegram message that follows something's life (an alert group, a storm).

An inlet keeps, per (inlet, chat, key), the message it posted and the state it shows: each
change bumps `version`. Delivery is by a `showThread` command in the chat's lane, resolved when
the worker picks it up: the state is rendered then (once per message sent, not once per
notification), and becomes a sendMessage while the thread has no message yet, an
editMessageText of that message afterwards, nothing when it renders as what Telegram shows
already (`digest`). So the message id Telegram returns for the first send is there for every
later edit (same lane, same order), and a burst of notifications becomes a few edits, never one
per notification.

The SQLite jobs live here (run in the queue's database thread); the memory backend mirrors them.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from gateway.commands import Command

THREADS_TABLE: Final = "threads"
#: A command that shows a thread's current version (`meta["thread"]` names it).
THREAD_METHOD: Final = "showThread"
#: Closed threads are kept this long (buttons on their message still find them), then pruned.
CLOSED_THREAD_KEEP_SECONDS: Final = 7 * 24 * 3600

MIGRATION: Final = (
    f"""CREATE TABLE {THREADS_TABLE} (
        id TEXT PRIMARY KEY,
        inlet TEXT NOT NULL,
        chat TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        shown INTEGER NOT NULL,
        message_id INTEGER,
        pending TEXT,
        closed INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        digest TEXT,
        state TEXT NOT NULL
    )""",
    # One open thread per (inlet, chat, key): the one a new notification updates.
    f"""CREATE UNIQUE INDEX {THREADS_TABLE}_open ON {THREADS_TABLE} (inlet, chat, key)
        WHERE closed = 0""",
    f"CREATE INDEX {THREADS_TABLE}_closed ON {THREADS_TABLE} (updated_at) WHERE closed = 1",
)


def new_thread_id() -> str:
    """Short (it goes into 64-byte callback data) and unguessable: 72 random bits."""
    return base64.urlsafe_b64encode(os.urandom(9)).decode()


@dataclass
class Thread:
    """One message's life: where it is, what it shows, what it should show."""

    inlet: str
    #: The chat id, with the forum topic when there is one: "-100123" or "-100123:42".
    chat: str
    #: What correlates notifications: an alert group's key, an alert's fingerprint, a storm.
    key: str
    id: str = field(default_factory=new_thread_id)
    #: Bumped on every change; `shown` is the last version Telegram has.
    version: int = 0
    shown: int = 0
    #: The message Telegram returned for the first send (None until it is delivered).
    message_id: int | None = None
    #: The showThread command queued for it and not yet picked up, if any.
    pending: str | None = None
    closed: bool = False
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    #: What the inlet renders (alerts, silence, ack, ...).
    state: dict[str, Any] = field(default_factory=dict)
    #: A digest of the message as Telegram shows it now (text, parse mode, buttons).
    digest: str | None = None

    def __post_init__(self) -> None:
        if not self.updated_at:
            self.updated_at = self.created_at


def is_show(command: Command) -> bool:
    """A showThread of the thread's current version (not a reply to it)."""
    return command.method == THREAD_METHOD and "reply" not in command.meta


#: The thread table's columns, in the order both backends select and insert them.
COLUMNS = (
    "id, inlet, chat, key, version, shown, message_id, pending, closed, created_at, updated_at, "
    "digest, state"
)


def thread_from_row(row: Any) -> Thread:
    """A `Thread` from a row of either backend (sqlite3.Row or asyncpg.Record)."""
    return Thread(
        inlet=row["inlet"],
        chat=row["chat"],
        key=row["key"],
        id=row["id"],
        version=row["version"],
        shown=row["shown"],
        message_id=row["message_id"],
        pending=row["pending"],
        closed=bool(row["closed"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        digest=row["digest"],
        state=decode_state(row["state"]),
    )


def select_open(db: sqlite3.Connection, inlet: str, chat: str, key: str) -> Thread | None:
    row = db.execute(
        f"SELECT {COLUMNS} FROM {THREADS_TABLE} "
        "WHERE inlet = ? AND chat = ? AND key = ? AND closed = 0",
        (inlet, chat, key),
    ).fetchone()
    return thread_from_row(row) if row else None


def select_by_id(db: sqlite3.Connection, thread_id: str) -> Thread | None:
    row = db.execute(f"SELECT {COLUMNS} FROM {THREADS_TABLE} WHERE id = ?", (thread_id,)).fetchone()
    return thread_from_row(row) if row else None


def adopt_stored(
    thread: Thread, row: Any, waiting: bool, commands: Sequence[Command]
) -> list[Command]:
    """The part of `save_thread` both backends share: take the stored row's message id and
    what it shows (the worker's to record, never rolled back here), keep at most one waiting
    show command (`waiting`: the stored one is still queued), and point `pending` at the
    newest kept one. Returns the commands to store."""
    pending = row["pending"] if row is not None else None
    if row is not None:
        thread.message_id, thread.digest = row["message_id"], row["digest"]
        thread.shown = max(thread.shown, row["shown"])
    kept = [command for command in commands if not (is_show(command) and waiting)]
    for command in kept:
        if is_show(command):
            pending = command.id
    thread.pending = pending
    return kept


def encode_state(state: dict[str, Any]) -> str:
    """A thread's state as stored: compact JSON, UTF-8 as is (what `json.dumps` with
    `ensure_ascii=False` and no spaces writes, but for floats in exponent form: `1e-07` is now
    `1e-7`; both read either). orjson: ~1.5 µs for a 10-alert group against ~20 for the stdlib's
    encoder, so the whole state is encoded each time (no per-member reuse needed). Done by the
    caller, before the job reaches the database thread: that thread holds the GIL for what it
    runs in Python, and the event loop waits."""
    return orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS).decode()


def encode_thread_state(thread: Thread) -> str:
    """`encode_state(thread.state)`."""
    return encode_state(thread.state)


def decode_state(text: str) -> dict[str, Any]:
    """A stored state: orjson, or `json.loads` for what orjson refuses and the stdlib's encoder
    could have written in older rows (NaN, a lone surrogate)."""
    try:
        state: dict[str, Any] = orjson.loads(text)
    except orjson.JSONDecodeError:
        state = json.loads(text)
    return state


def save(
    db: sqlite3.Connection,
    thread: Thread,
    expected: int,
    commands: Sequence[Command],
    insert: Any,
    state: str | None = None,
) -> list[Command] | None:
    """The job of `Queue.save_thread`; `insert(db, commands)` stores commands; `state` is
    `encode_state(thread.state)` when the caller has it. None on a version conflict (someone
    else saved first)."""
    row = db.execute(_STORED, (thread.id,)).fetchone()
    stored = row["version"] if row else 0
    if stored != expected:
        return None
    if row is None and select_open(db, thread.inlet, thread.chat, thread.key) is not None:
        return None  # another writer opened the same thread meanwhile
    stored_commands = adopt_stored(
        thread, row, row is not None and row["pending_status"] == "queued", commands
    )
    encoded = encode_state(thread.state) if state is None else state
    if row is not None:  # the common case: only what the inlet changes
        db.execute(
            _UPDATE,
            (
                thread.version,
                thread.pending,
                int(thread.closed),
                thread.updated_at,
                encoded,
                thread.id,
            ),
        )
    else:
        db.execute(
            f"""INSERT INTO {THREADS_TABLE} ({COLUMNS})
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                thread.id,
                thread.inlet,
                thread.chat,
                thread.key,
                thread.version,
                thread.shown,
                thread.message_id,
                thread.pending,
                int(thread.closed),
                thread.created_at,
                thread.updated_at,
                thread.digest,
                encoded,
            ),
        )
    if thread.closed:
        db.execute(
            f"DELETE FROM {THREADS_TABLE} WHERE closed = 1 AND updated_at < ?",
            (thread.updated_at - CLOSED_THREAD_KEEP_SECONDS,),
        )
    insert(db, stored_commands)
    return stored_commands


def mark_shown(
    db: sqlite3.Connection, thread_id: str, version: int, message_id: int | None, digest: str
) -> None:
    """The job of `Queue.thread_shown`."""
    db.execute(
        f"""UPDATE {THREADS_TABLE} SET
            digest = CASE WHEN ? >= shown THEN ? ELSE digest END,
            shown = max(shown, ?), message_id = ifnull(message_id, ?) WHERE id = ?""",
        (version, digest, version, message_id, thread_id),
    )


def mark_gone(db: sqlite3.Connection, thread_id: str, message_id: int) -> None:
    """The job of `Queue.thread_message_gone`."""
    db.execute(
        f"""UPDATE {THREADS_TABLE} SET message_id = NULL, digest = NULL
            WHERE id = ? AND message_id = ?""",
        (thread_id, message_id),
    )


_UPDATE: Final = f"""UPDATE {THREADS_TABLE} SET version = ?, pending = ?, closed = ?,
    updated_at = ?, state = ? WHERE id = ?"""

#: A thread's stored version and the worker's fields, with its pending command's status.
_STORED: Final = f"""SELECT t.version, t.pending, t.message_id, t.shown, t.digest,
        c.status AS pending_status
    FROM {THREADS_TABLE} AS t LEFT JOIN commands AS c ON c.id = t.pending WHERE t.id = ?"""
