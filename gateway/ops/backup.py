"""`gateway backup PATH`: a consistent copy of the SQLite queue, taken while the gateway runs.

SQLite's online backup API copies every page inside one read transaction: in WAL mode the
running gateway keeps writing meanwhile, and the copy is the database as of one commit, with
nothing half-written. The copy is created 0600 (it holds every message text) and never
overwrites a file. Run it as the gateway's user (SQLite may create the database's `-wal` and
`-shm` files when the gateway is stopped, and the gateway must be able to open them).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from gateway.errors import ConfigError
from gateway.media.refs import META_KEY
from gateway.queue.schema import COMMANDS_TABLE

#: How the disk store names a file: its SHA-256 (gateway/media/store.py, which needs aiogram).
_SHA = re.compile(r"[0-9a-f]{64}")
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


@dataclass(frozen=True)
class MediaBackup:
    """What `backup_media` wrote: the directory, the files copied, the ones already gone."""

    directory: Path
    files: int
    size: int
    missing: int


def backup_media(snapshot: Path, media_dir: Path, target: Path) -> MediaBackup | None:
    """Copy the files the snapshot's undelivered commands need into the new directory `target`
    (laid out as `[media] dir` is: `<sha256>` and `<sha256>.refs/<command id>`), 0600/0700.

    Runs after `backup_database`: a file is written and synced before its command is committed
    and collected only after the command is final, so every file a command in the snapshot
    still needs is on disk — unless the command was delivered meanwhile (counted as missing;
    the restored gateway then fails that command with a clear error rather than losing it
    silently). None when no undelivered command holds a file.
    """
    needed: dict[str, set[str]] = {}
    db = sqlite3.connect(f"file:{quote(str(snapshot.resolve()))}?mode=ro", uri=True)
    try:
        rows = db.execute(
            f"SELECT id, meta FROM {COMMANDS_TABLE} WHERE status IN ('queued', 'sending') "
            "AND meta LIKE '%\"media\"%'"
        ).fetchall()
    finally:
        db.close()
    for command_id, meta in rows:
        for info in (json.loads(meta).get(META_KEY) or {}).values():
            sha = str(info.get("sha256", ""))
            if _SHA.fullmatch(sha):
                needed.setdefault(sha, set()).add(str(command_id))
    if not needed:
        return None
    try:
        target.mkdir(mode=0o700)
    except FileExistsError:
        raise ConfigError(f"{target} already exists; choose a new name for the backup") from None
    files = size = missing = 0
    for sha, commands in sorted(needed.items()):
        try:
            size += _copy_synced(media_dir / sha, target / sha)
        except FileNotFoundError:
            missing += 1
            continue
        files += 1
        refs = target / f"{sha}.refs"
        refs.mkdir(mode=0o700)
        for command_id in commands:
            os.close(os.open(refs / command_id, os.O_CREAT | os.O_WRONLY, 0o600))
    return MediaBackup(target, files, size, missing)


def _copy_synced(source: Path, target: Path) -> int:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
            fd = -1
            copied = 0
            while chunk := src.read(1024 * 1024):
                dst.write(chunk)
                copied += len(chunk)
            dst.flush()
            os.fsync(dst.fileno())
    except FileNotFoundError:
        target.unlink(missing_ok=True)
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    return copied
