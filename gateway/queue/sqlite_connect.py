"""Opening the SQLite queue's file: the connection, its pragmas, the schema, the highest seq.

Runs in the queue's database thread (sqlite3 objects stay in the thread that made them).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final, Literal
from urllib.parse import quote

from gateway import constants as c
from gateway.errors import StartupError
from gateway.queue import files
from gateway.queue.schema import COMMANDS_TABLE, migrate
from gateway.queue.storage import StorageWatch

#: Bound of SQLite's page cache, in KiB (the queue's memory does not grow with its depth).
CACHE_KIB: Final = 8000

Synchronous = Literal["FULL", "NORMAL", "EXTRA"]


def connect(
    path: Path, synchronous: Synchronous, read_only: bool, storage: StorageWatch
) -> tuple[sqlite3.Connection, int]:
    """Open, configure, migrate; the connection and the highest seq in the file."""
    timeout = c.QUEUE_BUSY_TIMEOUT_SECONDS
    if read_only:
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=timeout)
    else:
        files.make_private(path)
        # isolation_level=None: transactions are ours (BEGIN IMMEDIATE ... COMMIT).
        db = sqlite3.connect(path, isolation_level=None, timeout=timeout)
    try:
        db.row_factory = sqlite3.Row
        if not read_only:  # a look changes nothing
            files.use_incremental_vacuum(db, path)
        configure(db, path, synchronous)
        migrate(db, path)
        row = db.execute(f"SELECT ifnull(max(seq), 0) FROM {COMMANDS_TABLE}").fetchone()
        storage.opened(db)
    except BaseException:
        db.close()
        raise
    return db, int(row[0])


def configure(db: sqlite3.Connection, path: Path, synchronous: Synchronous) -> None:
    """WAL, the synchronous level, a bounded page cache and a bounded log."""
    row = db.execute("PRAGMA journal_mode = WAL").fetchone()
    mode = row[0] if row else None
    if mode != "wal":
        raise StartupError(f"the queue database {path} cannot use WAL (mode {mode})")
    # FULL is NORMAL plus a sync of the log after each commit, done by the sync thread.
    level = "NORMAL" if synchronous == "FULL" else synchronous
    db.execute(f"PRAGMA synchronous = {level}")
    db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    # A checkpointed log shrinks back to this size, so the reserve covers the next one.
    db.execute(f"PRAGMA journal_size_limit = {c.QUEUE_RESERVE_BYTES}")
