"""Retention: final commands older than `[queue] retention` are deleted, off the request path.

The pruner is a background task. It deletes small batches (`constants.PRUNE_BATCH` commands
per transaction), pauses briefly between full batches so a backlog never monopolises the
queue's writer, and sleeps when there is nothing left to delete. A storage error (disk full,
I/O error, a lock held by another program) is retried with a growing back-off, and reported
by the queue's own health (one warning, /healthz): retention is housekeeping, it must never
take the gateway down or fill its log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway import constants as c
from gateway.errors import StorageError
from gateway.queue.base import Queue

logger = logging.getLogger(__name__)


class Pruner:
    """Deletes the queue's final commands once they are older than the retention period."""

    def __init__(
        self,
        queue: Queue,
        retention: float,
        *,
        on_pruned: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self.retention = retention
        self._on_pruned = on_pruned
        self._clock = clock
        #: Pause when nothing is left to prune: a fraction of the retention, so a short one
        #: (tests, the soak bench) is honoured closely and a long one costs a query a minute.
        self.idle = min(c.PRUNE_IDLE_SECONDS, max(retention / 10, c.PRUNE_PAUSE_SECONDS))

    async def prune_once(self) -> int:
        """Delete one batch of expired commands; how many were deleted."""
        deleted = await self._queue.prune(self._clock() - self.retention, c.PRUNE_BATCH)
        if deleted and self._on_pruned is not None:
            self._on_pruned(deleted)
        return deleted

    async def run(self) -> None:
        """Prune until cancelled."""
        backoff = 0.0
        while True:
            try:
                deleted = await self.prune_once()
            except Exception as exc:  # storage trouble: quietly try again later
                # A storage fault is the queue's to report (one warning, /healthz); anything
                # else once per streak here. The retries of a streak at debug level.
                quiet = backoff or isinstance(exc, StorageError)
                log = logger.debug if quiet else logger.warning
                backoff = min(c.PRUNE_BACKOFF_MAX_SECONDS, max(self.idle, backoff * 2))
                log("pruning old commands failed (%s); retrying in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                continue
            if backoff:
                logger.info("pruning old commands works again")
                backoff = 0.0
            await asyncio.sleep(c.PRUNE_PAUSE_SECONDS if deleted >= c.PRUNE_BATCH else self.idle)
