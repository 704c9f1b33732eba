"""Files in the queue's PostgreSQL database: every replica can send every file.

An upload streams into chunk rows of `[PG_MEDIA_CHUNK_BYTES]` as it arrives (one short
statement per chunk on a pooled connection: no connection is held while a slow client sends
its bytes), and `commit` writes the file row in one transaction before the request is
answered (PostgreSQL's commit flushes the WAL holding the chunks too). Reading takes one chunk
per statement, so sending a 50 MB file holds about one chunk in memory. The statements are in
gateway/queue/pg_media.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from gateway import constants as c
from gateway.media.store import MediaStore, StoredFile, Upload, check_names
from gateway.queue import pg_media
from gateway.queue.postgres import PostgresQueue

logger = logging.getLogger(__name__)


class PgUpload(Upload):
    """One file streaming into chunk rows of a new blob (invisible until committed)."""

    def __init__(self, store: PgMediaStore, chunk_bytes: int) -> None:
        self._store = store
        self._chunk_bytes = chunk_bytes
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self.size = 0
        self.blob: int | None = None
        self._chunks = 0

    async def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        self._buffer += chunk
        while len(self._buffer) >= self._chunk_bytes:
            await self._flush(self._chunk_bytes)

    async def finish(self) -> tuple[int, str]:
        """Write what is buffered; the blob and the digest."""
        if self._buffer:
            await self._flush(len(self._buffer))
        if self.blob is None:  # an empty file: a blob without chunks
            async with self._store.queue.connection() as conn:
                self.blob = await pg_media.new_blob(conn)
        return self.blob, self._hash.hexdigest()

    async def _flush(self, size: int) -> None:
        with memoryview(self._buffer) as view:
            piece = bytes(view[:size])  # one copy (a slice of the bytearray would be two)
        del self._buffer[:size]
        async with self._store.queue.connection() as conn:
            self.blob = await pg_media.write_chunk(
                conn, self.blob, self._chunks, piece, time.time()
            )
        self._chunks += 1

    def abort(self) -> None:
        self._buffer.clear()
        if self.blob is not None:
            self._store.drop_later(self.blob)
            self.blob = None


class PgMediaStore(MediaStore):
    """Files in the tables of the PostgreSQL queue (opened, and migrated, by the queue)."""

    def __init__(self, queue: PostgresQueue, chunk_bytes: int = c.PG_MEDIA_CHUNK_BYTES) -> None:
        self.queue = queue
        self._chunk_bytes = chunk_bytes
        #: Deletions of aborted uploads' chunks, running (a reference keeps each alive).
        self._drops: set[asyncio.Task[None]] = set()

    def begin(self) -> PgUpload:
        return PgUpload(self, self._chunk_bytes)

    async def commit(self, upload: Upload) -> StoredFile:
        if not isinstance(upload, PgUpload):
            raise TypeError("not an upload of this store")
        try:
            blob, digest = await upload.finish()
            async with self.queue.connection() as conn:
                await pg_media.commit_file(conn, digest, blob, upload.size, time.time())
        except BaseException:
            upload.abort()
            raise
        return StoredFile(digest, upload.size)

    def drop_later(self, blob: int) -> None:
        """Delete an aborted upload's chunks in the background (`collect` catches a miss)."""
        task = asyncio.get_running_loop().create_task(self._drop(blob))
        self._drops.add(task)
        task.add_done_callback(self._drops.discard)

    async def _drop(self, blob: int) -> None:
        try:
            async with self.queue.connection() as conn:
                await pg_media.drop_blob(conn, blob)
        except Exception as exc:  # collect deletes them later
            logger.warning("could not delete an aborted upload's chunks yet: %r", exc)

    async def link(self, sha256: str, command_id: str) -> None:
        check_names(sha256, command_id)
        async with self.queue.connection() as conn:
            await pg_media.link(conn, sha256, command_id, time.time())

    async def size(self, sha256: str) -> int | None:
        async with self.queue.connection() as conn:
            row = await pg_media.file_row(conn, sha256)
        return None if row is None else row[1]

    async def chunks(self, sha256: str) -> AsyncIterator[bytes]:
        async with self.queue.connection() as conn:
            row = await pg_media.file_row(conn, sha256)
        if row is None:
            return
        blob, size = row
        n = read = 0
        while read < size:
            # A connection per chunk: none is held while the consumer (Telegram) reads.
            async with self.queue.connection() as conn:
                data = await pg_media.chunk(conn, blob, n)
            if data is None:
                raise OSError(f"file {sha256[:12]} is missing chunk {n} of its {size} bytes")
            read += len(data)
            n += 1
            yield data

    async def read(self, sha256: str) -> bytes | None:
        # Small files (sent whole): one connection for the row and its chunk(s).
        async with self.queue.connection() as conn:
            row = await pg_media.file_row(conn, sha256)
            if row is None:
                return None
            blob, size = row
            data = b"".join(await pg_media.all_chunks(conn, blob))
        if len(data) != size:
            raise OSError(f"file {sha256[:12]} has {len(data)} of its {size} bytes")
        return data

    async def file_id(self, sha256: str, kind: str) -> str | None:
        check_names(sha256, kind)
        async with self.queue.connection() as conn:
            return await pg_media.file_id(conn, sha256, kind)

    async def remember_file_id(self, sha256: str, kind: str, file_id: str) -> None:
        check_names(sha256, kind)
        async with self.queue.connection() as conn:
            await pg_media.remember_file_id(conn, sha256, kind, file_id)

    async def collect(
        self, exists: Callable[[str], Awaitable[bool]], grace: float, now: float
    ) -> int:
        # `exists` is not needed: the commands are in the same database, joined in SQL.
        async with self.queue.connection() as conn:
            deleted = await pg_media.collect(conn, now - grace)
        if deleted:
            logger.info("deleted %d file(s) no command refers to any more", deleted)
        return deleted or 0

    async def close(self) -> None:
        """Wait for the deletions of aborted uploads still running."""
        if self._drops:
            await asyncio.gather(*self._drops, return_exceptions=True)
