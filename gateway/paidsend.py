"""One Bot API call on a flood slot: paid broadcast's flag, and its answer when the Stars ran out.

The worker hands every send it makes on an acquired flood slot to :func:`call`. The flood
controller (`gateway.flood`) says whether the slot is a paid one; only then does the call carry
``allow_paid_broadcast: true`` (never pay for what was free). A call whose method cannot carry
the flag (an edit) waits for room in the free tier instead.

When Telegram answers a paid send that the bot's Stars balance is too low
(``c.PAID_BALANCE_ERRORS``), nothing accepted may be lost: the paid tier goes off for a while
(sends keep to the free rate, one warning in the log, ``/metrics`` and ``/healthz`` say so) and
the send comes back as a retryable ``paid_broadcast_unavailable`` failure that is not counted
against ``max_attempts``, so the command is retried without the flag.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import Bot

from gateway import constants as c
from gateway import telegram
from gateway.flood import FloodController

logger = logging.getLogger(__name__)

UNAVAILABLE_CODE = "paid_broadcast_unavailable"


async def call(
    flood: FloodController,
    bot: Bot,
    method: str,
    params: dict[str, Any],
    acquired: float | None,
) -> telegram.Outcome:
    """Make the call on the slot acquired at ``acquired`` (None: no slot, e.g. none needed)."""
    if acquired is None:
        return await telegram.call(bot, method, params)
    if not can_pay(method):
        while (delay := flood.unpay(acquired)) > 0:
            await asyncio.sleep(delay)
    if not flood.leaving(acquired):
        return await telegram.call(bot, method, params)
    outcome = await telegram.call(bot, method, {**params, c.PAID_BROADCAST_PARAM: True})
    if isinstance(outcome, telegram.Delivered):
        flood.paid_sent(message_count(method, params))
    elif isinstance(outcome, telegram.Failure) and is_balance_too_low(outcome):
        if flood.paid_refused():
            logger.warning(
                "paid broadcast: Telegram says the bot's Stars balance is too low (%s); "
                "sending at the free rate for %.0fs, then trying paid sends again",
                outcome.description,
                flood.limits.paid_fallback_seconds,
            )
        return telegram.Failure(
            UNAVAILABLE_CODE,
            f"paid broadcast unavailable ({outcome.description}); retried at the free rate",
            retryable=True,
            outage=True,  # not the command's fault: retried until max_age, not max_attempts
        )
    return outcome


def can_pay(method: str) -> bool:
    """Whether `method` takes ``allow_paid_broadcast`` (sends and copies do, edits do not)."""
    cls = telegram.METHOD_CLASSES.get(method)
    return cls is not None and c.PAID_BROADCAST_PARAM in cls.model_fields


def message_count(method: str, params: dict[str, Any]) -> int:
    """How many messages a send is to Telegram: an album of N is N."""
    media = params.get("media")
    if method == "sendMediaGroup" and isinstance(media, list):
        return len(media)
    return 1


def is_balance_too_low(failure: telegram.Failure) -> bool:
    """Whether a failed paid send is Telegram's "the Stars balance is too low" answer."""
    description = failure.description.upper()
    return not failure.retryable and any(error in description for error in c.PAID_BALANCE_ERRORS)
