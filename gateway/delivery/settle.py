"""What Telegram's answer means for a command, recorded in the queue.

Delivered → `sent` (or `awaiting_reply` for a question); 429 → back to the queue after the
wait, the chat (or, for 429s in several chats at once, the whole bot) paused; migrated → the
chat followed to its supergroup and the command retried there; a retryable failure within the
budget → retried after a backoff; anything else → `failed`, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway import telegram
from gateway.commands import Command, Status
from gateway.delivery.hooks import DeliveryHooks, FailureHandler, log_fields
from gateway.delivery.policy import RetryBudget, backoff
from gateway.delivery.sender import Sender
from gateway.flood import FloodController
from gateway.queue.base import Completed, Queue

logger = logging.getLogger(__name__)

#: Two 429s for different chats this close together mean the bot as a whole is throttled.
GLOBAL_FLOOD_WINDOW_SECONDS = 1.0


class Settler:
    """Records outcomes; tells hooks, status waiters and the failure handler."""

    def __init__(
        self,
        queue: Queue,
        flood: FloodController,
        sender: Sender,
        budget: RetryBudget,
        hooks: DeliveryHooks,
        notify_final: Callable[[str], None],
        clock: Callable[[], float],
    ) -> None:
        self._queue = queue
        self._flood = flood
        self._sender = sender
        self._budget = budget
        self._hooks = hooks
        self._notify_final = notify_final
        self._clock = clock
        self._last_flood: tuple[float, str] | None = None
        #: Told about every command that failed for good (to tell the user, say).
        self.on_failed: FailureHandler | None = None

    async def settle(
        self, lane: str, command: Command, outcome: telegram.Outcome
    ) -> Completed | None:
        """Record what `outcome` means for `command` (sent from `lane`).

        A delivery returns once its record is committed, with the lane's next due time; the
        caller calls `durable` once `Completed.durable` says it is on disk (the status waiters
        hear of it then), or `record_delivered` if the disk did not confirm it. Anything else
        returns None once its record is on disk.
        """
        now = self._clock()
        match outcome:
            case telegram.Delivered(result):
                done = await self._queue.complete_and_peek(
                    command.id, result, now, _delivered_status(command), lane
                )
                self._hooks.sent(command, now - command.created_at)
                if logger.isEnabledFor(logging.DEBUG):  # no log fields built per send
                    logger.debug(
                        "%s %s delivered", command.method, command.id, extra=log_fields(command)
                    )
                return done
            case telegram.FloodWait(retry_after, description):
                self._pause(lane, retry_after, now)
                self._hooks.flood_wait(command, retry_after)
                error = {"code": "too_many_requests", "description": description}
                await self._queue.retry(command.id, now + retry_after, now, error, refund=True)
            case telegram.Migrated(chat_id, description):
                logger.info(
                    "chat %s migrated to %s; following it", lane, chat_id, extra=log_fields(command)
                )
                self._sender.migrated[lane] = chat_id
                await self._queue.save_migrated_chat(lane, chat_id)
                params = {**command.params, "chat_id": chat_id}
                await self._queue.retry(command.id, now, now, params=params, refund=True)
            case telegram.Failure() as failure if self._budget.allows(command, failure, now):
                delay = backoff(command.attempts)
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
                self._notify_final(command.id)
                if self.on_failed is not None:
                    await self.on_failed(command, error)

        return None

    def durable(self, command: Command) -> None:
        """A delivery's record is on disk: wake whoever waits for the command to be final."""
        if "expect_reply" not in command.meta:  # a question is final once answered or expired
            self._notify_final(command.id)

    async def record_delivered(self, command: Command, result: object) -> None:
        """Record a delivery again and wait for the disk (its first record was not confirmed
        on disk)."""
        await self._queue.complete(command.id, result, self._clock(), _delivered_status(command))
        self.durable(command)

    def _pause(self, lane: str, retry_after: float, now: float) -> None:
        key = self._sender.key(lane)
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


def _delivered_status(command: Command) -> Status:
    return Status.AWAITING_REPLY if "expect_reply" in command.meta else Status.SENT
