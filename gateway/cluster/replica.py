"""A replica on PostgreSQL: it accepts all the time, and delivers while it leads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import constants as c
from gateway.cluster.leadership import Leadership
from gateway.cluster.recent import recall_recent_sends
from gateway.delivery import Worker
from gateway.errors import GatewayError
from gateway.flood import FloodController
from gateway.queue.postgres import PostgresQueue

logger = logging.getLogger(__name__)

Registrar = Callable[[], Awaitable[None]]


class Replica:
    """Runs the worker while this replica leads, and registers the webhook once per
    leadership (Telegram allows one setWebhook a second: followers never call it)."""

    def __init__(
        self,
        dsn: str,
        queue: PostgresQueue,
        worker: Worker,
        address: str,
        flood: FloodController | None = None,
    ) -> None:
        queue.clustered = True
        self._queue = queue
        self._worker = worker
        self._flood = flood
        self._task: asyncio.Task[None] | None = None
        self._register: Registrar | None = None
        self.leadership = Leadership(
            dsn,
            queue,
            f"{socket.gethostname()}/{os.getpid()}@{address}",
            on_elected=self._elected,
            on_deposed=self._deposed,
            on_work=worker.notify,
            on_final=worker.notify_final,
        )

    async def use_registrar(self, register: Registrar) -> None:
        """How to register the webhook (known once the server listens); now if leading."""
        self._register = register
        if self.leadership.role == "leader":
            await self._registered()

    def health(self) -> dict[str, Any]:
        """What `/healthz` adds on a replica: its role, who leads, since which epoch."""
        lead = self.leadership
        return {
            "role": lead.role,
            "leader": lead.leader or None,
            "replica": lead.identity,
            "epoch": lead.epoch,
        }

    async def _elected(self, epoch: int) -> None:
        if epoch > 1:  # someone led before: let its last second of sends pass
            if self._flood is not None:  # and keep to the minute windows it was counting
                recalled = await recall_recent_sends(self._queue, self._flood)
                if recalled:
                    logger.info("leadership: %d recent send(s) counted in flood control", recalled)
            await asyncio.sleep(c.LEADER_TAKEOVER_PAUSE_SECONDS)
        await self._worker.prepare()
        self._task = asyncio.create_task(self._worker.run(), name=f"queue worker {epoch}")
        if self._register is not None:
            await self._registered()

    async def _registered(self) -> None:
        assert self._register is not None
        try:
            await self._register()
        except GatewayError as exc:  # e.g. Telegram refused it: keep delivering, say so
            logger.error("leadership: %s", exc)

    async def _deposed(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # In-flight sends are cut short: the new leader may start at any moment. What they
        # held goes back to the queue if the database still answers, else the new leader's
        # recovery puts it back.
        with contextlib.suppress(Exception):
            await self._worker.stop(grace=0)
