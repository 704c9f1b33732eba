"""Files in the PostgreSQL queue's database (gateway/media/store_pg.py uses these statements).

A file is a row of `media_files` (digest, size, and the *blob* holding its bytes) and rows of
`media_chunks` (the blob's bytes, ~1 MB each, in order). Chunks are written one statement at a
time as an upload streams in, under a blob number no file row names yet: invisible, and left
to `collect` if the upload never completes. The file row is written last, in its own
transaction, before the request is answered; the same bytes stored twice keep the first blob
(the second upload's chunks are deleted in that same transaction).

Chunks are bytea of ~1 MB stored `EXTERNAL` (out of line, not compressed: photos, videos and
PDFs are compressed already, and pglz would only spend CPU finding that out). Large objects
would stream too, but live outside the tables (pg_largeobject), need lo_unlink or vacuumlo to
be freed and are not covered by ordinary row-level GRANTs; plain rows are deleted with a
DELETE, copied by pg_dump with the rest, and replicated like every other table.
"""

from __future__ import annotations

from typing import Final

from gateway import constants as c
from gateway.queue.pg_rows import Conn
from gateway.queue.schema import COMMANDS_TABLE

FILES_TABLE: Final = "media_files"
CHUNKS_TABLE: Final = "media_chunks"
LINKS_TABLE: Final = "media_links"
FILE_IDS_TABLE: Final = "media_file_ids"
BLOB_SEQUENCE: Final = "media_blob_seq"

#: PostgreSQL schema step adding the media tables (pg_schema.MIGRATIONS[4]).
MIGRATION: Final = (
    f"CREATE SEQUENCE {BLOB_SEQUENCE}",
    f"""CREATE TABLE {FILES_TABLE} (
        sha256 text PRIMARY KEY,
        blob bigint NOT NULL UNIQUE,
        size bigint NOT NULL,
        stored_at double precision NOT NULL
    )""",
    f"""CREATE TABLE {CHUNKS_TABLE} (
        blob bigint NOT NULL,
        n integer NOT NULL,
        data bytea NOT NULL,
        written_at double precision NOT NULL,
        PRIMARY KEY (blob, n)
    )""",
    f"ALTER TABLE {CHUNKS_TABLE} ALTER COLUMN data SET STORAGE EXTERNAL",
    f"""CREATE TABLE {LINKS_TABLE} (
        sha256 text NOT NULL,
        command_id text NOT NULL,
        linked_at double precision NOT NULL,
        PRIMARY KEY (sha256, command_id)
    )""",
    f"""CREATE TABLE {FILE_IDS_TABLE} (
        sha256 text NOT NULL,
        kind text NOT NULL,
        file_id text NOT NULL,
        PRIMARY KEY (sha256, kind)
    )""",
)


async def write_chunk(conn: Conn, blob: int | None, n: int, data: bytes, now: float) -> int:
    """Store chunk `n` of `blob` (a new blob when None); the blob."""
    written: int = await conn.fetchval(
        f"""INSERT INTO {CHUNKS_TABLE} (blob, n, data, written_at)
            VALUES (coalesce($1, nextval('{BLOB_SEQUENCE}')), $2, $3, $4) RETURNING blob""",
        blob,
        n,
        data,
        now,
    )
    return written


async def new_blob(conn: Conn) -> int:
    """A blob number for a file without chunks (empty)."""
    blob: int = await conn.fetchval(f"SELECT nextval('{BLOB_SEQUENCE}')")
    return blob


async def commit_file(conn: Conn, sha256: str, blob: int, size: int, now: float) -> int:
    """Make the file visible (one transaction); the blob it is stored in. When the same
    bytes were stored already, that blob is kept (made young again: not collectable before
    its new link is written) and `blob`'s chunks are deleted."""
    async with conn.transaction():
        kept: int = await conn.fetchval(
            f"""INSERT INTO {FILES_TABLE} (sha256, blob, size, stored_at)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (sha256) DO UPDATE SET stored_at = excluded.stored_at
                RETURNING blob""",
            sha256,
            blob,
            size,
            now,
        )
        if kept != blob:
            await drop_blob(conn, blob)
    return kept


