"""The queue database's files: private modes, their size on disk, free pages handed back.

The database holds every message text, so it is created 0600 in a directory created 0700.
SQLite creates the -wal and -shm files with the database file's mode, so a database created
(or chmod'ed) 0600 gives 0600 companions; existing ones are chmod'ed too. This needs no
process-wide umask, which would race with other threads creating files.

Deleted commands give their pages back through incremental auto-vacuum: the file shrinks at
the next checkpoint instead of keeping its high-water mark forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

#: SQLite's `PRAGMA auto_vacuum` value for INCREMENTAL.
INCREMENTAL: Final = 2
#: The database file and its companions (write-ahead log, shared-memory index).
SUFFIXES: Final = ("", "-wal", "-shm")


def make_private(path: Path) -> None:
    """Create the database file 0600 (its directory 0700) if missing; chmod existing files
    that others could read."""
    make_directory(path)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
    for suffix in SUFFIXES:
        name = f"{path}{suffix}"
        with contextlib.suppress(FileNotFoundError):
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
                logger.info("queue database: %s was readable by others; now mode 0600", name)


def make_directory(path: Path) -> None:
    """Create the database's directory 0700 if it is missing (one that exists is left as
    it is: it may be shared, and its owner chose its mode)."""
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)  # whatever the umask


def size_on_disk(path: Path) -> int:
    """Bytes of the database file plus its write-ahead log."""
    total = 0
    for suffix in SUFFIXES[:2]:
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(f"{path}{suffix}").st_size
    return total


def use_incremental_vacuum(db: sqlite3.Connection, path: Path) -> None:
    """Turn on incremental auto-vacuum, before anything else touches the database.

    It takes effect when set before the first table is created; a database made by an older
    gateway needs one VACUUM (a copy of the whole file, outside any transaction), logged.
    """
    row = db.execute("PRAGMA auto_vacuum").fetchone()
    if row is not None and row[0] == INCREMENTAL:
        return
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    if tables is None or not tables[0]:
        return  # a new database: the first table is created incremental
    logger.warning(
        "queue database %s: converting to incremental auto-vacuum (a one-time VACUUM; "
        "this may take a while for a large database)",
        path,
    )
    started = time.monotonic()
    db.execute("VACUUM")
    logger.info("queue database %s: converted in %.1f s", path, time.monotonic() - started)


def give_back_free_pages(db: sqlite3.Connection, limit: int) -> None:
    """Hand up to `limit` free pages back to the file system (inside the caller's transaction).

    One page per statement: Python's `execute` steps `PRAGMA incremental_vacuum(N)` only once
    (one page), and `executescript` would commit the transaction it runs in.
    """
    row = db.execute("PRAGMA freelist_count").fetchone()
    for _ in range(min(row[0] if row else 0, limit)):
        db.execute("PRAGMA incremental_vacuum(1)")
