"""The worker's side of inlet messages: a `showThread` command becomes, when it is picked up,
a sendMessage (no message yet), an editMessageText (the message Telegram returned for the first
send, which is in the same lane and so delivered before), a reply, or nothing at all (the
latest version is shown already)."""

from __future__ import annotations

from typing import Any

from gateway.commands import Command
from gateway.queue.base import Queue


class ThreadShower:
    """Resolves `showThread` commands for the worker (`Worker.use_deferred`)."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    async def resolve(self, command: Command) -> tuple[str, dict[str, Any]] | None:
        thread = await self._queue.thread(command.meta["thread"])
        if thread is None:
            return None
        meta = command.meta
        params: dict[str, Any] = {"chat_id": command.params["chat_id"]}
        if "reply" in meta:
            params["text"] = meta["reply"]
            if thread.message_id is not None:
                params["reply_parameters"] = {
                    "message_id": thread.message_id,
                    "allow_sending_without_reply": True,
                }
            return "sendMessage", self._new_message(params, meta)
        if thread.shown >= thread.version:
            return None
        meta["version"] = thread.version  # this copy only: for `delivered`
        params["text"] = thread.text
        if thread.parse_mode:
            params["parse_mode"] = thread.parse_mode
        if thread.message_id is None:
            if thread.markup:
                params["reply_markup"] = thread.markup
            return "sendMessage", self._new_message(params, meta)
        params["message_id"] = thread.message_id
        # An empty keyboard removes the buttons (a resolved alert has none).
        params["reply_markup"] = thread.markup or {"inline_keyboard": []}
        return "editMessageText", params

    async def delivered(self, command: Command, method: str, result: Any) -> None:
        version = command.meta.get("version")
        if version is None:
            return
        message_id = None
        if method == "sendMessage" and isinstance(result, dict):
            message_id = result.get("message_id")
        await self._queue.thread_shown(command.meta["thread"], int(version), message_id)

    @staticmethod
    def _new_message(params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        if "topic" in meta:
            params["message_thread_id"] = meta["topic"]
        if meta.get("quiet"):
            params["disable_notification"] = True
        return params
