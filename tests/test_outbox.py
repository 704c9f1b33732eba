"""Idempotency keys without a global lock: a request waits only for requests with its own key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from gateway import constants as c
from gateway.commands import Command
from gateway.delivery import RetryBudget, Worker
from gateway.flood import FloodController, FloodLimits
from gateway.outbox import Outbox
from gateway.queue.memory import MemoryQueue
from gateway.telegram import create_bot


class SlowQueue(MemoryQueue):
    """A memory queue whose `put` of a command with key "slow" waits until released (a
    durable store under a slow disk, for one request)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def put(self, commands: Sequence[Command]) -> None:
        if any(command.idempotency_key == "slow" for command in commands):
            await self.release.wait()
        await super().put(commands)


@pytest.fixture
async def outbox() -> AsyncIterator[tuple[Outbox, SlowQueue]]:
    queue = SlowQueue()
    bot = create_bot(c.SANDBOX_TOKEN, "http://127.0.0.1:9")  # never started: no calls
    worker = Worker(queue, bot, FloodController(FloodLimits()), RetryBudget())
    try:
        yield Outbox(queue, worker), queue
    finally:
        await bot.session.close()


def message(text: str) -> list[Command]:
    return [Command("sendMessage", {"chat_id": 1, "text": text})]


async def test_a_key_does_not_wait_for_another_keys_request(
    outbox: tuple[Outbox, SlowQueue],
) -> None:
    box, queue = outbox
    slow = [asyncio.create_task(box.submit_once(message("slow"), "slow")) for _ in range(5)]
    await asyncio.sleep(0)  # the first holds "slow"'s lock inside put, the rest wait for it
    fast, original = await asyncio.wait_for(box.submit_once(message("fast"), "fast"), 10)
    assert original is None and len(fast) == 1
    assert not any(task.done() for task in slow)

    queue.release.set()
    results = await asyncio.wait_for(asyncio.gather(*slow), 10)
    queued = [commands for commands, original in results if original is None]
    repeats = {original.id for _, original in results if original is not None}
    assert len(queued) == 1 and repeats == {queued[0][0].id}  # one queued, four answered
    assert await queue.depth() == 2


async def test_many_keys_at_once_each_queue_once(outbox: tuple[Outbox, SlowQueue]) -> None:
    box, queue = outbox
    results = await asyncio.gather(
        *(box.submit_once(message(f"k{n % 50}"), f"k{n % 50}") for n in range(500))
    )
    assert sum(original is None for _, original in results) == 50
    assert await queue.depth() == 50
    # After the rush, a repeat is still answered with the original.
    again = await box.submit_once(message("k7"), "k7")
    assert again[1] is not None and again[0] == []
