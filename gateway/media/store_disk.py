"""Files in one directory on the gateway's disk (the sqlite and memory queues).

`<sha>` holds the bytes (0600, fsynced, renamed into place), `<sha>.refs/<command id>` marks a
link, `<sha>.ids/<kind>` a remembered file_id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from gateway import constants as c
from gateway.media.store import MediaStore, StoredFile, Upload, check_names, is_sha

logger = logging.getLogger(__name__)


class DiskUpload(Upload):
    """One file being written to a temporary file in the store's directory."""

    def __init__(self, directory: Path) -> None:
        fd_path = directory / f".upload-{os.getpid()}-{id(self):x}-{time.monotonic_ns()}"
        self._path = fd_path
        self._file = open(fd_path, "xb")  # noqa: SIM115 - closed by finish/abort
        os.chmod(fd_path, 0o600)
        self._hash = hashlib.sha256()
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        # Buffered and small (a chunk): cheaper on the loop than a thread hop.
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
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._path.unlink()


class DiskMediaStore(MediaStore):
    """Files in one directory on the gateway's disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def open(self) -> None:
        await asyncio.to_thread(self.open_now)

    def open_now(self) -> None:
        """Create the directory (0700) and clear uploads a crash left half-written."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in self.directory.glob(".upload-*"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def begin(self) -> DiskUpload:
        return DiskUpload(self.directory)

    async def commit(self, upload: Upload) -> StoredFile:
        if not isinstance(upload, DiskUpload):
            raise TypeError("not an upload of this store")
        try:
            return await asyncio.to_thread(self._commit, upload)
        except BaseException:
            upload.abort()
            raise

    def _commit(self, upload: DiskUpload) -> StoredFile:
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
        check_names(sha256, command_id)
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
        """Where the bytes can be read, None when the file is gone."""
        if not is_sha(sha256):
            return None
        found = self.directory / sha256
        return found if found.is_file() else None

    async def size(self, sha256: str) -> int | None:
        path = self.path(sha256)
        try:
            return None if path is None else path.stat().st_size
        except OSError:
            return None

    async def chunks(self, sha256: str) -> AsyncIterator[bytes]:
        path = self.path(sha256)
        if path is None:
            return
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except OSError:
            return
        try:
            while chunk := await asyncio.to_thread(handle.read, c.MEDIA_CHUNK_BYTES):
                yield chunk
        finally:
            handle.close()

    async def read(self, sha256: str) -> bytes | None:
        path = self.path(sha256)
        try:
            return None if path is None else await asyncio.to_thread(path.read_bytes)
        except OSError:
            return None

    async def file_id(self, sha256: str, kind: str) -> str | None:
        check_names(sha256, kind)
        try:
            return (self.directory / f"{sha256}.ids" / kind).read_text().strip() or None
        except OSError:
            return None

    async def remember_file_id(self, sha256: str, kind: str, file_id: str) -> None:
        check_names(sha256, kind)
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
            if not is_sha(entry.name):
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
