"""Storage faults of the SQLite queue: what they are called, when they start and clear, and the
reserve that lets a full disk recover without a restart.

- `storage_error` turns what SQLite or the OS raised into a `StorageError` with a short reason
  (disk full, read-only, locked, I/O error), or None for an error that is a bug, not the disk.
- `StorageHealth` remembers the current problem: one WARNING when trouble starts, one INFO when
  it clears, whatever the number of requests that met it in between.
- `Reserve` is a file of a few MiB beside the database. When the disk fills up it is given up,
  so that SQLite can checkpoint its write-ahead log into the database and truncate it (a
  checkpoint needs room in the database file before it can free the log). It is created again
  once there is room for it and more, which is also when the queue reports itself healthy again.
- `FileIdentity` notices a database file deleted or replaced under the running gateway, which
  would otherwise go on writing to an unlinked inode that no restart will ever see.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Final

from gateway.errors import StorageError

logger = logging.getLogger(__name__)

#: SQLite result codes that mean the storage, not the SQL, is at fault (prefix match).
_SQLITE_REASONS = (
    ("SQLITE_FULL", "disk full"),
    ("SQLITE_READONLY", "read-only file system or database"),
    ("SQLITE_BUSY", "database locked by another process"),
    ("SQLITE_LOCKED", "database locked by another process"),
    ("SQLITE_IOERR", "disk I/O error"),
    ("SQLITE_CANTOPEN", "database file cannot be opened"),
    ("SQLITE_CORRUPT", "database file corrupt"),
    ("SQLITE_NOTADB", "database file corrupt"),
)
_OS_REASONS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system or database",
    errno.EIO: "disk I/O error",
    errno.ENOENT: "database file vanished",
}


def storage_error(exc: BaseException) -> StorageError | None:
    """The storage error `exc` means, or None when it is not the storage's fault (a bug)."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        for prefix, reason in _SQLITE_REASONS:
            if name.startswith(prefix):
                return StorageError(f"queue database: {exc}", reason)
        return None
    if isinstance(exc, OSError):
        reason = _OS_REASONS.get(exc.errno or 0, "I/O error")
        return StorageError(f"queue storage: {exc.strerror or exc}", reason)
    return None


def is_disk_full(exc: BaseException) -> bool:
    """True when `exc` says the disk (or the quota) is full."""
    error = storage_error(exc)
    return error is not None and error.reason in ("disk full", "disk quota exceeded")


class StorageHealth:
    """The current storage problem, if any; logs its start and its end once each."""

    def __init__(self, what: str) -> None:
        self._what = what
        self.problem: str | None = None
        self._since = 0.0

    def trouble(self, reason: str) -> None:
        """Storage failed with `reason` (called for every failure; logs on a change only)."""
        if self.problem == reason:
            return
        if self.problem is None:
            self._since = time.monotonic()
            logger.warning(
                "%s unavailable: %s; requests get 503 and deliveries wait until it recovers",
                self._what,
                reason,
            )
        else:  # a failing disk may alternate between errors: not worth a line each
            logger.debug("%s still unavailable, now: %s", self._what, reason)
        self.problem = reason

    def clear(self) -> None:
        """Storage works again."""
        if self.problem is None:
            return
        logger.info(
            "%s recovered after %.1fs (was: %s)",
            self._what,
            time.monotonic() - self._since,
            self.problem,
        )
        self.problem = None


