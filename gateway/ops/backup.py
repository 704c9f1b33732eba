"""`gateway backup PATH`: a consistent copy of the SQLite queue, taken while the gateway runs.

SQLite's online backup API copies every page inside one read transaction: in WAL mode the
running gateway keeps writing meanwhile, and the copy is the database as of one commit, with
nothing half-written. The copy is created 0600 (it holds every message text) and never
overwrites a file. Run it as the gateway's user (SQLite may create the database's `-wal` and
`-shm` files when the gateway is stopped, and the gateway must be able to open them).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from gateway.errors import ConfigError
from gateway.queue.schema import COMMANDS_TABLE

#: How long to wait for a database another process is recovering or checkpointing.
BUSY_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class BackupInfo:
    """What `backup_database` wrote."""

    path: Path
    size: int
    commands: int
    schema_version: int


def open_read_only(path: Path) -> sqlite3.Connection:
    """The database for reading only: no write lock taken. (SQLite may still create the `-wal`
    and `-shm` files beside it when the gateway is stopped: run this as the gateway's user.)"""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)


def backup_database(source: Path, target: Path) -> BackupInfo:
    """Copy `source` (a live queue database) to the new file `target`, mode 0600."""
    if not source.is_file():
        raise ConfigError(f"{source}: no queue database there (see [queue] path)")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{target} already exists; choose a new file for the backup") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {target}: {exc.strerror}") from None
    os.fchmod(fd, 0o600)  # whatever the umask
    os.close(fd)
    try:
        try:
            src = open_read_only(source)
            dst = sqlite3.connect(target, isolation_level=None)
            try:
                src.backup(dst)  # all pages in one step: one snapshot
                # The copy stands alone: no WAL beside it, readable by any SQLite.
                dst.execute("PRAGMA journal_mode = DELETE")
                version = int(dst.execute("PRAGMA user_version").fetchone()[0])
                count = int(dst.execute(f"SELECT count(*) FROM {COMMANDS_TABLE}").fetchone()[0])
            finally:
                dst.close()
                src.close()
        except sqlite3.Error as exc:
            raise ConfigError(f"backup of {source} failed: {exc}") from None
        with target.open("rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return BackupInfo(target, target.stat().st_size, count, version)
