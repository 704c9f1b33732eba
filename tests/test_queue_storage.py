"""The SQLite queue under storage faults (disk full on a real tmpfs, a vanished file) and the
one-gateway-per-database lock, at the queue's level. End to end: tests/test_storage_faults.py."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.commands import Command, Status
from gateway.errors import StartupError, StorageError
from gateway.queue import SqliteQueue

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000.0


def message(chat: int = 1, text: str = "hi") -> Command:
    return Command("sendMessage", {"chat_id": chat, "text": text})


@pytest.fixture
def tmpfs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A tmpfs of our own (16 MiB, or the size the test's parameter says), unmounted afterwards
    (needs root, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the tests as root)")
    size = getattr(request, "param", "16m")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system of `directory` to the last block; the filler file's path."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12):
            for _ in range(1000):  # bounded: 16 MiB at most of each size
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("tmpfs", ["4m", "16m"], indirect=True)
async def test_disk_full_is_a_storage_error_and_heals_once_space_is_back(
    tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.queue")
    path = tmpfs / "queue.db"
    reserve = tmpfs / "queue.db.reserve"
    queue = SqliteQueue(path)
    await queue.open()
    try:
        total = os.statvfs(tmpfs).f_blocks * os.statvfs(tmpfs).f_frsize
        assert reserve.stat().st_size == min(4 * 1024 * 1024, total // 8)
        stored: list[Command] = []
        filler = fill(tmpfs)
        failure: StorageError | None = None
        for n in range(20_000):  # until the reserve's room is used up too
            command = message(n % 50, "x" * 2000)
            try:
                await queue.put([command])
            except StorageError as exc:
                failure = exc
                if not reserve.exists() and n > len(stored) + 5:
                    break
                continue
            stored.append(command)
        assert failure is not None and failure.reason == "disk full"
        assert queue.problem() == "disk full"
        assert not reserve.exists()  # given up so that the log could be checkpointed
        assert await queue.check() == "disk full"  # the filler is still there

        filler.unlink()
        assert await queue.check() is None
        assert reserve.exists()
        await queue.put([message(1, "after")])
        for command in stored:  # nothing acknowledged was lost
            got = await queue.get(command.id)
            assert got is not None and got.status is Status.QUEUED
    finally:
        await queue.close()
    storage_logs = [r for r in caplog.records if r.name == "gateway.queue.storage"]
    unavailable = [r for r in storage_logs if "unavailable" in r.getMessage()]
    recovered = [r for r in storage_logs if "recovered" in r.getMessage()]
    assert len(unavailable) == 1 and unavailable[0].levelno == logging.WARNING
    assert len(recovered) == 1 and recovered[0].levelno == logging.INFO


async def test_a_vanished_database_refuses_writes_and_is_saved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    await queue.open()
    try:
        kept = message(1, "kept")
        await queue.put([kept])
        path.unlink()
        with pytest.raises(StorageError) as caught:
            await queue.put([message(1, "refused")])
        assert caught.value.reason == "database file vanished"
        assert await queue.check() == "database file vanished"
        assert queue.problem() == "database file vanished"
        assert await queue.get(kept.id) is not None  # reads still answer from the open file
    finally:
        await queue.close()
    assert not path.exists()  # not silently recreated
    (copy,) = tmp_path.glob("queue.db.vanished-*")
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT id FROM commands").fetchall() == [(kept.id,)]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and str(copy) in errors[0].getMessage()
    assert copy.stat().st_mode & 0o777 == 0o600


async def test_a_second_queue_on_one_file_is_refused_and_touches_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "queue.db"
    first = SqliteQueue(path)
    await first.open()
    try:
        await first.put([message(1), message(2)])
        in_flight = await first.claim("1", T0 + 10**10)
        assert in_flight is not None

        second = SqliteQueue(path)
        with pytest.raises(StartupError) as caught:
            await second.open()
        line = str(caught.value)
        assert "\n" not in line
        assert f"pid {os.getpid()} on {socket.gethostname()} since " in line
        assert str(path) in line
        # The refused one did not run recovery: the first's send is still in flight.
        got = await first.get(in_flight.id)
        assert got is not None and got.status is Status.SENDING
        await first.put([message(3)])  # and the first carries on

        looker = SqliteQueue(path, read_only=True)  # tools that only look need no lock
        await looker.open()
        try:
            assert await looker.depth() == 3
            with pytest.raises(StorageError) as refused:
                await looker.put([message(4)])
            assert refused.value.reason == "read-only file system or database"
        finally:
            await looker.close()
    finally:
        await first.close()
    second = SqliteQueue(path)
    await second.open()  # the first closed: the lock is free
    await second.close()


HOLDER = """
import asyncio, sys
from pathlib import Path
from gateway.queue.sqlite import SqliteQueue

async def main():
    queue = SqliteQueue(Path(sys.argv[1]))
    await queue.open()
    print("open", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_the_lock_dies_with_a_sigkilled_holder(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(path), stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            assert (await proc.stdout.readline()).strip() == b"open"
        with pytest.raises(StartupError, match=f"pid {proc.pid} "):
            await SqliteQueue(path).open()
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    queue = SqliteQueue(path)
    await queue.open()  # no stale lock after SIGKILL
    await queue.close()


async def test_a_database_locked_by_another_program_is_a_storage_error_until_released(
    tmp_path: Path,
) -> None:
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    await queue.open()
    other = sqlite3.connect(path, isolation_level=None)  # say, an operator's sqlite3 shell
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageError) as caught:
            await queue.put([message()])
        assert caught.value.reason == "database locked by another process"
        assert await queue.check() == "database locked by another process"
        other.execute("ROLLBACK")
        assert await queue.check() is None
        await queue.put([message()])
    finally:
        other.close()
        await queue.close()
