"""Where accepted files live until their commands are gone: one interface, one store per backend.

Files are content-addressed (SHA-256 of their bytes), so the same bytes sent twice are stored
once, and the `file_id` Telegram returned for them the first time can be reused. A file is
*linked* to every command that refers to it; `collect` deletes the files no existing command
links any more (retention deleted them, or the request that uploaded them never got queued).

Two stores implement it:
- `gateway.media.store_disk.DiskMediaStore`: one directory on the gateway's disk (the sqlite
  and memory queues: one process sends what it accepted);
- `gateway.media.store_pg.PgMediaStore`: tables in the queue's PostgreSQL database, so a file
  accepted by any replica can be sent by whichever replica leads.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiogram.types import BufferedInputFile, InputFile

from gateway import constants as c

if TYPE_CHECKING:
    from aiogram import Bot

_SHA = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


@dataclass(frozen=True)
class StoredFile:
    """A file the store holds: its digest and size."""

    sha256: str
    size: int


class Upload(ABC):
    """One file being written: `write` chunks, then the store's `commit` (durable) or `abort`."""

    size: int = 0

    @abstractmethod
    async def write(self, chunk: bytes) -> None:
        """Append bytes (made durable by the store's `commit`)."""

    @abstractmethod
    def abort(self) -> None:
        """Drop what was written (what cannot be dropped now is left to `collect`)."""


class MediaStore(ABC):
    """Storage of accepted files, links to the commands using them and reusable file_ids."""

    async def open(self) -> None:
        """Get ready (after the queue is open): create what is missing, clear leftovers."""
        return None

    async def close(self) -> None:
        """Finish background work (before the queue closes)."""
        return None

    @abstractmethod
    def begin(self) -> Upload:
        """Start writing a new file."""

    @abstractmethod
    async def commit(self, upload: Upload) -> StoredFile:
        """Make an upload durable under its digest; same bytes → same file."""

    @abstractmethod
    async def link(self, sha256: str, command_id: str) -> None:
        """Record, durably, that `command_id` refers to the file."""

    @abstractmethod
    async def size(self, sha256: str) -> int | None:
        """The file's size, None when the file is gone."""

    @abstractmethod
    def chunks(self, sha256: str) -> AsyncIterator[bytes]:
        """The file's bytes, a bounded chunk at a time (empty when the file is gone)."""

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

    async def read(self, sha256: str) -> bytes | None:
        """The whole file (small files only), None when it is gone."""
        if await self.size(sha256) is None:
            return None
        return b"".join([chunk async for chunk in self.chunks(sha256)])

    async def input_file(self, sha256: str, filename: str, size: int) -> InputFile | None:
        """The file as an upload for the Bot API (None when it is gone): read whole when small
        (streaming costs a hop per chunk, which slows every send and, through the flood
        control's settling, the send rate), streamed from the store otherwise."""
        if size <= c.MEDIA_IN_MEMORY_BYTES:
            data = await self.read(sha256)
            return None if data is None else BufferedInputFile(data, filename=filename)
        if await self.size(sha256) is None:
            return None
        return StreamedInputFile(self, sha256, filename)


class StreamedInputFile(InputFile):
    """A stored file streamed to Telegram as aiogram reads it (a chunk in memory at a time)."""

    def __init__(self, store: MediaStore, sha256: str, filename: str) -> None:
        super().__init__(filename=filename)
        self._store = store
        self._sha256 = sha256

    async def read(self, bot: Bot) -> AsyncGenerator[bytes, None]:
        async for chunk in self._store.chunks(self._sha256):
            yield chunk


def is_sha(value: str) -> bool:
    """A SHA-256 digest as the stores name files (64 lowercase hex digits)."""
    return bool(_SHA.match(value))


def check_names(*names: str) -> None:
    """ValueError unless each name is safe as a file name or key (digests, ids, kinds)."""
    for name in names:
        if not _NAME.match(name):
            raise ValueError(f"not a valid store name: {name!r}")
