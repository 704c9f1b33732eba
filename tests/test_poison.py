"""Nothing blocks a chat: poison refused at the door, and poison that got in anyway fails.

Every body here once was answered 202 and then failed inside aiogram in the worker, retried
every minute for ever, holding back every later message to its chat.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway import constants as c
from gateway.commands import Command
from gateway.queue.sqlite import SqliteQueue
from gateway.sandbox import SandboxSettings
from tests.conftest import USER, Gateway, GatewayFactory, Sandbox, Workspace


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(global_per_second=100, chat_per_second=20)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


BUTTON = {"text": "b", "callback_data": "d"}
POISON = [
    ({"text": "lone \ud800 surrogate", "chat_id": USER}, "invalid_text", "text"),
    (
        {"method": "sendMessage", "params": {"chat_id": USER, "text": "x \udfff"}},
        "invalid_text",
        "params.text",
    ),
    ({"text": "hi", "chat_id": USER, "link_preview_options": nested(500)}, "too_deep", None),
    ({"text": "hi", "chat_id": USER, "reply_markup": nested(500)}, "too_deep", None),
    (
        {"text": "hi", "chat_id": USER, "reply_markup": {"inline_keyboard": [[{"\ud800": 1}]]}},
        "invalid_text",
        "reply_markup.inline_keyboard[0][0]",
    ),
    (
        {
            "text": "hi",
            "chat_id": USER,
            "reply_markup": {"inline_keyboard": [[{"text": "b\udc80", "callback_data": "d"}]]},
        },
        "invalid_text",
        "reply_markup.inline_keyboard[0][0].text",
    ),
    (
        {
            "method": "sendMessage",
            "params": {"chat_id": USER, "text": "hi", "reply_parameters": {"message_id": 2**64}},
        },
        "out_of_range",
        "params.reply_parameters.message_id",
    ),
    ({"text": "hi", "chat_id": 2**63}, "out_of_range", "chat_id"),
    ({"text": "hi", "chat_id": 2**60}, "invalid_chat_id", "chat_id"),
    (
        {"method": "deleteMessage", "params": {"chat_id": USER, "message_id": -(2**64)}},
        "out_of_range",
        "params.message_id",
    ),
    ({"text": "<b>never closed", "chat_id": USER, "parse_mode": "HTML"}, "invalid_markup", "text"),
    (
        {"text": "hi", "chat_id": USER, "reply_markup": {"inline_keyboard": [[BUTTON] * 2000]}},
        "too_many_values",
        None,
    ),
]


@pytest.mark.parametrize(("body", "code", "field"), POISON)
async def test_poison_is_refused_and_the_chat_goes_on(
    gateway: Gateway, sandbox: Sandbox, body: dict[str, Any], code: str, field: str | None
) -> None:
    await sandbox.create_chat(USER)
    status, answer = await gateway.enqueue(body)
    assert status == 400, answer
    assert answer["error"]["code"] == code, answer
    assert answer["error"]["message"]
    if field is not None:
        assert answer["error"]["field"] == field
    else:  # too deep or too big: named somewhere inside the object that is
        assert answer["error"]["field"].split(".")[0] in body
    status, answer = await gateway.enqueue({"text": "next", "chat_id": USER})
    assert status == 202, answer
    done = await gateway.command(answer["id"], wait=10)
    assert done["status"] == "sent", done
    assert [m["text"] for m in await sandbox.messages(USER)] == ["next"]


async def test_nesting_within_the_limit_is_accepted(gateway: Gateway) -> None:
    keyboard = {"inline_keyboard": [[{"text": "open", "web_app": {"url": "https://x.test/"}}]]}
    params = {"chat_id": USER, "text": "hi", "reply_markup": keyboard}
    status, answer = await gateway.enqueue({"method": "sendMessage", "params": params})
    assert status == 202, answer
    assert c.MAX_BODY_DEPTH >= 6


async def test_poison_already_queued_fails_and_the_chat_goes_on(
    workspace: Workspace, gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    """A command that slipped into the queue (an older gateway let it in) uses up its retry
    budget, ends `failed` with the error, and the message behind it is sent."""
    await sandbox.create_chat(USER)
    queue = SqliteQueue(workspace.root / c.DEFAULT_QUEUE_PATH)
    await queue.open()
    poison = Command("sendMessage", {"chat_id": USER, "text": "lone \ud800 surrogate"})
    deep = Command(
        "sendMessage", {"chat_id": USER, "text": "deep", "link_preview_options": nested(500)}
    )
    behind = Command("sendMessage", {"chat_id": USER, "text": "behind it"})
    for command in (poison, deep, behind):
        command.client = "tests"
    await queue.put([poison, deep, behind])
    await queue.close()
    async with gateway_factory({"GATEWAY_DELIVERY_MAX_ATTEMPTS": "2"}) as gw:
        done = await gw.command(behind.id, wait=30)
        assert done["status"] == "sent", done
        for bad in (poison, deep):
            failed = await gw.command(bad.id)
            assert failed["status"] == "failed", failed
            assert failed["attempts"] == 2
            assert failed["error"]["code"] == "internal_error"
            assert "gave up after 2 attempt(s)" in failed["error"]["description"]
    assert [m["text"] for m in await sandbox.messages(USER)] == ["behind it"]
