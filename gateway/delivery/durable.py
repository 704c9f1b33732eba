"""Deliveries recorded but not yet confirmed on disk, and outcomes the storage refuses.

A delivered send's record frees its lane once it is committed (`Queue.complete_and_peek`);
its disk sync follows. The lane's next claim is synced before its send and that sync covers
the record too, so normally nothing waits here. If the disk does not confirm the record, it is
recorded again (until the storage takes it), and the lane's next send waits for that.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import Future
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.commands import Command
from gateway.delivery.policy import storage_backoff
from gateway.errors import StorageError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class PendingSyncs:
    """lane → its last delivery's record until it is on disk (or the task recording it again)."""

    def __init__(self) -> None:
        self._pending: dict[str, Future[None]] = {}

    def track(
        self,
        lane: str,
        command: Command,
        durable: Future[None],
        again: Callable[[], Awaitable[None]],
        on_durable: Callable[[], None],
    ) -> None:
        """Follow `durable`: `on_durable()` once it is on disk; if the disk did not confirm
        it, `again()` (until the storage takes it), which the lane's next send waits for."""
        self._pending[lane] = durable

        def done(future: Future[None]) -> None:
            if future.cancelled():  # `drain` gave up on it
                return
            if future.exception() is not None:
                task = asyncio.create_task(until_stored(command, again))
                self._pending[lane] = task
                task.add_done_callback(lambda t: self._forget(lane, t))
                return
            self._forget(lane, future)
            on_durable()

        durable.add_done_callback(done)

    async def wait(self, lane: str) -> None:
        """Before a lane's send: its previous delivery's record is on disk."""
        while (pending := self._pending.get(lane)) is not None:
            try:
                await pending
            except StorageError:  # not confirmed: `track` puts the new record in its place
                await asyncio.sleep(0)
            else:
                self._forget(lane, pending)

    async def drain(self, grace: float) -> None:
        """At shutdown: the records still pending get `grace` seconds, then are given up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._pending and (left := deadline - loop.time()) > 0:
            await asyncio.wait(list(self._pending.values()), timeout=left)
            await asyncio.sleep(0)  # their callbacks run (a record made again takes a place)
        for lane, pending in list(self._pending.items()):
            pending.cancel()
            logger.error(
                "the delivery in chat %s could not be confirmed on disk at shutdown: it may "
                "be sent again after the restart",
                lane,
            )
        self._pending.clear()

    def _forget(self, lane: str, pending: Future[None]) -> None:
        if self._pending.get(lane) is pending:
            del self._pending[lane]


async def until_stored(command: Command, save: Callable[[], Awaitable[_T]]) -> _T:
    """`save()`, again after a backoff for as long as the storage refuses it."""
    wait = 0.0
    while True:
        try:
            return await save()
        except StorageError as exc:
            if not wait:
                logger.warning(
                    "%s %s: cannot record its outcome (%s); its chat waits until the storage "
                    "is back",
                    command.method,
                    command.id,
                    exc.reason,
                )
            wait = storage_backoff(wait)
            await asyncio.sleep(wait)
