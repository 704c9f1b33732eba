"""Ask and wait: messages that expect a person's answer, by button tap or by reply.

A question is a sendMessage command with `meta["expect_reply"]`. Once delivered it is
`awaiting_reply`; a tap on one of its buttons (`callback_query`, data `q:<id>:<row>.<col>`) or a
reply to it (`reply_to_message`) from someone allowed to answer makes it `answered`, and its
timeout makes it `expired`. Both outcomes are kept with the command (`reply`), wake
`GET /commands/{id}?wait=N`, and are POSTed, signed, to its `callback_url` when it has one.
State lives in the queue, so a restart between the question and the answer changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiogram.types import CallbackQuery, Message, User

from gateway import constants as c
from gateway.commands import Command, Status
from gateway.delivery import Worker
from gateway.errors import StorageError
from gateway.outbox import Outbox
from gateway.queue.base import Queue

logger = logging.getLogger(__name__)

PREFIX = "q:"
CLOSED_DATA = "q:closed"
MAX_ROWS, MAX_COLUMNS, MAX_BUTTON_TEXT = 8, 8, 64
EXPIRY_CHECK_SECONDS = 1.0


def valid_buttons(buttons: Any) -> bool:
    """Rows of 1 to 8 non-empty button labels (at most 8 rows, 64 characters a label)."""
    return (
        isinstance(buttons, list)
        and 1 <= len(buttons) <= MAX_ROWS
        and all(
            isinstance(row, list)
            and 1 <= len(row) <= MAX_COLUMNS
            and all(isinstance(b, str) and 1 <= len(b.strip()) <= MAX_BUTTON_TEXT for b in row)
            for row in buttons
        )
    )


def keyboard(command_id: str, buttons: list[list[str]]) -> dict[str, Any]:
    """An inline keyboard whose callback data names the question and the button."""
    return {
        "inline_keyboard": [
            [
                {"text": label, "callback_data": f"{PREFIX}{command_id}:{r}.{col}"}
                for col, label in enumerate(row)
            ]
            for r, row in enumerate(buttons)
        ]
    }


def ask(
    params: dict[str, Any],
    *,
    buttons: list[list[str]] | None,
    timeout_s: float,
    callback_url: str | None,
    callback_route: str | None = None,
    answerers: Iterable[int] | None = None,
    context: dict[str, Any] | None = None,
) -> Command:
    """A sendMessage command that asks a question (buttons, or a free-text ForceReply)."""
    command = Command(method="sendMessage", params=dict(params))
    if buttons:
        command.params["reply_markup"] = keyboard(command.id, buttons)
    else:
        command.params["reply_markup"] = {"force_reply": True, "input_field_placeholder": "Answer"}
    command.meta["expect_reply"] = {
        "buttons": buttons,
        "timeout_s": timeout_s,
        "callback_url": callback_url,
        #: Whose key signs the callback: a route's (its own service asked), else the asking
        #: API client's callback key.
        "callback_route": callback_route,
        "answerers": sorted(answerers) if answerers is not None else None,
        **(context or {}),
    }
    return command


def parse_data(data: str | None) -> tuple[str, int, int] | None:
    """`q:<command id>:<row>.<column>` → (id, row, column)."""
    if not data or not data.startswith(PREFIX):
        return None
    command_id, _, position = data[len(PREFIX) :].rpartition(":")
    row, _, col = position.partition(".")
    if not command_id or not row.isdigit() or not col.isdigit():
        return None
    return command_id, int(row), int(col)


def callback_command(
    url: str, payload: dict[str, Any], route: str | None, attempts: int, client: str | None = None
) -> Command:
    """A queued, signed POST of a question's outcome to its `callback_url` (signed with
    `route`'s key, or else with API client `client`'s callback key)."""
    meta = {"url": url, "payload": payload, "route": route, "max_attempts": attempts}
    if client is not None:
        meta["client"] = client
    return Command(
        method=c.CALLBACK_METHOD,
        params={},
        lane=f"{c.SERVICE_LANE}callback:{payload['id']}",
        meta=meta,
    )


def person(user: User) -> dict[str, Any]:
    """Who answered, as the command's `reply.by` shows it."""
    found = {"id": user.id, "first_name": user.first_name, "username": user.username}
    return {k: v for k, v in found.items() if v is not None}


