"""`gateway migrate-queue`: move a single-node SQLite queue to PostgreSQL, losing no work.

What moves: every command not delivered yet (`queued`, and `sending`, which goes back to
`queued`: it was interrupted), every question still awaiting its answer, the parts of split
messages already sent, and the commands whose idempotency key is still in its 24 h window (so
a client retrying after the move still gets its original answer). Acceptance order is kept:
the commands are inserted in their SQLite order, so each chat's lane keeps its order.

The SQLite file is opened read-only; commands already in PostgreSQL (same id) are skipped, so
the command can be run again after an interruption. Stop the SQLite gateway first: what it
accepts after the copy is not moved. The files the moved commands refer to are copied from the
`[media] dir` into PostgreSQL (where the replicas keep files) before the commands are.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway import constants as c
from gateway.commands import Command, Status
from gateway.errors import ConfigError
from gateway.media.store_copy import copy_files
from gateway.media.store_disk import DiskMediaStore
from gateway.media.store_pg import PgMediaStore
from gateway.queue.postgres import PostgresQueue
from gateway.queue.rows import command_from_row, load
from gateway.queue.schema import COLUMNS, COMMANDS_TABLE, PARTS_TABLE

#: Commands inserted per statement.
CHUNK: Final = 1000


@dataclass(frozen=True)
class Moved:
    """What `migrate_queue` copied."""

    queued: int
    questions: int
    #: Delivered or failed commands kept only for their idempotency key.
    keys_only: int
    parts: int
    #: Already in PostgreSQL (an earlier run): left as they are.
    skipped: int
    #: Files copied from the `[media] dir` into PostgreSQL.
    files: int = 0


async def migrate_queue(source: Path, dsn: str, now: float, media_dir: Path | None = None) -> Moved:
    """Copy the work in the SQLite queue at `source` into the PostgreSQL queue at `dsn`, with
    the files in `media_dir` (default: `media` next to `source`, as in `var/`)."""
    commands, parts = _read(source, now - c.IDEMPOTENCY_WINDOW_SECONDS)
    files = DiskMediaStore(media_dir or source.parent / c.MEDIA_DIR_NAME)
    target = PostgresQueue(dsn, pool_size=2)
    await target.open()  # creates or migrates the schema
    try:
        present = await target.existing([command.id for command in commands])
        fresh = [command for command in commands if command.id not in present]
        # Files first: a command is never in PostgreSQL without its file.
        copied = await copy_files(fresh, files, PgMediaStore(target))
        for start in range(0, len(fresh), CHUNK):
            await target.put(fresh[start : start + CHUNK])
        saved = 0
        for command_id, part, result, saved_at in parts:
            if command_id not in present:
                await target.save_part(command_id, part, result, saved_at)
                saved += 1
    finally:
        await target.close()
    return Moved(
        queued=sum(command.status is Status.QUEUED for command in fresh),
        questions=sum(command.status is Status.AWAITING_REPLY for command in fresh),
        keys_only=sum(command.status.final for command in fresh),
        parts=saved,
        skipped=len(commands) - len(fresh),
        files=copied,
    )


def _read(
    source: Path, keys_since: float
) -> tuple[list[Command], list[tuple[str, int, object, float]]]:
    """The commands to move, in acceptance order, and their saved parts."""
    if not source.is_file():
        raise ConfigError(f"no queue database at {source}")
    try:
        db = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open the queue database {source}: {exc}") from None
    try:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            f"""SELECT {COLUMNS} FROM {COMMANDS_TABLE}
                WHERE status IN ('queued', 'sending', 'awaiting_reply')
                   OR (idempotency_key IS NOT NULL AND created_at >= ?)
                ORDER BY seq""",
            (keys_since,),
        ).fetchall()
        commands = [command_from_row(row) for row in rows]
        for command in commands:
            if command.status is Status.SENDING:  # interrupted: delivered again
                command.status = Status.QUEUED
        ids = {command.id for command in commands}
        found = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (PARTS_TABLE,)
        ).fetchone()
        parts = []
        if found is not None:
            for row in db.execute(
                f"SELECT command_id, part, result, saved_at FROM {PARTS_TABLE} ORDER BY part"
            ):
                if row["command_id"] in ids:
                    parts.append(
                        (row["command_id"], row["part"], load(row["result"]), row["saved_at"])
                    )
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot read the queue database {source}: {exc}") from None
    finally:
        db.close()
    return commands, parts
