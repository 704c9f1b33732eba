"""The disk media store: content addressing, durability details, and collection of files no
command refers to any more (what retention's deletions of commands lead to)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.commands import Command
from gateway.config import MediaSettings
from gateway.media.service import ByteBudget, MediaService
from gateway.media.store import DiskMediaStore
from gateway.queue.memory import MemoryQueue


async def stored(store: DiskMediaStore, data: bytes) -> str:
    upload = store.begin()
    upload.write(data)
    return (await store.commit(upload)).sha256


async def test_same_bytes_are_one_file_readable_only_by_the_gateway(tmp_path: Path) -> None:
    store = DiskMediaStore(tmp_path / "media")
    store.open()
    first = await stored(store, b"graph")
    second = await stored(store, b"graph")
    assert first == second
    path = store.path(first)
    assert path is not None and path.read_bytes() == b"graph"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "media").stat().st_mode) == 0o700
    assert [p.name for p in (tmp_path / "media").iterdir()] == [first]  # no temporary left
    assert store.path("../../etc/passwd") is None


async def test_file_ids_are_remembered_per_kind(tmp_path: Path) -> None:
    store = DiskMediaStore(tmp_path)
    store.open()
    sha = await stored(store, b"x")
    assert await store.file_id(sha, "photo") is None
    await store.remember_file_id(sha, "photo", "AgACabc")
    assert await store.file_id(sha, "photo") == "AgACabc"
    assert await store.file_id(sha, "document") is None


async def test_a_crash_mid_upload_leaves_nothing_behind(tmp_path: Path) -> None:
    store = DiskMediaStore(tmp_path)
    store.open()
    upload = store.begin()
    upload.write(b"half a file")  # the process dies here: never committed
    upload.finish()  # (what the dying process had flushed; the handle closes with it)
    DiskMediaStore(tmp_path).open()  # the next start
    assert list(tmp_path.iterdir()) == []


async def test_collect_deletes_files_whose_commands_are_gone(tmp_path: Path) -> None:
    queue = MemoryQueue()
    await queue.open()
    service = MediaService(DiskMediaStore(tmp_path), MediaSettings(), CollectorRegistry())
    await service.open()
    store = service.store
    assert isinstance(store, DiskMediaStore)
    kept_sha = await stored(store, b"kept")
    orphan_sha = await stored(store, b"orphan")
    young_sha = await stored(store, b"young")
    command = Command(method="sendPhoto", params={"chat_id": 1, "photo": "attach://p"})
    await queue.put([command])
    await store.link(kept_sha, command.id)
    await store.link(orphan_sha, "cmd_never_queued")  # its request failed after the upload
    await store.remember_file_id(orphan_sha, "photo", "AgACold")
    old = 1_000_000.0
    for path in tmp_path.rglob("*"):
        if young_sha not in path.name:
            os.utime(path, (old, old))
    assert await service.collect(queue, grace=3600) == 1
    assert store.path(kept_sha) is not None
    assert store.path(orphan_sha) is None
    assert not (tmp_path / f"{orphan_sha}.ids").exists()
    assert store.path(young_sha) is not None  # within the grace period: maybe being queued
    await service.close()


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