async def drop_blob(conn: Conn, blob: int) -> None:
    """Delete the chunks of a blob no file row names (an upload aborted or superseded)."""
    await conn.execute(
        f"""DELETE FROM {CHUNKS_TABLE} WHERE blob = $1
            AND NOT EXISTS (SELECT 1 FROM {FILES_TABLE} WHERE blob = $1)""",
        blob,
    )


async def file_row(conn: Conn, sha256: str) -> tuple[int, int] | None:
    """(blob, size) of a stored file."""
    row = await conn.fetchrow(f"SELECT blob, size FROM {FILES_TABLE} WHERE sha256 = $1", sha256)
    return None if row is None else (row["blob"], row["size"])


async def chunk(conn: Conn, blob: int, n: int) -> bytes | None:
    """Chunk `n` of a blob, None past its end."""
    data: bytes | None = await conn.fetchval(
        f"SELECT data FROM {CHUNKS_TABLE} WHERE blob = $1 AND n = $2", blob, n
    )
    return data


async def all_chunks(conn: Conn, blob: int) -> list[bytes]:
    """Every chunk of a blob, in order (small files only: they are held in memory)."""
    rows = await conn.fetch(f"SELECT data FROM {CHUNKS_TABLE} WHERE blob = $1 ORDER BY n", blob)
    return [row["data"] for row in rows]


async def link(conn: Conn, sha256: str, command_id: str, now: float) -> None:
    await conn.execute(
        f"""INSERT INTO {LINKS_TABLE} (sha256, command_id, linked_at) VALUES ($1, $2, $3)
            ON CONFLICT (sha256, command_id) DO UPDATE SET linked_at = excluded.linked_at""",
        sha256,
        command_id,
        now,
    )


async def file_id(conn: Conn, sha256: str, kind: str) -> str | None:
    found: str | None = await conn.fetchval(
        f"SELECT file_id FROM {FILE_IDS_TABLE} WHERE sha256 = $1 AND kind = $2", sha256, kind
    )
    return found


async def remember_file_id(conn: Conn, sha256: str, kind: str, value: str) -> None:
    await conn.execute(
        f"""INSERT INTO {FILE_IDS_TABLE} (sha256, kind, file_id) VALUES ($1, $2, $3)
            ON CONFLICT (sha256, kind) DO UPDATE SET file_id = excluded.file_id""",
        sha256,
        kind,
        value,
    )


async def collect(conn: Conn, cut: float) -> int | None:
    """Delete links to commands that are gone, files no link names, and chunks no file
    names, each last touched before `cut`; how many files were deleted. One replica at a
    time (the others find the lock taken and answer None): it is safe on every replica,
    and needless twice."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", c.PG_MEDIA_LOCK):
            return None
        await conn.execute(
            f"""DELETE FROM {LINKS_TABLE} l WHERE linked_at < $1
                AND NOT EXISTS (SELECT 1 FROM {COMMANDS_TABLE} WHERE id = l.command_id)""",
            cut,
        )
        gone = await conn.fetch(
            f"""DELETE FROM {FILES_TABLE} f WHERE stored_at < $1
                AND NOT EXISTS (SELECT 1 FROM {LINKS_TABLE} WHERE sha256 = f.sha256)
                RETURNING sha256""",
            cut,
        )
        if gone:
            await conn.execute(
                f"DELETE FROM {FILE_IDS_TABLE} WHERE sha256 = ANY($1::text[])",
                [row["sha256"] for row in gone],
            )
        # Chunks of deleted files, and of uploads that never completed (a crash, an abort
        # whose clean-up did not run): blobs whose newest chunk is older than `cut`.
        await conn.execute(
            f"""DELETE FROM {CHUNKS_TABLE} WHERE blob IN (
                    SELECT blob FROM {CHUNKS_TABLE} GROUP BY blob HAVING max(written_at) < $1
                    EXCEPT SELECT blob FROM {FILES_TABLE})""",
            cut,
        )
    return len(gone)
