"""The worker when the queue's storage refuses writes: a send that went out is recorded later,
never repeated, and its chat waits for it. The queue is a fake at the Queue boundary (the
in-memory backend with a switch that makes its writes fail as a full disk does); the Bot API
is the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.commands import Command, Status
from gateway.delivery import RetryBudget, Worker
from gateway.errors import QueueSyncError, StorageError
from gateway.flood import FloodController
from gateway.queue.base import Completed
from gateway.queue.memory import MemoryQueue
from gateway.telegram import create_bot
from tests.conftest import TOKEN, USER, Sandbox


class DiskFullQueue(MemoryQueue):
    """MemoryQueue whose recording writes fail with a storage error while `full` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False
        #: Fill the disk right after the next claim: the send goes out, recording it fails.
        self.fill_after_claim = False
        self.refused = 0

    def _refuse(self) -> None:
        if self.full:
            self.refused += 1
            raise StorageError("queue database: database or disk is full", "disk full")

    async def complete(self, *args: Any, **kwargs: Any) -> None:
        self._refuse()
        await super().complete(*args, **kwargs)

    async def fail(self, *args: Any, **kwargs: Any) -> None:
        self._refuse()
        await super().fail(*args, **kwargs)

    async def retry(self, *args: Any, **kwargs: Any) -> None:
        self._refuse()
        await super().retry(*args, **kwargs)

    async def claim(self, chat: str, now: float) -> Command | None:
        self._refuse()
        command = await super().claim(chat, now)
        if command is not None and self.fill_after_claim:
            self.fill_after_claim, self.full = False, True
        return command


class UnconfirmedQueue(MemoryQueue):
    """MemoryQueue whose first delivery record is committed but not confirmed on disk (what
    `SqliteQueue.complete_and_peek`'s `durable` answers when the fdatasync fails)."""

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.unconfirmed = 1
        self.peeking = False
        #: Messages the sandbox had when a delivery was recorded again, by command id.
        self.sent_when_recorded_again: dict[str, int] = {}

    async def complete_and_peek(self, command_id: str, *args: Any) -> Completed:
        self.peeking = True  # the default records through `complete`
        try:
            done = await super().complete_and_peek(command_id, *args)
        finally:
            self.peeking = False
        if not self.unconfirmed:
            return done
        self.unconfirmed -= 1
        durable: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        durable.set_exception(QueueSyncError("queue database: the disk did not confirm a write"))
        return Completed(done.next_due, durable)

    async def complete(self, command_id: str, *args: Any, **kwargs: Any) -> None:
        if not self.peeking:  # slow: time for the chat's next send (1/s) to overtake it
            await asyncio.sleep(1.5)
            self.sent_when_recorded_again[command_id] = len(await self.sandbox.messages(USER))
        await super().complete(command_id, *args, **kwargs)


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    await worker.prepare()
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.stop(grace=1.0)


async def test_a_sent_message_is_recorded_once_storage_is_back_and_never_sent_twice(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    await sandbox.create_chat(USER)
    queue = DiskFullQueue()
    first = Command("sendMessage", {"chat_id": USER, "text": "first"})
    second = Command("sendMessage", {"chat_id": USER, "text": "second"})
    await queue.put([first, second])
    queue.fill_after_claim = True
    bot = create_bot(TOKEN, sandbox.url)
    worker = Worker(queue, bot, FloodController(), RetryBudget())
    try:
        async with running(worker):
            messages: list[dict[str, Any]] = []
            for _ in range(400):  # until "first" is out and recording it was refused a few times
                messages = await sandbox.messages(USER)
                if messages and queue.refused >= 3:
                    break
                await asyncio.sleep(0.05)
            assert [m["text"] for m in messages] == ["first"]
            assert await status(queue, first) is Status.SENDING
            assert await status(queue, second) is Status.QUEUED  # the chat waits for it

            queue.full = False  # space is back
            async with asyncio.timeout(20):
                while await status(queue, second) is not Status.SENT:
                    await asyncio.sleep(0.05)
    finally:
        await bot.session.close()
    assert [m["text"] for m in await sandbox.messages(USER)] == ["first", "second"]
    assert await status(queue, first) is Status.SENT
    warnings = [r for r in caplog.records if "cannot record its outcome" in r.getMessage()]
    assert len(warnings) == 1  # once per command, not once per try
    assert not [r for r in caplog.records if r.exc_info]  # no traceback


async def status(queue: MemoryQueue, command: Command) -> Status:
    stored = await queue.get(command.id)
    assert stored is not None
    return stored.status


async def test_a_delivery_the_disk_did_not_confirm_is_recorded_again_before_the_next_send(
    sandbox: Sandbox,
) -> None:
    await sandbox.create_chat(USER)
    queue = UnconfirmedQueue(sandbox)
    first = Command("sendMessage", {"chat_id": USER, "text": "first"})
    second = Command("sendMessage", {"chat_id": USER, "text": "second"})
    await queue.put([first, second])
    bot = create_bot(TOKEN, sandbox.url)
    worker = Worker(queue, bot, FloodController(), RetryBudget())
    try:
        async with running(worker):
            waiting = asyncio.create_task(worker.wait_final(first.id, 20))
            async with asyncio.timeout(20):
                while await status(queue, second) is not Status.SENT:
                    await asyncio.sleep(0.05)
            await waiting  # told once the record was confirmed
    finally:
        await bot.session.close()
    assert [m["text"] for m in await sandbox.messages(USER)] == ["first", "second"]
    # Recorded again while "second" had not gone out yet: the chat waited for it.
    assert queue.sent_when_recorded_again == {first.id: 1}
    assert await status(queue, first) is Status.SENT
