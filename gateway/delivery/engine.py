"""The queue worker: takes commands from the queue and makes their Bot API calls.

It keeps a ring of lanes (one per chat) with queued work and walks it round robin, so one busy
chat never starves the others. A lane has at most one command in flight, which keeps each
chat's order. Before every send it asks the flood controller for a slot; the `Sender` makes the
call and the `Settler` records what Telegram's answer (`gateway.telegram.call`) came to:
delivered, paused (429), migrated, retried with backoff, or failed for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from aiogram import Bot

from gateway import constants as c
from gateway import telegram
from gateway.commands import Command
from gateway.delivery.durable import PendingSyncs, until_stored
from gateway.delivery.hooks import (
    Deferred,
    DeliveryHooks,
    FailureHandler,
    ServiceExecutor,
    log_fields,
)
from gateway.delivery.policy import BACKOFF_CAP_SECONDS, RetryBudget, storage_backoff
from gateway.delivery.sender import Sender
from gateway.delivery.settle import Settler
from gateway.errors import StorageError
from gateway.flood import FloodController
from gateway.media.service import MediaService
from gateway.queue.base import Completed, Queue

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class Worker:
    """The coroutine that connects the queue to the Bot API."""

    def __init__(
        self,
        queue: Queue,
        bot: Bot,
        flood: FloodController,
        budget: RetryBudget,
        *,
        hooks: DeliveryHooks | None = None,
        services: ServiceExecutor | None = None,
        on_failed: FailureHandler | None = None,
        max_in_flight: int = c.MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._flood = flood
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._sender = Sender(queue, bot, flood, clock)
        self._sender.services = services
        self._settler = Settler(
            queue, flood, self._sender, budget, hooks or DeliveryHooks(), self.notify_final, clock
        )
        self._settler.on_failed = on_failed
        #: lane → Unix time its oldest queued command is due; insertion order is the ring.
        self._ring: OrderedDict[str, float] = OrderedDict()
        #: lane → the task delivering its command, from the claim until the lane's due time
        #: is known again (the lane is held meanwhile).
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        #: Deliveries whose call(s) are under way (at most `max_in_flight`).
        self._calls = 0
        self._commands: dict[str, Command] = {}
        self._wake = asyncio.Event()
        self._running = False
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        #: lane → what its command's send came to, while the storage refuses to record it.
        self._unsaved: dict[str, Callable[[], Awaitable[object]]] = {}
        self._syncs = PendingSyncs()

    def use_media(self, media: MediaService) -> None:
        """Wire the media service: commands with stored files are sent through it."""
        self._sender.media = media

    def use_services(self, services: ServiceExecutor, on_failed: FailureHandler) -> None:
        """Wire the executor of service calls and the failure handler (built after the worker,
        as they send through the outbox that needs it)."""
        self._sender.services, self._settler.on_failed = services, on_failed

    def use_deferred(self, deferred: Deferred) -> None:
        """Wire the resolver of `showThread` commands (the inlets' messages)."""
        self._sender.deferred = deferred

    @property
    def running(self) -> bool:
        """True while the delivery loop runs."""
        return self._running

    def notify(self, lanes: Iterable[str]) -> None:
        """New work in `lanes` (called after the queue stored it)."""
        for lane in lanes:
            # A lane already in the ring has work the loop knows of; the new command waits
            # behind it, so only a new lane is worth waking the loop for.
            if lane not in self._ring:
                self._ring[lane] = 0.0
                self._wake.set()

    async def wait_final(self, command_id: str, timeout: float) -> None:
        """Return when the command reaches a final status, or after `timeout` seconds."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(command_id, []).append(future)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(command_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(command_id, None)

    def notify_final(self, command_id: str) -> None:
        """Wake `wait_final` callers: the command reached a final status."""
        for future in self._waiters.pop(command_id, []):
            if not future.done():
                future.set_result(None)

    async def prepare(self) -> None:
        """Before the first delivery: put interrupted sends back, load the lanes with work."""
        recovered = await self._queue.recover()
        if recovered:
            logger.info("put %d interrupted command(s) back in the queue", recovered)
        # Chats that moved to a supergroup before (a backend that keeps them: postgres).
        self._sender.migrated.update(await self._queue.migrated_chats())
        for lane, due in (await self._queue.lanes()).items():
            self._ring[lane] = due

    async def run(self) -> None:
        """Deliver until cancelled (call `prepare` first)."""
        self._running = True
        storage_wait = 0.0
        try:
            while True:
                try:
                    await self._step()
                    storage_wait = 0.0
                except asyncio.CancelledError:
                    raise
                except StorageError as exc:  # the queue logs when it starts and ends
                    storage_wait = storage_backoff(storage_wait)
                    logger.debug("delivery loop: %s; next try in %.1fs", exc, storage_wait)
                    await asyncio.sleep(storage_wait)
                except Exception:  # a bug: keep going
                    logger.exception("the delivery loop failed; retrying in a second")
                    await asyncio.sleep(1.0)
        finally:
            self._running = False

    async def stop(self, grace: float = c.SHUTDOWN_GRACE_SECONDS) -> None:
        """After the loop is cancelled: let in-flight sends finish, put the rest back."""
        tasks = list(self._in_flight.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._syncs.drain(grace)
        put_back = 0
        for lane, command in list(self._commands.items()):
            now = self._clock()
            save = self._unsaved.pop(lane, None)
            try:
                if save is not None:  # sent already: record that, never put it back
                    await save()
                else:
                    await self._queue.retry(command.id, now, now, refund=True)
                    put_back += 1
                    logger.info(
                        "put in-flight command %s back in the queue",
                        command.id,
                        extra=log_fields(command),
                    )
            except StorageError as exc:
                logger.error(
                    "%s %s could not be recorded at shutdown (%s): it is still `sending` and "
                    "will be sent again after the restart",
                    command.method,
                    command.id,
                    exc.reason,
                    extra=log_fields(command),
                )
        self._commands.clear()
        # A replica's worker runs again when it leads again: no lane may stay held by a send
        # of this run (a task cancelled here never reaches its own clean-up).
        self._in_flight.clear()
        self._calls = 0
        self._unsaved.clear()
        self._sender.forget()
        logger.info(
            "worker stopped: %d in-flight send(s) finished, %d put back in the queue",
            len(tasks) - put_back,
            put_back,
        )

    async def _step(self) -> None:
        free = self._max_in_flight - self._calls
        if free <= 0:
            await self._sleep(None)
            return
        now = self._clock()
        lanes, wait = self._pick(now, min(free, c.CLAIM_BATCH))
        if not lanes:
            await self._sleep(wait)
            return
        # Claimed together, the claims share one transaction and one disk sync (group commit):
        # a claim must be durable before its send (it counts the attempt), but need not wait
        # for the disk alone.
        claims = await asyncio.gather(
            *(self._queue.claim(lane, now) for lane in lanes), return_exceptions=True
        )
        error: BaseException | None = None
        empty: list[str] = []
        for lane, claimed in zip(lanes, claims, strict=True):
            if isinstance(claimed, BaseException):
                self._sender.acquired.pop(lane, None)  # picked again once the storage is back
                error = error or claimed
            elif claimed is None:  # the lane emptied or its head is not due after all
                self._sender.acquired.pop(lane, None)  # the flood slot stays spent: harmless
                empty.append(lane)
            else:
                self._start(lane, claimed, now)
        for lane in empty:
            await self._refresh(lane)
        if error is not None:
            raise error

    def _start(self, lane: str, command: Command, now: float) -> None:
        """Deliver a claimed command in a task of its own. Nothing here may raise, or the
        command would sit in `sending` until the next restart."""
        # To the back of the ring (round robin). The lane's due time is refreshed when its
        # delivery ends.
        self._ring.pop(lane, None)
        self._ring[lane] = now
        migrated = self._sender.migrated
        if lane in migrated:
            command.params = {**command.params, "chat_id": migrated[lane]}
        self._commands[lane] = command
        self._sender.charge_album(lane, command)
        task = asyncio.create_task(self._deliver(lane, command), name=f"deliver {command.id}")
        self._in_flight[lane] = task
        self._calls += 1

    def _pick(self, now: float, most: int) -> tuple[list[str], float | None]:
        """Up to `most` lanes allowed to send now (each with its flood slot taken), or, when
        none is, how long until one may."""
        picked: list[str] = []
        soonest = math.inf
        for lane, due in self._ring.items():
            if lane in self._in_flight:
                continue
            if due > now:
                soonest = min(soonest, due - now)
                continue
            if lane.startswith(c.SERVICE_LANE):
                picked.append(lane)  # a call to an internal service: no Telegram limit applies
            else:
                delay = self._flood.try_acquire(self._sender.key(lane))
                if delay <= 0:
                    self._sender.acquired[lane] = self._flood.last_acquired
                    picked.append(lane)
                else:
                    soonest = min(soonest, delay)
                    if self._flood.global_wait() > 0:
                        break  # every lane waits for the bot-wide limit: no point asking the rest
            if len(picked) >= most:
                break
        return picked, (None if picked or soonest == math.inf else soonest)

    async def _sleep(self, timeout: float | None) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _refresh(self, lane: str) -> None:
        try:
            due = await self._queue.head_due(lane)
        except StorageError:  # look again later; the loop backs off on storage errors
            self._ring[lane] = self._clock() + c.STORAGE_BACKOFF_CAP_SECONDS
            return
        if due is None:
            self._ring.pop(lane, None)
        else:
            self._ring[lane] = due

    async def _deliver(self, lane: str, command: Command) -> None:
        completed: Completed | None = None
        try:
            try:
                outcome = await self._call(lane, command)
            except StorageError:  # a split message's progress could not be saved
                await self._record(lane, command, lambda: self._put_back(command))
            else:
                settle = self._settler.settle
                completed = await self._record(
                    lane, command, lambda: settle(lane, command, outcome)
                )
                if completed is not None and isinstance(outcome, telegram.Delivered):
                    result, settler = outcome.result, self._settler
                    self._syncs.track(
                        lane,
                        command,
                        completed.durable,
                        lambda: settler.record_delivered(command, result),
                        lambda: settler.durable(command),
                    )
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not kill the worker or lose the command
            logger.exception(
                "delivering %s failed unexpectedly; it will be retried",
                command.id,
                extra=log_fields(command),
            )
            now = self._clock()
            retry = self._queue.retry
            await self._record(
                lane, command, lambda: retry(command.id, now + BACKOFF_CAP_SECONDS, now)
            )
        self._commands.pop(lane, None)
        try:
            if completed is None:
                # Still "in flight" while refreshing, so the loop cannot claim from the lane in
                # the meantime (and have this refresh see its new head as `sending`).
                await self._refresh(lane)
            elif completed.next_due is None:  # read in the transaction that recorded it
                self._ring.pop(lane, None)
            else:
                self._ring[lane] = completed.next_due
        finally:
            self._in_flight.pop(lane, None)
            self._wake.set()

    async def _call(self, lane: str, command: Command) -> telegram.Outcome:
        """The command's call(s). Its place among the sends in flight is given up as soon as
        the answer is in, so the loop claims the next lane while this one's outcome is being
        recorded (often in the same transaction); the lane itself stays held until then."""
        try:
            await self._syncs.wait(lane)
            return await self._sender.call(lane, command)
        finally:
            self._calls -= 1
            self._wake.set()

    async def _record(self, lane: str, command: Command, save: Callable[[], Awaitable[_T]]) -> _T:
        """Run `save` (what a send came to, into the queue) until the storage takes it.

        The send is not repeated meanwhile: the outcome waits in memory and the lane stays in
        flight, so nothing behind it in the chat overtakes it.
        """
        self._unsaved[lane] = save  # for `stop`, if cancelled before the storage is back
        result = await until_stored(command, save)
        self._unsaved.pop(lane, None)
        return result

    async def _put_back(self, command: Command) -> None:
        """Back to the queue with what is known to be delivered (a split's parts so far)."""
        now = self._clock()
        if isinstance(command.result, list):  # parts sent: saving one again replaces it
            for part, result in enumerate(command.result):
                await self._queue.save_part(command.id, part, result, now)
        await self._queue.retry(command.id, now, now, refund=True)
