"""Bounded storage: old final commands are pruned, the file gives the space back, and the
database is private to the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.commands import Command
from gateway.queue import SqliteQueue
from gateway.retention import Pruner
from tests.conftest import USER, GatewayFactory, Sandbox

T0 = 1_700_000_000.0


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


async def sent_commands(queue: SqliteQueue, count: int, text: str = "x") -> list[Command]:
    """`count` commands accepted at T0 and sent at T0 + 1, one chat each."""
    commands = [
        Command("sendMessage", {"chat_id": n, "text": text}, created_at=T0) for n in range(count)
    ]
    await queue.put(commands)
    for command in commands:
        await queue.claim(command.lane, T0)
        await queue.complete(command.id, {"message_id": 1}, T0 + 1)
    return commands


async def test_database_wal_and_shm_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "var" / "gateway.db"
    queue = SqliteQueue(path)
    with umask(0):
        await queue.open()
    try:
        await sent_commands(queue, 3)
        for suffix in ("", "-wal", "-shm"):
            assert mode(f"{path}{suffix}") == 0o600, suffix
        assert mode(path.parent) == 0o700
    finally:
        await queue.close()


async def test_existing_files_readable_by_others_are_made_private(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    queue = SqliteQueue(path)
    await queue.open()
    await sent_commands(queue, 1)
    # Made by an older gateway: world-readable, and its log left behind by a crash.
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute("UPDATE commands SET attempts = attempts")
    await queue.close()
    for suffix in ("", "-wal", "-shm"):
        os.chmod(f"{path}{suffix}", 0o644)
    db.close()
    if not os.path.exists(f"{path}-wal"):  # closing may have checkpointed and removed it
        Path(f"{path}-wal").touch(0o644)

    queue = SqliteQueue(path)
    await queue.open()
    try:
        for suffix in ("", "-wal", "-shm"):
            assert mode(f"{path}{suffix}") == 0o600, suffix
    finally:
        await queue.close()


async def test_pruning_gives_the_space_back_to_the_file_system(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    queue = SqliteQueue(path)
    await queue.open()
    try:
        commands = await sent_commands(queue, 400, "t" * 4000)
        full = _checkpointed_size(path)
        deleted = 0
        while batch := await queue.prune(T0 + 2, 150):  # bounded: 400 rows
            deleted += batch
        assert deleted == 400
        assert await queue.get(commands[0].id) is None
        empty = _checkpointed_size(path)
    finally:
        await queue.close()
    assert full > 1_600_000
    assert empty < full / 10, (full, empty)


def _checkpointed_size(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return path.stat().st_size


async def test_an_old_database_is_converted_once_to_incremental_vacuum(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gateway.db"
    queue = SqliteQueue(path)
    await queue.open()
    commands = await sent_commands(queue, 5)
    await queue.close()
    db = sqlite3.connect(path)  # as a gateway before retention made it
    db.execute("PRAGMA auto_vacuum = NONE")
    db.execute("VACUUM")
    assert db.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    db.close()

    with caplog.at_level(logging.INFO, logger="gateway.queue.files"):
        for _ in range(2):
            queue = SqliteQueue(path)
            await queue.open()
            try:
                assert all([await queue.get(command.id) for command in commands])
            finally:
                await queue.close()
    converting = [r for r in caplog.records if "converting to incremental" in r.getMessage()]
    assert len(converting) == 1
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA auto_vacuum").fetchone() == (2,)
    finally:
        db.close()


async def test_the_pruner_backs_off_on_storage_errors_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another connection holds the write lock: prune fails ("database is locked") after
    SQLite's busy timeout; the pruner waits and prunes once the lock is gone. The fault is
    reported once, by the queue's health, not once per retry."""
    path = tmp_path / "gateway.db"
    queue = SqliteQueue(path)
    await queue.open()
    pruned: list[int] = []
    pruner = Pruner(queue, retention=1.0, on_pruned=pruned.append)
    task: asyncio.Task[None] | None = None
    try:
        commands = await sent_commands(queue, 3)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        with caplog.at_level(logging.DEBUG, logger="gateway.retention"):
            task = asyncio.create_task(pruner.run())
            for _ in range(300):  # bounded: up to 30 s
                if any("pruning old commands failed" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.1)
            assert queue.problem() == "database locked by another process"
            blocker.execute("ROLLBACK")
            blocker.close()
            for _ in range(300):
                if sum(pruned) == 3:
                    break
                await asyncio.sleep(0.1)
        assert sum(pruned) == 3
        assert await queue.get(commands[0].id) is None
        assert await queue.check() is None  # the storage watch's probe clears the fault
        messages = [r.getMessage() for r in caplog.records]
        failures = [m for m in messages if "pruning old commands failed" in m]
        assert failures and "database is locked" in failures[0]
        assert "pruning old commands works again" in messages
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.name for r in warnings] == ["gateway.queue.storage"]
        assert not task.done()  # it carries on
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await queue.close()


async def test_a_sent_command_is_pruned_and_answers_404(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    """End to end with a one-second retention; a keyed command stays for its 24 h window."""
    await sandbox.create_chat(USER)
    async with gateway_factory(env={"GATEWAY_QUEUE_RETENTION": "1s"}) as gw:
        status, plain = await gw.enqueue({"text": "forget me"})
        assert status == 202
        key = {"Idempotency-Key": "keep-me"}
        status, keyed = await gw.enqueue({"text": "keep me"}, headers=key)
        assert status == 202
        for body in (plain, keyed):
            assert (await gw.command(body["id"], wait=30))["status"] == "sent"

        url = f"{gw.url}/commands/{plain['id']}"
        deadline = time.monotonic() + 30
        answer = 200
        while answer == 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            async with gw.http.get(url, headers=gw.auth) as resp:
                answer = resp.status
                body = await resp.json()
        assert answer == 404, body
        assert "error" in body

        assert (await gw.command(keyed["id"]))["status"] == "sent"
        status, again = await gw.enqueue({"text": "keep me"}, headers=key)
        assert again["id"] == keyed["id"]

        async with gw.http.get(f"{gw.url}/metrics", headers=gw.auth) as resp:
            metrics = await resp.text()
        samples = dict(
            line.rsplit(" ", 1) for line in metrics.splitlines() if not line.startswith("#")
        )
        assert float(samples["gateway_commands_pruned_total"]) >= 1
        size = gw.config.queue_path.stat().st_size
        assert float(samples["gateway_queue_database_bytes"]) >= size > 0