class Reserve:
    """Space held back for the day the disk fills up (see the module's docstring)."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    def ensure(self) -> bool:
        """Create the reserve if it is missing and the disk has room for it and as much again;
        True when it is in place (always with a size of 0: no reserve wanted). On a small file
        system the reserve is an eighth of it at most, so that it can exist at all."""
        if self.size <= 0:
            return True
        try:
            stats = os.statvfs(self.path.parent)
            size = min(self.size, stats.f_blocks * stats.f_frsize // 8)
            with contextlib.suppress(FileNotFoundError):
                if self.path.stat().st_size >= size:
                    return True
            if stats.f_bavail * stats.f_frsize < 2 * size:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)  # really allocated, not a sparse file
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            logger.debug("cannot create the storage reserve %s: %s", self.path, exc)
            self.release()
            return False
        return True

    def release(self) -> bool:
        """Give the space back to the file system; True if there was a reserve to give."""
        try:
            self.path.unlink()
        except OSError:
            return False
        return True


class FileIdentity:
    """Which file a path named when the database was opened (device and inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        stat = path.stat()
        self._identity = (stat.st_dev, stat.st_ino)

    def vanished(self) -> bool:
        """True when the path no longer names the file that was opened (deleted, replaced)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return True
        return (stat.st_dev, stat.st_ino) != self._identity


VANISHED: Final = "database file vanished"


class StorageWatch:
    """The storage side of one queue database: its health, its reserve, its file's identity.

    Everything but `health` runs in the queue's database thread, with its connection.
    """

    def __init__(self, path: Path, reserve_bytes: int) -> None:
        self.path = path
        self.health = StorageHealth(f"the queue database {path}")
        self.reserve = Reserve(path.with_name(path.name + ".reserve"), reserve_bytes)
        self._identity: FileIdentity | None = None
        self._version = 0
        self._salvaged = False

    def opened(self, db: sqlite3.Connection) -> None:
        """The database is open: remember which file it is and its schema version."""
        self._version = int(db.execute("PRAGMA user_version").fetchone()[0])
        self._identity = FileIdentity(self.path)

    def reserve_at_start(self) -> None:
        if not self.reserve.ensure():
            logger.warning(
                "no room for the storage reserve %s (%d bytes) yet: until there is, a full disk "
                "may not recover by itself",
                self.reserve.path,
                self.reserve.size,
            )

    def make_room(self, db: sqlite3.Connection, exc: BaseException) -> None:
        """A write failed for lack of space: give up the reserve, checkpoint and truncate the
        log into the room it leaves (the log is reused from its start afterwards)."""
        if not is_disk_full(exc):
            return
        if self.reserve.release():
            logger.warning("disk full: released the storage reserve %s", self.reserve.path)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as error:
            logger.debug("checkpoint on a full disk failed: %s", error)

    def probe(self, db: sqlite3.Connection, thorough: bool, read_only: bool) -> None:
        """Raise StorageError if the storage is not usable. Cheap unless `thorough` (while in
        trouble): then checkpoint and write for real, and want the reserve back first."""
        self.check_identity(db)
        if read_only:
            return
        reserved = self.reserve.ensure()
        if not thorough:
            return
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            db.execute("BEGIN IMMEDIATE")
            try:  # rewriting the schema version dirties a page: a real, harmless write
                db.execute(f"PRAGMA user_version = {self._version}")
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            self._sync_log()  # a disk that cannot sync is not back either
        except (sqlite3.Error, OSError) as exc:
            self.make_room(db, exc)
            raise storage_error(exc) or exc from None
        if not reserved:
            raise StorageError("no room for the storage reserve yet", "disk full")

    def _sync_log(self) -> None:
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            fd = os.open(wal, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def check_identity(self, db: sqlite3.Connection) -> None:
        """Refuse to go on with a database file deleted or replaced under us; save a copy of
        what it held, once, for the operator to put back."""
        if self._identity is None or not self._identity.vanished():
            return
        if not self._salvaged:
            self._salvaged = True
            copy = self.path.with_name(f"{self.path.name}.vanished-{int(time.time())}")
            try:
                db.execute("VACUUM INTO ?", (str(copy),))
                copy.chmod(0o600)  # the messages: as private as the database
                saved = f"its contents were saved to {copy}"
            except (sqlite3.Error, OSError) as exc:
                saved = f"its contents could not be saved ({exc})"
            logger.error(
                "the queue database %s was deleted or replaced while open: writes are refused "
                "until the gateway restarts; %s (put it back at that path before restarting)",
                self.path,
                saved,
            )
        raise StorageError(f"the queue database {self.path} vanished", VANISHED)
