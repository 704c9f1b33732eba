"""One gateway per queue database: an exclusive lock on a file beside it.

SQLite's own locking lets two processes share a database; the queue does not (the writer
allots `seq`, and start-up recovery puts every `sending` command back in the queue, which
would re-send another live gateway's in-flight messages). So before the queue touches the
database it takes `flock(LOCK_EX | LOCK_NB)` on `<database>.lock` and writes who holds it.
The kernel releases the lock when the holder exits, SIGKILL included: no stale lock files.
A second gateway is refused with one line naming the holder (pid, host, since when).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from gateway.errors import StartupError


class InstanceLock:
    """The lock that makes a process the only gateway using a queue database."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StartupError naming who holds it."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StartupError(f"cannot open the queue database {self.database}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StartupError(
                f"the queue database {self.database} is in use by {holder} "
                f"(lock {self.path.name}); one gateway per database: stop that one first, "
                "or give this one another [queue] path"
            ) from None
        since = datetime.now(UTC).isoformat(timespec="seconds")
        note = f"gateway pid {os.getpid()} on {socket.gethostname()} since {since}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, note.encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let another gateway have the database (the file stays: removing it would race)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):  # a read-only disk keeps the stale note
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the last descriptor releases the flock


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another gateway (it has not written its name yet)"