class Questions:
    """Correlates taps and replies with questions, and expires the unanswered ones."""

    def __init__(
        self,
        queue: Queue,
        outbox: Outbox,
        worker: Worker,
        allowed_users: frozenset[int],
        max_attempts: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._outbox = outbox
        self._worker = worker
        self._allowed = allowed_users
        self._attempts = max_attempts
        self._clock = clock

    def may_answer(self, command: Command, user_id: int) -> bool:
        answerers = command.meta["expect_reply"].get("answerers")
        return user_id in answerers if answerers is not None else user_id in self._allowed

    async def on_tap(self, query: CallbackQuery) -> None:
        """A button was tapped: settle the question, or tell the tapper why not."""
        parsed = parse_data(query.data)
        command = await self._queue.get(parsed[0]) if parsed else None
        if command is None or "expect_reply" not in command.meta:
            await self._answer_query(query.id, "This question is closed.")
            return
        if not self.may_answer(command, query.from_user.id):
            logger.info(
                "user %d tapped %s, which is not theirs to answer", query.from_user.id, command.id
            )
            await self._answer_query(query.id, "Not yours to answer.", alert=True)
            return
        assert parsed is not None
        buttons = command.meta["expect_reply"].get("buttons") or []
        _, row, col = parsed
        if row >= len(buttons) or col >= len(buttons[row]):
            await self._answer_query(query.id, "Unknown choice.")
            return
        answer = buttons[row][col]
        reply = {"answer": answer, "by": person(query.from_user), "at": self._clock()}
        if await self.settle(command, Status.ANSWERED, reply):
            await self._answer_query(query.id, f"You chose: {answer}")
        else:
            await self._answer_query(query.id, "This question is closed.")

    async def question_replied_to(self, message: Message) -> Command | None:
        """The awaiting question `message` replies to, if any."""
        original = message.reply_to_message
        if original is None:
            return None
        for command in await self._queue.awaiting():
            result = command.result if isinstance(command.result, dict) else {}
            if (
                result.get("message_id") == original.message_id
                and result.get("chat", {}).get("id") == message.chat.id
            ):
                return command
        return None

    async def on_reply(self, message: Message, command: Command) -> None:
        """A free-text reply to a question."""
        user = message.from_user
        if user is None or not self.may_answer(command, user.id):
            logger.info(
                "a reply to %s from %s was ignored: not theirs to answer",
                command.id,
                user and user.id,
            )
            return
        reply = {"answer": message.text or "", "by": person(user), "at": self._clock()}
        await self.settle(command, Status.ANSWERED, reply)

    async def expire_due(self) -> int:
        """Expire every question past its timeout; how many were."""
        now, count = self._clock(), 0
        for command in await self._queue.awaiting():
            deadline = command.updated_at + float(command.meta["expect_reply"]["timeout_s"])
            if now >= deadline:
                reply = {"answer": None, "by": None, "at": now}
                count += await self.settle(command, Status.EXPIRED, reply)
        return count

    async def run_expiry(self) -> None:
        """Expire questions until cancelled."""
        while True:
            try:
                await self.expire_due()
            except StorageError:  # the queue's health logs it once; try again next round
                pass
            except Exception:
                logger.exception("expiring questions failed; trying again")
            await asyncio.sleep(EXPIRY_CHECK_SECONDS)

    async def settle(self, command: Command, status: Status, reply: dict[str, Any]) -> bool:
        """Record the outcome (first one wins), close the keyboard, call back, wake waiters."""
        if not await self._queue.settle_question(command.id, status, reply, self._clock()):
            return False
        logger.info("question %s %s", command.id, status.value)
        self._worker.notify_final(command.id)
        spec = command.meta["expect_reply"]
        result = command.result if isinstance(command.result, dict) else {}
        if spec.get("buttons") and "message_id" in result:
            label = (
                f"✅ {reply['answer']} — {reply['by'].get('first_name', reply['by']['id'])}"
                if status is Status.ANSWERED
                else "⌛ No answer in time"
            )
            await self._outbox.send(
                "editMessageReplyMarkup",
                chat_id=result["chat"]["id"],
                message_id=result["message_id"],
                reply_markup={"inline_keyboard": [[{"text": label, "callback_data": CLOSED_DATA}]]},
            )
        if spec.get("callback_url"):
            payload = {
                "id": command.id,
                "status": status.value,
                "reply": reply,
                **{k: spec[k] for k in ("dispatch_id",) if k in spec},
            }
            await self._outbox.submit(
                [
                    callback_command(
                        spec["callback_url"],
                        payload,
                        spec.get("callback_route"),
                        self._attempts,
                        command.client,
                    )
                ]
            )
        return True

    async def _answer_query(self, query_id: str, text: str, alert: bool = False) -> None:
        await self._outbox.send(
            "answerCallbackQuery", callback_query_id=query_id, text=text, show_alert=alert
        )
