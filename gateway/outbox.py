"""The one way into the queue: store commands, then wake the worker.

Both the REST API and the bot's own replies go through here, so every message the bot sends
is subject to the same order, flood control, retries and status tracking.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

from gateway import constants as c
from gateway.commands import Command
from gateway.delivery import Worker
from gateway.queue.base import Queue, UpdateRecord

#: Set while a webhook update is handled: `submit` collects into it instead of storing.
_COLLECTING: ContextVar[list[Command] | None] = ContextVar("outbox_collecting", default=None)


class Outbox:
    """Accepts commands for delivery."""

    def __init__(self, queue: Queue, worker: Worker) -> None:
        self._queue = queue
        self._worker = worker
        #: key → (its lock, how many requests hold or wait for it): only keys in use are
        #: here, so the map is bounded by the requests in flight.
        self._keys: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    async def submit(self, commands: Sequence[Command]) -> Sequence[Command]:
        """Store `commands` (durably, for a durable queue) and schedule them."""
        collected = _COLLECTING.get()
        if collected is not None:
            collected.extend(commands)
            return commands
        await self._queue.put(commands)
        self._worker.notify({command.lane for command in commands})
        return commands

    async def submit_once(
        self, commands: Sequence[Command], key: str | None
    ) -> tuple[Sequence[Command], Command | None]:
        """Like `submit`, unless `key` was used in the last 24 h: then nothing is queued and
        the original command is returned as the second item."""
        if key is None:
            return await self.submit(commands), None
        for command in commands:
            command.idempotency_key = key
        async with self._exclusive(key):  # two concurrent repeats must not both get through
            since = time.time() - c.IDEMPOTENCY_WINDOW_SECONDS
            original = await self._queue.find_idempotent(key, since)
            if original is not None:
                return [], original
            return await self.submit(commands), None

    @asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        """Hold `key`'s lock: requests with other keys (or none) do not wait for it."""
        lock, users = self._keys.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._keys[key]

    async def send(self, method: str, **params: Any) -> Command:
        """Queue one Bot API call made by the gateway itself (a reply, a notice)."""
        command = Command(method=method, params=params)
        await self.submit([command])
        return command

    @contextmanager
    def collecting(self) -> Iterator[list[Command]]:
        """Within the block (this task and the tasks it starts), `submit` and `send` collect
        commands in the yielded list instead of storing them: the caller stores them with
        `submit_handled`, in the same transaction as the update that caused them."""
        collected: list[Command] = []
        token = _COLLECTING.set(collected)
        try:
            yield collected
        finally:
            _COLLECTING.reset(token)

    async def submit_handled(self, record: UpdateRecord, commands: Sequence[Command]) -> bool:
        """Store a handled webhook update's dedup record with the commands its handling
        produced, atomically; False, storing neither, when it was recorded already."""
        forget_before = record.received_at - c.UPDATE_DEDUP_SECONDS
        if not await self._queue.record_update(record, commands, forget_before):
            return False
        self._worker.notify({command.lane for command in commands})
        return True
