"""The queue worker: takes commands from the queue and makes their Bot API calls.

It keeps a ring of lanes (one per chat) with queued work and walks it round robin, so one busy
chat never starves the others. A lane has at most one command in flight, which keeps each
chat's order. Before every send it asks the flood controller for a slot; Telegram's own answers
(`gateway.telegram.call`) then decide: delivered, paused (429), migrated, retried with backoff,
or failed for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiogram import Bot

from gateway import constants as c
from gateway import paidsend, telegram
from gateway.commands import Command, Status
from gateway.errors import StorageError
from gateway.flood import FloodController
from gateway.media.service import MediaService, MediaUnavailable, caption_part_params
from gateway.queue.base import Queue
from gateway.queue.threads import THREAD_METHOD
from gateway.redact import redact
from gateway.split import MarkupError, split_text, visible_length

logger = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
#: Two 429s for different chats this close together mean the bot as a whole is throttled.
GLOBAL_FLOOD_WINDOW_SECONDS = 1.0
#: Longest error description kept from an unexpected exception.
MAX_ERROR_DESCRIPTION = 300


@dataclass(frozen=True)
class RetryBudget:
    """How long a command keeps being retried after transient failures."""

    max_attempts: int = 8
    max_age: float = 3600.0


ServiceExecutor = Callable[[Command], Awaitable[telegram.Outcome]]


class Deferred(Protocol):
    """Commands whose Bot API call is decided when the worker picks them up (`showThread`:
    send or edit an inlet's message, gateway/inlets/show.py)."""

    async def resolve(self, command: Command) -> tuple[str, dict[str, Any]] | None:
        """The call to make now, or None when there is nothing to do."""

    async def delivered(self, command: Command, method: str, result: Any) -> None:
        """The call `resolve` gave was delivered with `result`."""

    async def replace(
        self, command: Command, method: str, params: dict[str, Any], failure: telegram.Failure
    ) -> tuple[str, dict[str, Any]] | None:
        """The call `resolve` gave failed for good: the call to make instead (an edit of a
        message deleted in the chat becomes a new message), or None."""


FailureHandler = Callable[[Command, dict[str, Any]], Awaitable[None]]


class DeliveryHooks:
    """Observers of what the worker does (metrics, status waiters). All no-ops here."""

    def sent(self, command: Command, latency: float) -> None:
        """A command was delivered `latency` seconds after it was accepted."""

    def failed(self, command: Command, reason: str) -> None:
        """A command failed for good."""

    def retried(self, command: Command, reason: str) -> None:
        """A command goes back to the queue."""

    def flood_wait(self, command: Command, retry_after: float) -> None:
        """Telegram answered 429."""


def flood_key(chat: int | str) -> int | str:
    """Flood control is keyed by chat id: numeric ids as ints (negative ones are groups)."""
    if isinstance(chat, int):
        return chat
    try:
        return int(chat)
    except ValueError:
        return chat


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
        self._bot = bot
        self._flood = flood
        self._budget = budget
        self._hooks = hooks or DeliveryHooks()
        #: Executes calls to internal services (dispatches, callbacks).
        self._services = services
        #: Told about every command that failed for good (to tell the user, say).
        self._on_failed = on_failed
        self._max_in_flight = max_in_flight
        self._clock = clock
        #: lane → Unix time its oldest queued command is due; insertion order is the ring.
        self._ring: OrderedDict[str, float] = OrderedDict()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._commands: dict[str, Command] = {}
        self._migrated: dict[str, int] = {}
        #: lane → flood clock time its current send's slot was taken (settled on the answer).
        self._acquired: dict[str, float] = {}
        self._last_flood: tuple[float, str] | None = None
        self._wake = asyncio.Event()
        self._running = False
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        #: lane → what its command's send came to, while the storage refuses to record it.
        self._unsaved: dict[str, Callable[[], Awaitable[None]]] = {}
        self._media: MediaService | None = None
        self._deferred: Deferred | None = None

    def use_media(self, media: MediaService) -> None:
        """Wire the media service: commands with stored files are sent through it."""
        self._media = media

    def use_services(self, services: ServiceExecutor, on_failed: FailureHandler) -> None:
        """Wire the executor of service calls and the failure handler (built after the worker,
        as they send through the outbox that needs it)."""
        self._services, self._on_failed = services, on_failed

    def use_deferred(self, deferred: Deferred) -> None:
        """Wire the resolver of `showThread` commands (the inlets' messages)."""
        self._deferred = deferred

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

    async def prepare(self) -> None:
        """Before the first delivery: put interrupted sends back, load the lanes with work."""
        recovered = await self._queue.recover()
        if recovered:
            logger.info("put %d interrupted command(s) back in the queue", recovered)
        # Chats that moved to a supergroup before (a backend that keeps them: postgres).
        self._migrated.update(await self._queue.migrated_chats())
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
                    storage_wait = _storage_backoff(storage_wait)
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
        logger.info(
            "worker stopped: %d in-flight send(s) finished, %d put back in the queue",
            len(tasks) - put_back,
            put_back,
        )

    async def _step(self) -> None:
        if len(self._in_flight) >= self._max_in_flight:
            await self._sleep(None)
            return
        now = self._clock()
        lane, wait = self._pick(now)
        if lane is None:
            await self._sleep(wait)
            return
        command = await self._queue.claim(lane, now)
        if command is None:  # the lane emptied or its head is not due after all
            self._acquired.pop(lane, None)  # the flood slot stays spent: harmless, just unused
            await self._refresh(lane)
            return
        # To the back of the ring (round robin). The lane's due time is refreshed when its
        # delivery ends; nothing between the claim and the task may raise, or the claimed
        # command would sit in `sending` until the next restart.
        self._ring.pop(lane, None)
        self._ring[lane] = now
        if lane in self._migrated:
            command.params = {**command.params, "chat_id": self._migrated[lane]}
        self._commands[lane] = command
        self._charge_album(lane, command)
        task = asyncio.create_task(self._deliver(lane, command), name=f"deliver {command.id}")
        self._in_flight[lane] = task

    def _pick(self, now: float) -> tuple[str | None, float | None]:
        """The next lane allowed to send now, or how long until one may."""
        soonest = math.inf
        for lane, due in self._ring.items():
            if lane in self._in_flight:
                continue
            if due > now:
                soonest = min(soonest, due - now)
                continue
            if lane.startswith(c.SERVICE_LANE):
                return lane, None  # a call to an internal service: no Telegram limit applies
            delay = self._flood.try_acquire(flood_key(self._migrated.get(lane, lane)))
            if delay <= 0:
                self._acquired[lane] = self._flood.last_acquired
                return lane, None
            soonest = min(soonest, delay)
            if self._flood.global_wait() > 0:
                break  # every lane waits for the bot-wide limit: no point asking the rest
        return None, (None if soonest == math.inf else soonest)

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
        try:
            try:
                outcome = await self._call(lane, command)
            except StorageError:  # a split message's progress could not be saved
                await self._record(lane, command, lambda: self._put_back(command))
            else:
                await self._record(lane, command, lambda: self._settle(lane, command, outcome))
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
            # Still "in flight" while refreshing, so the loop cannot claim from the lane in the
            # meantime (and have this refresh see its new head as `sending`).
            await self._refresh(lane)
        finally:
            self._in_flight.pop(lane, None)
            self._wake.set()

    async def _record(
        self, lane: str, command: Command, save: Callable[[], Awaitable[None]]
    ) -> None:
        """Run `save` (what a send came to, into the queue) until the storage takes it.

        The send is not repeated meanwhile: the outcome waits in memory and the lane stays in
        flight, so nothing behind it in the chat overtakes it.
        """
        self._unsaved[lane] = save  # for `stop`, if cancelled before the storage is back
        wait = 0.0
        while True:
            try:
                await save()
                break
            except StorageError as exc:
                if not wait:
                    logger.warning(
                        "%s %s: cannot record its outcome (%s); its chat waits until the "
                        "storage is back",
                        command.method,
                        command.id,
                        exc.reason,
                    )
                wait = _storage_backoff(wait)
                await asyncio.sleep(wait)
        self._unsaved.pop(lane, None)

    async def _put_back(self, command: Command) -> None:
        """Back to the queue with what is known to be delivered (a split's parts so far)."""
        now = self._clock()
        if isinstance(command.result, list):  # parts sent: saving one again replaces it
            for part, result in enumerate(command.result):
                await self._queue.save_part(command.id, part, result, now)
        await self._queue.retry(command.id, now, now, refund=True)

    async def _call(self, lane: str, command: Command) -> telegram.Outcome:
        """One Bot API call, or, for a text over Telegram's limit, one call per part.

        An unexpected exception while building or making a call (something aiogram or pydantic
        chokes on, or a bug) becomes a retryable `internal_error` Failure: it spends the retry
        budget like any failed attempt and then fails, instead of holding its chat back.
        """
        if command.method in c.SERVICE_METHODS:
            if self._services is None:
                return telegram.Failure("no_services", "service calls are not configured", False)
            return await self._guarded(command, self._services(command))
        if self._media is not None and self._media.handles(command):
            return await self._guarded(command, self._send_media(lane, command, self._media))

        if command.method == THREAD_METHOD:
            try:
                return await self._send_deferred(lane, command)
            except StorageError:  # the thread could not be read or recorded: put back
                raise
            except Exception as exc:
                return self._unexpected(command, exc)
        try:
            parts = await _long_text_parts_off_loop(command)
        except Exception as exc:
            return self._unexpected(command, exc)
        if parts is None:
            return await self._guarded(command, self._send(lane, command.method, command.params))
        # Parts already delivered (before a retry or a restart) are not sent again.
        done: list[Any] = list(command.result) if isinstance(command.result, list) else []
        start = len(done)
        for index in range(start, len(parts)):
            if index > start:  # the pick already paid for the first part's flood slot
                await self._acquire(lane)
            params = part_params(command.params, parts, index)
            outcome = await self._guarded(command, self._send(lane, command.method, params))
            if not isinstance(outcome, telegram.Delivered):
                return outcome
            done.append(outcome.result)
            command.result = done
            await self._queue.save_part(command.id, index, outcome.result, self._clock())
        return telegram.Delivered(done)

    def _charge_album(self, lane: str, command: Command) -> None:
        """An album of N is N messages to Telegram: charge the other N - 1 now, right after
        the claim, before the loop picks the next lane (its own slot was taken by the pick)."""
        acquired = self._acquired.get(lane)
        if self._media is None or acquired is None:
            return
        extra = self._media.messages(command) - 1
        if extra > 0:
            self._flood.charge(flood_key(self._migrated.get(lane, lane)), extra, acquired)

    async def _send_media(
        self, lane: str, command: Command, media: MediaService
    ) -> telegram.Outcome:
        """A call with stored files: uploads (or reused file_ids) within the byte budget. An
        album of N is charged as N messages, as Telegram counts them; a split caption's later
        parts follow as text replies to the file's message."""
        rest = media.caption_rest(command)
        # With a split caption, parts delivered before (a retry, a restart) are not sent again.
        done: list[Any] = list(command.result) if rest and isinstance(command.result, list) else []
        if not done:
            acquired = self._acquired.get(lane)  # charged for the whole album by the claim
            extra = media.messages(command) - 1 if acquired is not None else 0
            key = flood_key(self._migrated.get(lane, lane))
            try:
                async with media.sending(command) as params:
                    outcome = await self._send(lane, command.method, params)
            except MediaUnavailable as exc:
                self._acquired.pop(lane, None)
                return telegram.Failure("media_unavailable", str(exc), retryable=False)
            finally:
                # Like the slot `_send` settles: count the album's messages from the answer on.
                for _ in range(extra):
                    self._flood.settle(key, acquired or 0.0)
            if not isinstance(outcome, telegram.Delivered):
                return outcome
            await media.delivered(command, outcome.result)
            if not rest:
                return outcome
            done.append(outcome.result)
            command.result = done
            await self._queue.save_part(command.id, 0, outcome.result, self._clock())
        for index in range(len(done), len(rest) + 1):
            await self._acquire(lane)
            params = caption_part_params(command.params, done[0], rest[index - 1])
            outcome = await self._send(lane, "sendMessage", params)
            if not isinstance(outcome, telegram.Delivered):
                return outcome
            done.append(outcome.result)
            command.result = done
            await self._queue.save_part(command.id, index, outcome.result, self._clock())
        return telegram.Delivered(done)

    async def _send_deferred(self, lane: str, command: Command) -> telegram.Outcome:
        """A `showThread`: resolved now, in the chat's lane, so the message it edits was sent
        (or failed) before; nothing to do when the latest version is shown already."""
        if self._deferred is None:
            return telegram.Failure("no_inlets", "inlet messages are not configured", False)
        call = await self._deferred.resolve(command)
        if call is None:
            acquired = self._acquired.pop(lane, None)
            if acquired is not None:
                self._flood.settle(flood_key(self._migrated.get(lane, lane)), acquired)
            return telegram.Delivered({"skipped": "shown already"})
        method, params = call
        if lane in self._migrated:
            params = {**params, "chat_id": self._migrated[lane]}
        outcome = await self._send(lane, method, params)
        if isinstance(outcome, telegram.Failure) and not outcome.retryable:
            instead = await self._deferred.replace(command, method, params, outcome)
            if instead is not None:
                method, params = instead
                await self._acquire(lane)
                outcome = await self._send(lane, method, params)
        if isinstance(outcome, telegram.Delivered):
            await self._deferred.delivered(command, method, outcome.result)
        return outcome

    async def _guarded(
        self, command: Command, call: Awaitable[telegram.Outcome]
    ) -> telegram.Outcome:
        try:
            return await call
        except Exception as exc:
            return self._unexpected(command, exc)

    @staticmethod
    def _unexpected(command: Command, exc: Exception) -> telegram.Failure:
        # The traceback once per command (its first attempt), not once per retry.
        logger.warning(
            "%s %s failed unexpectedly: %s",
            command.method,
            command.id,
            redact(repr(exc)),
            exc_info=command.attempts <= 1,
        )
        description = f"{type(exc).__name__}: {redact(str(exc))}"[:MAX_ERROR_DESCRIPTION]
        return telegram.Failure("internal_error", description, retryable=True)

    async def _acquire(self, lane: str) -> None:
        key = flood_key(self._migrated.get(lane, lane))
        while (delay := self._flood.try_acquire(key)) > 0:
            await asyncio.sleep(delay)
        self._acquired[lane] = self._flood.last_acquired

    async def _send(self, lane: str, method: str, params: dict[str, Any]) -> telegram.Outcome:
        """One Bot API call on a flood slot already acquired for `lane`."""
        try:  # paid broadcast's flag and fallback: gateway/paidsend.py
            return await paidsend.call(
                self._flood, self._bot, method, params, self._acquired.get(lane)
            )
        finally:
            acquired = self._acquired.pop(lane, None)
            if acquired is not None:
                self._flood.settle(flood_key(self._migrated.get(lane, lane)), acquired)

    async def _settle(self, lane: str, command: Command, outcome: telegram.Outcome) -> None:
        now = self._clock()
        match outcome:
            case telegram.Delivered(result):
                question = "expect_reply" in command.meta
                status = Status.AWAITING_REPLY if question else Status.SENT
                await self._queue.complete(command.id, result, now, status)
                self._hooks.sent(command, now - command.created_at)
                logger.debug(
                    "%s %s delivered", command.method, command.id, extra=log_fields(command)
                )
                if not question:  # a question is final once answered or expired
                    self.notify_final(command.id)
            case telegram.FloodWait(retry_after, description):
                self._pause(lane, retry_after, now)
                self._hooks.flood_wait(command, retry_after)
                error = {"code": "too_many_requests", "description": description}
                await self._queue.retry(command.id, now + retry_after, now, error, refund=True)
            case telegram.Migrated(chat_id, description):
                logger.info(
                    "chat %s migrated to %s; following it", lane, chat_id, extra=log_fields(command)
                )
                self._migrated[lane] = chat_id
                await self._queue.save_migrated_chat(lane, chat_id)
                params = {**command.params, "chat_id": chat_id}
                await self._queue.retry(command.id, now, now, params=params, refund=True)
            case telegram.Failure() as failure if self._may_retry(command, failure):
                delay = self._backoff(command.attempts)
                self._hooks.retried(command, failure.code)
                logger.info(
                    "%s %s: %s; retry %d in %.1fs",
                    command.method,
                    command.id,
                    failure.description,
                    command.attempts,
                    delay,
                    extra=log_fields(command),
                )
                await self._queue.retry(command.id, now + delay, now, failure.as_error())
            case telegram.Failure() as failure:
                error = failure.as_error()
                if failure.retryable:
                    age = now - command.created_at
                    error["description"] = (
                        f"gave up after {command.attempts} attempt(s) in {age:.0f}s: "
                        f"{failure.description}"
                    )
                logger.warning(
                    "%s %s failed: %s",
                    command.method,
                    command.id,
                    error["description"],
                    extra=log_fields(command),
                )
                await self._queue.fail(command.id, error, now)
                self._hooks.failed(command, failure.code)
                self.notify_final(command.id)
                if self._on_failed is not None:
                    await self._on_failed(command, error)

    def _pause(self, lane: str, retry_after: float, now: float) -> None:
        key = flood_key(self._migrated.get(lane, lane))
        last, self._last_flood = self._last_flood, (now, lane)
        bot_wide = lane == "" or (
            last is not None and last[1] != lane and now - last[0] < GLOBAL_FLOOD_WINDOW_SECONDS
        )
        if bot_wide:
            self._flood.pause_all(retry_after)
        else:
            self._flood.pause_chat(key, retry_after)
        logger.warning(
            "Telegram asked to wait %.0fs (%s)", retry_after, "all chats" if bot_wide else lane
        )

    def _may_retry(self, command: Command, failure: telegram.Failure) -> bool:
        """Outages are budgeted by time (`max_age`); failures of the request itself by both
        time and `max_attempts`. An outage's attempts still count: one answer that proves the
        request was processed after a long outage may be its last."""
        if not failure.retryable:
            return False
        if self._clock() - command.created_at >= self._budget.max_age:
            return False
        if failure.outage:
            return True
        attempts = int(command.meta.get("max_attempts", self._budget.max_attempts))
        return command.attempts < attempts

    @staticmethod
    def _backoff(attempts: int) -> float:
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempts - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def notify_final(self, command_id: str) -> None:
        """Wake `wait_final` callers: the command reached a final status."""
        for future in self._waiters.pop(command_id, []):
            if not future.done():
                future.set_result(None)


def log_fields(command: Command) -> dict[str, Any]:
    """`extra=` for a log line about `command` (fields of the JSON log format)."""
    return {"command_id": command.id, "chat_id": command.chat_id, "method": command.method}


async def _long_text_parts_off_loop(command: Command) -> list[str] | None:
    """`long_text_parts`, in a worker thread for a long text (seconds of CPU for a big one)."""
    text = command.params.get("text")
    if isinstance(text, str) and len(text) > c.OFFLOAD_TEXT_LENGTH:
        return await asyncio.to_thread(long_text_parts, command)
    return long_text_parts(command)


def _storage_backoff(last: float) -> float:
    """The next wait while the storage is down: doubling from 0.1 s up to a cap."""
    return min(c.STORAGE_BACKOFF_CAP_SECONDS, max(0.1, last * 2))


def long_text_parts(command: Command) -> list[str] | None:
    """The parts of a sendMessage whose text is over Telegram's limit; None if it fits."""
    text = command.params.get("text")
    if command.method != "sendMessage" or not isinstance(text, str):
        return None
    if len(text) <= c.MAX_MESSAGE_LENGTH // 2:
        return None
    mode = command.params.get("parse_mode")
    try:
        if visible_length(text, mode) <= c.MAX_MESSAGE_LENGTH:
            return None
        return split_text(text, mode)
    except MarkupError:
        return None  # checked at enqueue; if it slipped through, Telegram gives the reason


def part_params(params: dict[str, Any], parts: list[str], index: int) -> dict[str, Any]:
    """Parameters of part `index`: a reply goes on the first part, buttons on the last."""
    out = {**params, "text": parts[index]}
    if index > 0:
        out.pop("reply_parameters", None)
        out.pop("reply_to_message_id", None)
    if index < len(parts) - 1:
        out.pop("reply_markup", None)
    return out
