"""The media stores: one contract run against the disk store and the PostgreSQL store (content
addressing, reading back, file_ids, collection of files no command refers to any more), then
what is particular to each (permissions on disk; chunk rows, aborted and abandoned uploads,
and two replicas sharing files on PostgreSQL)."""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiogram.types import BufferedInputFile
from prometheus_client import CollectorRegistry

from gateway.commands import Command
from gateway.config import MediaSettings
from gateway.media.service import ByteBudget, MediaService
from gateway.media.store import MediaStore, StreamedInputFile
from gateway.media.store_disk import DiskMediaStore
from gateway.media.store_pg import PgMediaStore
from gateway.ops.migrate import migrate_queue
from gateway.queue.base import Queue
from gateway.queue.memory import MemoryQueue
from gateway.queue.postgres import PostgresQueue
from gateway.queue.sqlite import SqliteQueue

MB = 1024 * 1024
HOUR = 3600.0


@dataclass
class Backend:
    store: MediaStore
    queue: Queue


@pytest.fixture(params=["disk", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    queue: Queue
    store: MediaStore
    if request.param == "postgres":
        pg = PostgresQueue(request.getfixturevalue("pg_dsn"))
        queue, store = pg, PgMediaStore(pg)
    else:
        queue, store = MemoryQueue(), DiskMediaStore(tmp_path / "media")
    await queue.open()
    await store.open()
    try:
        yield Backend(store, queue)
    finally:
        await store.close()
        await queue.close()


async def stored(store: MediaStore, data: bytes, piece: int = 256 * 1024) -> str:
    upload = store.begin()
    for start in range(0, len(data), piece):
        await upload.write(data[start : start + piece])
    return (await store.commit(upload)).sha256


def blob(size: int, salt: int = 0) -> bytes:
    return bytes((i * 7 + salt) % 251 for i in range(251)) * (size // 251) + b"!" * (size % 251)


async def exists_in(queue: Queue, command_id: str) -> bool:
    return await queue.get(command_id) is not None


# --- the contract -----------------------------------------------------------------------------


async def test_same_bytes_are_one_file_read_back_identical(backend: Backend) -> None:
    store = backend.store
    small, large = b"graph", blob(int(2.5 * MB))
    assert await stored(store, small) == await stored(store, small)
    sha = await stored(store, large)
    assert await store.size(sha) == len(large)
    assert await store.read(sha) == large
    assert b"".join([chunk async for chunk in store.chunks(sha)]) == large
    assert await store.size("0" * 64) is None and await store.read("0" * 64) is None


async def test_small_files_are_sent_from_memory_large_ones_streamed(backend: Backend) -> None:
    store = backend.store
    small, large = blob(1000), blob(3 * MB, salt=1)
    small_sha, large_sha = await stored(store, small), await stored(store, large)
    buffered = await store.input_file(small_sha, "a.png", len(small))
    assert isinstance(buffered, BufferedInputFile) and buffered.data == small
    streamed = await store.input_file(large_sha, "b.bin", len(large))
    assert isinstance(streamed, StreamedInputFile) and streamed.filename == "b.bin"
    assert b"".join([c async for c in streamed.read(None)]) == large  # type: ignore[arg-type]
    assert await store.input_file("f" * 64, "gone.bin", 5 * MB) is None


async def test_file_ids_are_remembered_per_kind(backend: Backend) -> None:
    store = backend.store
    sha = await stored(store, b"x")
    assert await store.file_id(sha, "photo") is None
    await store.remember_file_id(sha, "photo", "AgACabc")
    assert await store.file_id(sha, "photo") == "AgACabc"
    assert await store.file_id(sha, "document") is None
    with pytest.raises(ValueError):
        await store.file_id("../../etc/passwd", "photo")


async def test_collect_deletes_files_whose_commands_are_gone(backend: Backend) -> None:
    store, queue = backend.store, backend.queue
    kept_sha = await stored(store, b"kept")
    orphan_sha = await stored(store, blob(2 * MB, salt=2))
    unlinked_sha = await stored(store, b"never linked")
    command = Command(method="sendPhoto", params={"chat_id": 1, "photo": "attach://p"})
    await queue.put([command])
    await store.link(kept_sha, command.id)
    await store.link(orphan_sha, "cmd_never_queued")  # its request failed after the upload
    await store.remember_file_id(orphan_sha, "photo", "AgACold")

    async def exists(command_id: str) -> bool:
        return await exists_in(queue, command_id)

    # Within the grace period nothing goes: a file may be being linked and queued right now.
    assert await store.collect(exists, HOUR, time.time()) == 0
    assert await store.size(orphan_sha) is not None
    # Later, the files no existing command refers to are deleted, with their file_ids.
    assert await store.collect(exists, HOUR, time.time() + 2 * HOUR) == 2
    assert await store.read(kept_sha) == b"kept"
    assert await store.size(orphan_sha) is None and await store.size(unlinked_sha) is None
    assert await store.file_id(orphan_sha, "photo") is None
    # The same bytes uploaded again are a new file, readable as before.
    assert await stored(store, blob(2 * MB, salt=2)) == orphan_sha
    assert await store.read(orphan_sha) == blob(2 * MB, salt=2)


async def test_retention_deleting_a_command_lets_its_file_go(backend: Backend) -> None:
    store, queue = backend.store, backend.queue
    sha = await stored(store, blob(1500, salt=3))
    old = time.time() - 2 * HOUR
    command = Command("sendDocument", {"chat_id": 1, "document": "attach://d"}, created_at=old)
    await store.link(sha, command.id)
    await queue.put([command])
    assert await queue.claim(command.lane, old) is not None
    await queue.complete(command.id, {"message_id": 1}, old)

    async def exists(command_id: str) -> bool:
        return await exists_in(queue, command_id)

    later = time.time() + 2 * HOUR
    assert await store.collect(exists, HOUR, later) == 0  # its command is kept: so is the file
    assert await queue.prune(time.time() - HOUR, 100) == 1  # retention deletes the command
    assert await store.collect(exists, HOUR, later) == 1
    assert await store.size(sha) is None


async def test_the_service_collects_through_the_queue(backend: Backend) -> None:
    service = MediaService(backend.store, MediaSettings(), CollectorRegistry())
    sha = await stored(backend.store, b"orphan")
    await backend.store.link(sha, "cmd_gone")
    assert await service.collect(backend.queue, grace=-1.0) == 1
    assert await backend.store.size(sha) is None


# --- the disk store ---------------------------------------------------------------------------


async def test_disk_files_are_readable_only_by_the_gateway(tmp_path: Path) -> None:
    store = DiskMediaStore(tmp_path / "media")
    await store.open()
    first = await stored(store, b"graph")
    path = store.path(first)
    assert path is not None and path.read_bytes() == b"graph"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "media").stat().st_mode) == 0o700
    assert [p.name for p in (tmp_path / "media").iterdir()] == [first]  # no temporary left
    assert store.path("../../etc/passwd") is None


async def test_a_crash_mid_upload_leaves_nothing_on_disk(tmp_path: Path) -> None:
    store = DiskMediaStore(tmp_path)
    await store.open()
    upload = store.begin()
    await upload.write(b"half a file")  # the process dies here: never committed
    upload.finish()  # (what the dying process had flushed; the handle closes with it)
    await DiskMediaStore(tmp_path).open()  # the next start
    assert list(tmp_path.iterdir()) == []


# --- the PostgreSQL store ---------------------------------------------------------------------


async def table_counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("media_files", "media_chunks", "media_links", "media_file_ids")
        }
    finally:
        await conn.close()


