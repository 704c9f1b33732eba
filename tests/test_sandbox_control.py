"""The control API: playing the users' side, choosing the bot, clear errors, button taps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Update
from sandbox_helpers import (
    BOT_ID,
    OTHER_USER,
    TOKEN,
    USER,
    SandboxClient,
    aiogram_bot,
    running_sandbox,
)

from gateway.sandbox import SandboxSettings

UNLIMITED = SandboxSettings(global_per_second=1000, chat_per_second=1000, group_per_minute=1000)


@pytest.fixture
async def box() -> AsyncIterator[SandboxClient]:
    async with running_sandbox(UNLIMITED) as client:
        yield client


async def updates(box: SandboxClient) -> list[dict[str, Any]]:
    answer = await box.control("GET", f"bots/{BOT_ID}/updates")
    return [item["update"] for item in answer["pending"]]


async def test_a_user_message_becomes_an_update(box: SandboxClient) -> None:
    first = await box.say("/deploy@sandbox_123456_bot api v1.2", first_name="Ann", username="ann")
    assert first == {"update_id": first["update_id"], "message_id": 1, "chat_id": USER}
    second = await box.say("thanks", reply_to_message_id=1)
    assert (second["update_id"], second["message_id"]) == (first["update_id"] + 1, 2)
    [one, two] = await updates(box)
    update = Update.model_validate(one)
    message = update.message
    assert message is not None and message.from_user is not None
    assert (message.from_user.id, message.from_user.first_name, message.chat.type) == (
        USER,
        "Ann",
        "private",
    )
    assert [(e.type, e.offset, e.length) for e in message.entities or []] == [
        ("bot_command", 0, 26)
    ]
    assert two["message"]["reply_to_message"]["message_id"] == 1
    # the chat exists from now on: the bot can answer, and ids continue in the chat
    sent = await box.result("sendMessage", chat_id=USER, text="ok")
    assert sent["message_id"] == 3


async def test_privacy_mode_in_groups(box: SandboxClient) -> None:
    await box.control(
        "POST", "chats", {"chat_id": -10, "type": "group", "title": "Ops", "bot_id": BOT_ID}
    )
    assert (await box.say("just chatting", chat_id=-10))["update_id"] is None
    assert (await box.say("/status", chat_id=-10))["update_id"] is not None
    assert (await box.say("/status@other_bot", chat_id=-10))["update_id"] is None
    assert (await box.say("hey @sandbox_123456_bot", chat_id=-10))["update_id"] is not None
    sent = await box.result("sendMessage", chat_id=-10, text="pong")
    reply = await box.say("thanks", chat_id=-10, reply_to_message_id=sent["message_id"])
    assert reply["update_id"] is not None
    chats = [u["message"]["chat"] for u in await updates(box)]
    assert chats[0] == {
        "id": -10,
        "type": "group",
        "title": "Ops",
        "all_members_are_administrators": True,
    }
    async with running_sandbox(SandboxSettings(group_privacy=False)) as open_box:
        answer = await open_box.say("just chatting", chat_id=-10)
        assert answer["update_id"] is not None


async def test_which_bot(box: SandboxClient) -> None:
    answer = await box.control("POST", "messages", {"user_id": USER, "text": "hi"}, status=400)
    assert "bot_id" in answer["error"]
    await box.result("getMe")
    await box.control("POST", "messages", {"user_id": USER, "text": "hi"})  # the only bot
    await box.api("getMe", token="999:other-token")
    answer = await box.control("POST", "messages", {"user_id": USER, "text": "hi"}, status=400)
    assert "123456" in answer["error"] and "999" in answer["error"]
    await box.control("POST", "messages", {"user_id": USER, "text": "hi", "bot_id": 999})
    bots = await box.control("GET", "bots")
    assert [b["bot_id"] for b in bots["bots"]] == [999, BOT_ID]
    assert "token" not in str(bots).replace("token_used", "")
    assert TOKEN.split(":")[1] not in str(bots) and "other-token" not in str(bots)


@pytest.mark.parametrize(
    ("verb", "path", "body", "status"),
    [
        ("POST", "messages", {"text": "hi", "bot_id": BOT_ID}, 400),
        ("POST", "messages", {"user_id": "ann", "text": "hi", "bot_id": BOT_ID}, 400),
        ("POST", "messages", {"user_id": -5, "text": "hi", "bot_id": BOT_ID}, 400),
        ("POST", "messages", {"user_id": USER, "text": "", "bot_id": BOT_ID}, 400),
        ("POST", "messages", {"user_id": USER, "text": 5, "bot_id": BOT_ID}, 400),
        (
            "POST",
            "messages",
            {"user_id": USER, "chat_id": OTHER_USER, "text": "x", "bot_id": BOT_ID},
            400,
        ),
        (
            "POST",
            "messages",
            {"user_id": USER, "text": "x", "reply_to_message_id": 9, "bot_id": BOT_ID},
            400,
        ),
        ("POST", "messages", {"user_id": USER, "text": "x", "bot_id": "abc"}, 400),
        (
            "POST",
            "messages",
            {"user_id": USER, "text": "x", "first_name": 3, "bot_id": BOT_ID},
            400,
        ),
        ("POST", "messages", [1, 2], 400),
        ("POST", "chats", {"chat_id": -5, "type": "party", "bot_id": BOT_ID}, 400),
        ("POST", "chats", {"chat_id": 5, "type": "group", "bot_id": BOT_ID}, 400),
        ("POST", "chats", {"chat_id": -5, "type": "supergroup", "bot_id": BOT_ID}, 400),
        ("POST", "chats", {"type": "group", "bot_id": BOT_ID}, 400),
        ("GET", "chats/77/messages?bot_id=123456", None, 404),
        ("GET", "chats/abc/messages?bot_id=123456", None, 400),
        ("POST", "chats/77/migrate", {"bot_id": BOT_ID}, 404),
        ("GET", "bots/55/updates", None, 404),
        ("GET", "chats/1111/messages?bot_id=55", None, 404),
        (
            "POST",
            "callbacks",
            {"user_id": USER, "message_id": 1, "data": "x", "bot_id": BOT_ID},
            404,
        ),
        ("GET", "nowhere", None, 404),
    ],
)
async def test_mistakes_are_clear_4xx(
    box: SandboxClient, verb: str, path: str, body: Any, status: int
) -> None:
    await box.result("getMe")
    answer = await box.control(verb, path, body, status=status)
    assert isinstance(answer["error"], str) and answer["error"]


async def test_a_body_that_is_not_json(box: SandboxClient) -> None:
    async with box.http.post(f"{box.base}/sandbox/messages", data=b"{oops") as resp:
        assert resp.status == 400
        assert await resp.json() == {"error": "the body must be a JSON object"}


async def test_chats_are_created_quietly_and_listed(box: SandboxClient) -> None:
    chat = await box.control(
        "POST",
        "chats",
        {"chat_id": -1001234567890, "type": "channel", "title": "News", "bot_id": BOT_ID},
    )
    assert chat == {"chat": {"id": -1001234567890, "type": "channel", "title": "News"}}
    await box.control(
        "POST", "chats", {"chat_id": 4242, "type": "private", "first_name": "Bo", "bot_id": BOT_ID}
    )
    await box.control(
        "POST", "chats", {"chat_id": 4242, "type": "group", "bot_id": BOT_ID}, status=400
    )
    assert await updates(box) == []
    await box.result("sendMessage", chat_id=4242, text="hello Bo")
    [record] = await box.sent(4242)
    assert record["text"] == "hello Bo" and record["message_id"] == 1


async def test_a_tap_on_an_inline_button(box: SandboxClient) -> None:
    await box.say("/start")
    keyboard = {"inline_keyboard": [[{"text": "Approve", "callback_data": "approve:7"}]]}
    sent = await box.result("sendMessage", chat_id=USER, text="Deploy?", reply_markup=keyboard)
    tap = {"user_id": USER, "message_id": sent["message_id"], "data": "approve:7", "bot_id": BOT_ID}
    answer = await box.control("POST", "callbacks", {**tap, "data": "reject:7"}, status=400)
    assert "offers no button" in answer["error"]
    answer = await box.control("POST", "callbacks", tap)
    async with aiogram_bot(box.base) as bot:
        update = (await bot.get_updates())[-1]
        query = update.callback_query
        assert (
            query is not None
            and query.data == "approve:7"
            and query.id == answer["callback_query_id"]
        )
        assert query.message is not None and query.message.message_id == sent["message_id"]
        assert await bot.answer_callback_query(query.id, text="Deploying") is True
        with pytest.raises(TelegramBadRequest, match="query is too old"):
            await bot.answer_callback_query(query.id)
        with pytest.raises(TelegramBadRequest, match="query is too old"):
            await bot.answer_callback_query("12345")
    [record] = (await box.control("GET", f"bots/{BOT_ID}/callbacks"))["callbacks"]
    assert record["answer"]["text"] == "Deploying" and record["data"] == "approve:7"
