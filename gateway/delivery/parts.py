"""A sendMessage whose text is over Telegram's limit goes out as several parts."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway import constants as c
from gateway.commands import Command
from gateway.split import MarkupError, split_text, visible_length


async def long_text_parts_off_loop(command: Command) -> list[str] | None:
    """`long_text_parts`, in a worker thread for a long text (seconds of CPU for a big one)."""
    text = command.params.get("text")
    if isinstance(text, str) and len(text) > c.OFFLOAD_TEXT_LENGTH:
        return await asyncio.to_thread(long_text_parts, command)
    return long_text_parts(command)


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