async def replica(dsn: str) -> tuple[PostgresQueue, PgMediaStore]:
    queue = PostgresQueue(dsn)
    await queue.open()
    store = PgMediaStore(queue)
    await store.open()
    return queue, store


async def test_pg_files_are_chunk_rows_and_replicas_share_them(pg_dsn: str) -> None:
    queue_a, store_a = await replica(pg_dsn)
    queue_b, store_b = await replica(pg_dsn)
    try:
        data = blob(int(2.5 * MB), salt=5)
        sha = await stored(store_a, data)
        assert await table_counts(pg_dsn) == {
            "media_files": 1,
            "media_chunks": 3,  # 1 MB, 1 MB, 0.5 MB
            "media_links": 0,
            "media_file_ids": 0,
        }
        # Accepted by replica A, read by replica B; B's file_id is A's to reuse.
        assert await store_b.read(sha) == data
        await store_b.remember_file_id(sha, "document", "BQACdoc")
        assert await store_a.file_id(sha, "document") == "BQACdoc"
        # The same bytes committed on both replicas at once: one file, one set of chunks.
        other = blob(int(1.5 * MB), salt=6)
        shas = await asyncio.gather(stored(store_a, other), stored(store_b, other))
        assert shas[0] == shas[1]
        await store_a.close()
        await store_b.close()
        assert (await table_counts(pg_dsn))["media_chunks"] == 5
        assert await store_b.read(shas[0]) == other
    finally:
        await queue_a.close()
        await queue_b.close()


