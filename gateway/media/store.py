"""Where accepted files live until their commands are gone: a small store behind one interface.

Files are content-addressed (SHA-256 of their bytes), so the same bytes sent twice are stored
once, and the `file_id` Telegram returned for them the first time can be reused. A file is
*linked* to every command that refers to it; `collect` deletes the files no existing command
links any more (retention deleted them, or the request that uploaded them never got queued).

`DiskMediaStore` keeps everything in one directory (used with the sqlite and memory queues):
`<sha>` holds the bytes (0600, fsynced, renamed into place), `<sha>.refs/<command id>` marks a
link, `<sha>.ids/<kind>` a remembered file_id. A store for a shared database (PostgreSQL) would
implement the same methods over tables, so every replica can send every file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_SHA = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


@dataclass(frozen=True)
class StoredFile:
    """A file the store holds: its digest and size."""

    sha256: str
    size: int


class Upload:
    """One file being written: feed chunks, then `commit` (synced) or `abort`."""

    def __init__(self, directory: Path) -> None:
        fd_path = directory / f".upload-{os.getpid()}-{id(self):x}-{time.monotonic_ns()}"
        self._path = fd_path
        self._file = open(fd_path, "xb")  # noqa: SIM115 - closed by commit/abort
        os.chmod(fd_path, 0o600)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Append bytes (buffered; synced by `commit`)."""
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def finish(self) -> tuple[Path, str]:
        """Flush and fsync; the temporary path and the digest (blocking: run off the loop)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._path, self._hash.hexdigest()

    def abort(self) -> None:
        """Drop what was written."""
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._path.unlink()


class MediaStore(ABC):
    """Storage of accepted files, links to the commands using them and reusable file_ids."""

    @abstractmethod
    def begin(self) -> Upload:
        """Start writing a new file."""

    @abstractmethod
    async def commit(self, upload: Upload) -> StoredFile:
        """Make an upload durable (synced) under its digest; same bytes → same file."""

    @abstractmethod
    async def link(self, sha256: str, command_id: str) -> None:
        """Record, durably, that `command_id` refers to the file."""

    @abstractmethod
    def path(self, sha256: str) -> Path | None:
        """Where the bytes can be read, None when the file is gone."""

    @abstractmethod
    async def file_id(self, sha256: str, kind: str) -> str | None:
        """The file_id Telegram gave these bytes sent as `kind` (photo, document, ...)."""

    @abstractmethod
    async def remember_file_id(self, sha256: str, kind: str, file_id: str) -> None:
        """Keep Telegram's file_id for these bytes sent as `kind`."""

    @abstractmethod
    async def collect(
        self, exists: Callable[[str], Awaitable[bool]], grace: float, now: float
    ) -> int:
        """Delete files whose linked commands no longer exist (`exists` says), sparing links
        and files younger than `grace` seconds; how many files were deleted."""


class DiskMediaStore(MediaStore):
    """Files in one directory on the gateway's disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def open(self) -> None:
        """Create the directory (0700) and clear uploads a crash left half-written."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in self.directory.glob(".upload-*"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def begin(self) -> Upload:
        return Upload(self.directory)

    async def commit(self, upload: Upload) -> StoredFile:
        try:
            return await asyncio.to_thread(self._commit, upload)
        except BaseException:
            upload.abort()
            raise

    def _commit(self, upload: Upload) -> StoredFile:
        temp, digest = upload.finish()
        final = self.directory / digest
        if final.exists():
            temp.unlink()
            os.utime(final)  # a fresh use: not collectable before its link is written
        else:
            os.replace(temp, final)
            _sync_dir(self.directory)
        return StoredFile(digest, upload.size)

    async def link(self, sha256: str, command_id: str) -> None:
        _check(sha256, command_id)
        await asyncio.to_thread(self._link, sha256, command_id)

    def _link(self, sha256: str, command_id: str) -> None:
        refs = self.directory / f"{sha256}.refs"
        refs.mkdir(exist_ok=True, mode=0o700)
        marker = refs / command_id
        fd = os.open(marker, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
        _sync_dir(refs)
        _sync_dir(self.directory)

    def path(self, sha256: str) -> Path | None:
        if not _SHA.match(sha256):
            return None
        found = self.directory / sha256
        return found if found.is_file() else None

    async def file_id(self, sha256: str, kind: str) -> str | None:
        _check(sha256, kind)
        try:
            return (self.directory / f"{sha256}.ids" / kind).read_text().strip() or None
        except OSError:
            return None

    async def remember_file_id(self, sha256: str, kind: str, file_id: str) -> None:
        _check(sha256, kind)
        ids = self.directory / f"{sha256}.ids"
        with contextlib.suppress(OSError):  # losing a file_id only costs a re-upload
            ids.mkdir(exist_ok=True, mode=0o700)
            temp = ids / f".{kind}.tmp"
            temp.write_text(file_id)
            os.replace(temp, ids / kind)

    async def collect(
        self, exists: Callable[[str], Awaitable[bool]], grace: float, now: float
    ) -> int:
        deleted = 0
        for entry in sorted(self.directory.iterdir()):
            if not _SHA.match(entry.name):
                continue
            refs = self.directory / f"{entry.name}.refs"
            live = 0
            markers = sorted(refs.iterdir()) if refs.is_dir() else []
            for marker in markers:
                if now - _mtime(marker) < grace or await exists(marker.name):
                    live += 1
                else:
                    marker.unlink(missing_ok=True)
            if live or now - _mtime(entry) < grace:
                continue
            entry.unlink(missing_ok=True)
            shutil.rmtree(refs, ignore_errors=True)
            shutil.rmtree(self.directory / f"{entry.name}.ids", ignore_errors=True)
            deleted += 1
        if deleted:
            logger.info("deleted %d file(s) no command refers to any more", deleted)
        return deleted


def _check(*names: str) -> None:
    for name in names:
        if not _NAME.match(name):
            raise ValueError(f"not a valid store name: {name!r}")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
