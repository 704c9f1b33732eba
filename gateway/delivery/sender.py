"""One command's Bot API call(s), made on the flood slot the scheduler took for its lane.

A command is one call, or several: a text over Telegram's limit goes out as parts, a stored
file's split caption follows as text replies, an album counts as N messages. Parts delivered
before (a retry, a restart) are not sent again. Whatever happens becomes one
`telegram.Outcome`; an unexpected exception becomes a retryable `internal_error` Failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot

from gateway import constants as c
from gateway import paidsend, telegram
from gateway.commands import Command
from gateway.delivery.hooks import Deferred, ServiceExecutor, flood_key
from gateway.delivery.parts import long_text_parts_off_loop, part_params
from gateway.errors import StorageError
from gateway.flood import FloodController
from gateway.media.service import MediaService, MediaUnavailable, caption_part_params
from gateway.queue.base import Queue
from gateway.queue.threads import THREAD_METHOD
from gateway.redact import redact

logger = logging.getLogger(__name__)

#: Longest error description kept from an unexpected exception.
MAX_ERROR_DESCRIPTION = 300


class Sender:
    """Makes commands' Bot API calls and keeps the flood-slot bookkeeping of each lane."""

    def __init__(
        self, queue: Queue, bot: Bot, flood: FloodController, clock: Callable[[], float]
    ) -> None:
        self._queue = queue
        self._bot = bot
        self._flood = flood
        self._clock = clock
        #: lane → flood clock time its current send's slot was taken (settled on the answer).
        self.acquired: dict[str, float] = {}
        #: lane → the supergroup its chat moved to.
        self.migrated: dict[str, int] = {}
        #: lane → seconds its album waits before going out (see `charge_album`).
        self.album_wait: dict[str, float] = {}
        self.media: MediaService | None = None
        self.deferred: Deferred | None = None
        #: Executes calls to internal services (dispatches, callbacks).
        self.services: ServiceExecutor | None = None

    def forget(self) -> None:
        """Drop every lane's slot bookkeeping (the worker stopped)."""
        self.acquired.clear()
        self.album_wait.clear()

    def key(self, lane: str) -> int | str:
        """The flood-control key of `lane` (its chat, or the supergroup it moved to)."""
        return flood_key(self.migrated.get(lane, lane))

    async def call(self, lane: str, command: Command) -> telegram.Outcome:
        """One Bot API call, or, for a text over Telegram's limit, one call per part.

        An unexpected exception while building or making a call (something aiogram or pydantic
        chokes on, or a bug) becomes a retryable `internal_error` Failure: it spends the retry
        budget like any failed attempt and then fails, instead of holding its chat back.
        """
        if command.method in c.SERVICE_METHODS:
            if self.services is None:
                return telegram.Failure("no_services", "service calls are not configured", False)
            return await self._guarded(command, self.services(command))
        if self.media is not None and self.media.handles(command):
            return await self._guarded(command, self._send_media(lane, command, self.media))

        if command.method == THREAD_METHOD:
            try:
                return await self._send_deferred(lane, command)
            except StorageError:  # the thread could not be read or recorded: put back
                raise
            except Exception as exc:
                return unexpected(command, exc)
        try:
            parts = await long_text_parts_off_loop(command)
        except Exception as exc:
            return unexpected(command, exc)
        if parts is None:
            return await self._guarded(command, self.send(lane, command.method, command.params))
        # Parts already delivered (before a retry or a restart) are not sent again.
        done: list[Any] = list(command.result) if isinstance(command.result, list) else []
        start = len(done)
        for index in range(start, len(parts)):
            if index > start:  # the pick already paid for the first part's flood slot
                await self._acquire(lane)
            params = part_params(command.params, parts, index)
            outcome = await self._guarded(command, self.send(lane, command.method, params))
            if not isinstance(outcome, telegram.Delivered):
                return outcome
            done.append(outcome.result)
            command.result = done
            await self._queue.save_part(command.id, index, outcome.result, self._clock())
        return telegram.Delivered(done)

    def charge_album(self, lane: str, command: Command) -> None:
        """An album of N is N messages to Telegram: charge the other N - 1 now, right after
        the claim (its own slot was taken by the pick); if lanes picked with it took the free
        places of the bot's window, the album waits for its own (`album_wait`)."""
        acquired = self.acquired.get(lane)
        if self.media is None or acquired is None:
            return
        extra = self.media.messages(command) - 1
        if extra > 0:
            self.album_wait[lane] = self._flood.charge(self.key(lane), extra, acquired)

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
            acquired = self.acquired.get(lane)  # charged for the whole album by the claim
            extra = media.messages(command) - 1 if acquired is not None else 0
            key = self.key(lane)
            if (wait := self.album_wait.pop(lane, 0.0)) > 0:
                await asyncio.sleep(wait)
            try:
                async with media.sending(command) as params:
                    outcome = await self.send(lane, command.method, params)
            except MediaUnavailable as exc:
                self.acquired.pop(lane, None)
                return telegram.Failure("media_unavailable", str(exc), retryable=False)
            finally:
                # Like the slot `send` settles: count the album's messages from the answer on.
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
            outcome = await self.send(lane, "sendMessage", params)
            if not isinstance(outcome, telegram.Delivered):
                return outcome
            done.append(outcome.result)
            command.result = done
            await self._queue.save_part(command.id, index, outcome.result, self._clock())
        return telegram.Delivered(done)

    async def _send_deferred(self, lane: str, command: Command) -> telegram.Outcome:
        """A `showThread`: resolved now, in the chat's lane, so the message it edits was sent
        (or failed) before; nothing to do when the latest version is shown already."""
        if self.deferred is None:
            return telegram.Failure("no_inlets", "inlet messages are not configured", False)
        call = await self.deferred.resolve(command)
        if call is None:
            acquired = self.acquired.pop(lane, None)
            if acquired is not None:
                self._flood.settle(self.key(lane), acquired)
            return telegram.Delivered({"skipped": "shown already"})
        method, params = call
        if lane in self.migrated:
            params = {**params, "chat_id": self.migrated[lane]}
        outcome = await self.send(lane, method, params)
        if isinstance(outcome, telegram.Failure) and not outcome.retryable:
            instead = await self.deferred.replace(command, method, params, outcome)
            if instead is not None:
                method, params = instead
                await self._acquire(lane)
                outcome = await self.send(lane, method, params)
        if isinstance(outcome, telegram.Delivered):
            await self.deferred.delivered(command, method, outcome.result)
        return outcome

    async def _guarded(
        self, command: Command, call: Awaitable[telegram.Outcome]
    ) -> telegram.Outcome:
        try:
            return await call
        except Exception as exc:
            return unexpected(command, exc)

    async def _acquire(self, lane: str) -> None:
        key = self.key(lane)
        while (delay := self._flood.try_acquire(key)) > 0:
            await asyncio.sleep(delay)
        self.acquired[lane] = self._flood.last_acquired

    async def send(self, lane: str, method: str, params: dict[str, Any]) -> telegram.Outcome:
        """One Bot API call on a flood slot already acquired for `lane`."""
        try:  # paid broadcast's flag and fallback: gateway/paidsend.py
            return await paidsend.call(
                self._flood, self._bot, method, params, self.acquired.get(lane)
            )
        finally:
            acquired = self.acquired.pop(lane, None)
            if acquired is not None:
                self._flood.settle(self.key(lane), acquired)


def unexpected(command: Command, exc: Exception) -> telegram.Failure:
    """An exception no outcome covers, as a retryable `internal_error`."""
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