async def test_pg_aborted_and_abandoned_uploads_leave_no_rows(pg_dsn: str) -> None:
    queue, store = await replica(pg_dsn)
    try:
        aborted = store.begin()
        await aborted.write(blob(3 * MB))  # e.g. over the size limit: 413, then abort
        aborted.abort()
        await store.close()  # the deletion runs in the background; wait for it
        assert (await table_counts(pg_dsn))["media_chunks"] == 0
        # A replica killed mid-upload never aborts: its chunks wait for the collector.
        abandoned = store.begin()
        await abandoned.write(blob(2 * MB))
        assert (await table_counts(pg_dsn))["media_chunks"] == 2

        async def never(command_id: str) -> bool:
            raise AssertionError("PostgreSQL joins the commands table itself")

        assert await store.collect(never, HOUR, time.time()) == 0
        assert (await table_counts(pg_dsn))["media_chunks"] == 2  # maybe still arriving
        await store.collect(never, HOUR, time.time() + 2 * HOUR)
        assert (await table_counts(pg_dsn))["media_chunks"] == 0
    finally:
        await queue.close()


async def test_migrate_queue_carries_the_files_of_the_commands_it_moves(
    pg_dsn: str, tmp_path: Path
) -> None:
    disk = DiskMediaStore(tmp_path / "media")
    await disk.open()
    data = blob(int(1.5 * MB), salt=9)
    sha = await stored(disk, data)
    old = SqliteQueue(tmp_path / "gateway.db")
    await old.open()
    photo = Command("sendDocument", {"chat_id": 1, "document": "attach://d"})
    photo.meta["media"] = {
        "d": {
            "sha256": sha,
            "size": len(data),
            "filename": "r.bin",
            "mime_type": "application/octet-stream",
        }
    }
    lost = Command("sendDocument", {"chat_id": 2, "document": "attach://d"})
    lost.meta["media"] = {
        "d": {
            "sha256": "e" * 64,
            "size": 1,
            "filename": "gone.bin",
            "mime_type": "application/octet-stream",
        }
    }
    await disk.link(sha, photo.id)
    await old.put([photo, lost])
    await old.close()

    moved = await migrate_queue(tmp_path / "gateway.db", pg_dsn, time.time())
    assert (moved.queued, moved.files) == (2, 1)
    queue, store = await replica(pg_dsn)
    try:
        assert await store.read(sha) == data
        assert await store.size("e" * 64) is None  # missing on disk: its command will fail
        assert (await table_counts(pg_dsn))["media_links"] == 1
        again = await migrate_queue(tmp_path / "gateway.db", pg_dsn, time.time())
        assert (again.skipped, again.files) == (2, 0)
    finally:
        await queue.close()


async def test_bytes_in_flight_are_bounded() -> None:
    budget = ByteBudget(100)
    order: list[str] = []

    async def upload(name: str, size: int, hold: asyncio.Event) -> None:
        async with budget.hold(size):
            order.append(f"start {name}")
            await hold.wait()
        order.append(f"end {name}")

    release_a, release_b = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(upload("a", 70, release_a))
    await asyncio.sleep(0)
    second = asyncio.create_task(upload("b", 50, release_b))  # 120 > 100: waits for "a"
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["start a"] and budget.used == 70
    release_a.set()
    release_b.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert order == ["start a", "end a", "start b", "end b"] and budget.used == 0
