"""The worker's side of inlet messages: a `showThread` command becomes, when it is picked up,
a sendMessage (no message yet), an editMessageText (the message Telegram returned for the first
send, which is in the same lane and so delivered before), a reply, or nothing at all (the
latest version is shown already).

What Telegram shows is recorded (`Queue.thread_shown`) after it answers. When the storage
refuses that write, the message id is kept here and written before anything else is done for
the thread, so a storage error cannot make the first message be sent twice; only a crash
between Telegram's answer and that write can (README, "Inlets": at-least-once).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Final

from gateway.commands import Command
from gateway.inlets.config import Inlet
from gateway.inlets.lifecycle import Lifecycle
from gateway.queue.base import Queue
from gateway.telegram import Failure

logger = logging.getLogger(__name__)

#: Telegram's answer to an edit of a message that is no longer in the chat (deleted there).
MESSAGE_GONE: Final = "message to edit not found"


class ThreadShower:
    """Resolves `showThread` commands for the worker (`Worker.use_deferred`)."""

    def __init__(self, queue: Queue, inlets: dict[str, Inlet], lifecycle: Lifecycle) -> None:
        self._queue = queue
        self._inlets = inlets
        self._lifecycle = lifecycle
        #: What Telegram shows and the storage has not taken yet: thread id → thread_shown's
        #: (version, message id, digest).
        self._unrecorded: dict[str, tuple[int, int | None, str]] = {}

    async def resolve(self, command: Command) -> tuple[str, dict[str, Any]] | None:
        await self._record(command.meta["thread"])  # a StorageError puts the command back
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
        inlet = self._inlets.get(thread.inlet)
        if thread.shown >= thread.version or inlet is None:
            return None
        text, mode, markup = self._lifecycle.render(inlet, thread)
        digest = _digest(text, mode, markup)
        # For `delivered` (this copy of the command only).
        meta["version"], meta["digest"] = thread.version, digest
        if thread.message_id is not None and digest == thread.digest:
            # Renders as what Telegram shows already: an edit would be refused ("message is
            # not modified"). Shown, then.
            await self._queue.thread_shown(thread.id, thread.version, None, digest)
            return None
        params["text"] = text
        if mode:
            params["parse_mode"] = mode
        if thread.message_id is None:
            if markup:
                params["reply_markup"] = markup
            return "sendMessage", self._new_message(params, meta)
        params["message_id"] = thread.message_id
        # An empty keyboard removes the buttons (a resolved alert has none).
        params["reply_markup"] = markup or {"inline_keyboard": []}
        return "editMessageText", params

    async def delivered(self, command: Command, method: str, result: Any) -> None:
        version = command.meta.get("version")
        if version is None:
            return
        message_id = None
        if method == "sendMessage" and isinstance(result, dict):
            message_id = result.get("message_id")
        thread_id = command.meta["thread"]
        # Kept until the storage takes it: a retry of this command, or the next one of the
        # thread, must edit this message, not send another.
        self._unrecorded[thread_id] = (int(version), message_id, command.meta["digest"])
        await self._record(thread_id)

    async def replace(
        self, command: Command, method: str, params: dict[str, Any], failure: Failure
    ) -> tuple[str, dict[str, Any]] | None:
        """An edit of a message deleted in the chat becomes a new message (the thread then
        follows that one); any other failure stands."""
        if method != "editMessageText" or MESSAGE_GONE not in failure.description.lower():
            return None
        thread_id, gone = command.meta["thread"], params["message_id"]
        await self._queue.thread_message_gone(thread_id, gone)
        logger.info(
            "inlet message %s of thread %s was deleted in the chat; sending a new one",
            gone,
            thread_id,
        )
        fresh = {k: v for k, v in params.items() if k not in ("message_id", "reply_markup")}
        markup = params.get("reply_markup")
        if markup and markup.get("inline_keyboard"):
            fresh["reply_markup"] = markup
        return "sendMessage", self._new_message(fresh, command.meta)

    async def _record(self, thread_id: str) -> None:
        shown = self._unrecorded.get(thread_id)
        if shown is None:
            return
        await self._queue.thread_shown(thread_id, *shown)
        if self._unrecorded.get(thread_id) == shown:
            del self._unrecorded[thread_id]

    @staticmethod
    def _new_message(params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        if "topic" in meta:
            params["message_thread_id"] = meta["topic"]
        if meta.get("quiet"):
            params["disable_notification"] = True
        return params


def _digest(text: str, mode: str | None, markup: Any) -> str:
    blob = json.dumps([text, mode, markup], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
