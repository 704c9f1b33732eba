"""The sandbox's Bot API: wire format, envelopes, the error table, message methods."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
    User,
)
from aiohttp import web
from sandbox_helpers import (
    BOT_ID,
    TOKEN,
    USER,
    SandboxClient,
    aiogram_bot,
    running_sandbox,
)

from gateway.sandbox import SandboxSettings, TokenRedactingFilter, create_sandbox_app, redact

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


#: These tests are not about flood control (tests/test_sandbox_limits.py is).
UNLIMITED = SandboxSettings(global_per_second=1000, chat_per_second=1000, group_per_minute=1000)


@pytest.fixture
async def box() -> AsyncIterator[SandboxClient]:
    async with running_sandbox(UNLIMITED) as client:
        yield client


async def test_get_me_through_unchanged_aiogram(box: SandboxClient) -> None:
    async with aiogram_bot(box.base) as bot:
        me = await bot.get_me()
    assert isinstance(me, User)
    assert (me.id, me.is_bot, me.username) == (BOT_ID, True, f"sandbox_{BOT_ID}_bot")
    assert me.can_join_groups is True and me.supports_inline_queries is False


@pytest.mark.parametrize("token", ["abc", "123", "123:", "123:a b", "0123:abc", "12a:abc"])
async def test_a_malformed_token_is_404_like_api_telegram_org(
    box: SandboxClient, token: str
) -> None:
    async with box.http.get(f"{box.base}/bot{token}/getMe") as resp:
        assert resp.status == 404
        assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_each_token_is_its_own_bot_and_owns_its_id(box: SandboxClient) -> None:
    assert (await box.result("getMe"))["id"] == BOT_ID
    status, other = await box.api("getMe", token="777:another-bot")
    assert status == 200 and other["result"]["id"] == 777
    status, body = await box.api("getMe", token=f"{BOT_ID}:a-different-secret")
    assert (status, body["description"]) == (401, "Unauthorized")


async def test_unknown_methods_are_404_and_names_are_case_insensitive(box: SandboxClient) -> None:
    status, body = await box.api("frobnicate")
    assert (status, body) == (
        404,
        {"ok": False, "error_code": 404, "description": "Not Found: method not found"},
    )
    for spelling in ("GETME", "getme", "GetMe"):
        async with box.http.get(f"{box.base}/bot{TOKEN}/{spelling}") as resp:
            assert resp.status == 200 and (await resp.json())["result"]["id"] == BOT_ID
    async with box.http.get(f"{box.base}/bot{TOKEN}/getFile/extra") as resp:
        assert resp.status == 404
    async with box.http.get(f"{box.base}/file/bot{TOKEN}/photos/1.jpg") as resp:
        assert resp.status == 404
    async with box.http.get(f"{box.base}/file/botnope/photos/1.jpg") as resp:
        assert resp.status == 404


async def test_a_bot_api_method_not_emulated_is_a_bad_request_not_a_bad_token(
    box: SandboxClient,
) -> None:
    status, body = await box.api("sendSticker", chat_id=USER, sticker="x")
    assert (status, body["description"]) == (
        400,
        "Bad Request: method sendSticker is not emulated by the sandbox",
    )


@pytest.mark.parametrize("verb", ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
async def test_only_get_and_post_are_implemented(box: SandboxClient, verb: str) -> None:
    async with box.http.request(verb, f"{box.base}/bot{TOKEN}/getMe") as resp:
        assert resp.status == 501
        assert await resp.read() == b""
    async with box.http.request(verb, f"{box.base}/elsewhere") as resp:
        assert resp.status == 501
    assert (await box.result("getMe"))["id"] == BOT_ID


async def test_a_get_with_a_body_is_read_like_a_post(box: SandboxClient) -> None:
    await box.say("/start")
    url = f"{box.base}/bot{TOKEN}/sendMessage"
    async with box.http.get(url, json={"chat_id": USER, "text": "json"}) as resp:
        assert resp.status == 200, await resp.text()
    async with box.http.get(url, data={"chat_id": str(USER), "text": "form"}) as resp:
        assert resp.status == 200, await resp.text()
    form = aiohttp.FormData()
    form.add_field("chat_id", str(USER))
    form.add_field("text", "multipart")
    form.add_field("file", b"unused", filename="f.bin")
    async with box.http.get(url, data=form) as resp:
        assert resp.status == 200, await resp.text()
    assert [m["text"] for m in await box.sent(USER)] == ["json", "form", "multipart"]


async def test_parameters_arrive_in_every_encoding(box: SandboxClient) -> None:
    await box.say("/start")
    url = f"{box.base}/bot{TOKEN}/sendMessage"
    keyboard = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    async with box.http.get(url, params={"chat_id": str(USER), "text": "by query"}) as resp:
        assert (await resp.json())["result"]["text"] == "by query"
    async with box.http.post(url, json={"chat_id": USER, "text": "by json"}) as resp:
        assert (await resp.json())["result"]["text"] == "by json"
    form = {"chat_id": str(USER), "text": "by form", "reply_markup": json.dumps(keyboard)}
    async with box.http.post(url, data=form) as resp:
        answer = await resp.json()
        assert answer["result"]["reply_markup"] == keyboard
    multipart = aiohttp.FormData()
    multipart.add_field("chat_id", str(USER))
    multipart.add_field("text", "attach://part")
    multipart.add_field("disable_notification", "true")
    multipart.add_field("part", b"ignored file", filename="f.txt")
    async with box.http.post(url, data=multipart) as resp:
        assert resp.status == 200
    texts = [m["text"] for m in await box.sent(USER)]
    assert texts == ["by query", "by json", "by form", "attach://part"]


async def test_a_body_that_is_not_json_is_a_400(box: SandboxClient) -> None:
    headers = {"Content-Type": "application/json"}
    url = f"{box.base}/bot{TOKEN}/getMe"
    async with box.http.post(url, data=b"{nope", headers=headers) as resp:
        body = await resp.json()
    assert resp.status == 400 and body["description"].startswith("Bad Request: ")


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"text": "hi"}, "Bad Request: chat_id is empty"),
        ({"chat_id": USER}, "Bad Request: message text is empty"),
        ({"chat_id": USER, "text": "  \n "}, "Bad Request: message text is empty"),
        ({"chat_id": 999, "text": "hi"}, "Bad Request: chat not found"),
        ({"chat_id": "@nobody", "text": "hi"}, "Bad Request: chat not found"),
        ({"chat_id": USER, "text": "x" * 4097}, "Bad Request: message is too long"),
        ({"chat_id": USER, "text": "😀" * 2048 + "x"}, "Bad Request: message is too long"),
        # over 32 KiB of UTF-8 the server refuses the text before parsing it
        ({"chat_id": USER, "text": "é" * 16385}, "Bad Request: text is too long"),
        ({"chat_id": "1111abc", "text": ""}, "Bad Request: message text is empty"),
        ({"chat_id": "abc", "text": "hi"}, "Bad Request: chat not found"),
        (
            {"chat_id": USER, "text": "hi", "parse_mode": "BBCode"},
            "Bad Request: unsupported parse_mode",
        ),
        (
            {"chat_id": USER, "text": "hi", "reply_to_message_id": 99},
            "Bad Request: message to be replied not found",
        ),
        (
            {"chat_id": USER, "text": "hi", "reply_markup": "{nope"},
            "Bad Request: can't parse reply keyboard markup JSON object",
        ),
        (
            {"chat_id": USER, "text": "hi", "reply_markup": [1]},
            "Bad Request: object expected as reply markup",
        ),
        (
            {"chat_id": USER, "text": "hi", "reply_markup": {"inline_keyboard": "x"}},
            'Bad Request: field "inline_keyboard" must be of type Array',
        ),
        (
            {"chat_id": USER, "text": "hi", "reply_markup": {"inline_keyboard": ["x"]}},
            'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of '
            "Arrays",
        ),
        (
            {"chat_id": USER, "text": "hi", "reply_markup": {"keyboard": [{"text": "a"}]}},
            'Bad Request: field "keyboard" must be an Array of Arrays',
        ),
        (
            {
                "chat_id": USER,
                "text": "hi",
                "reply_markup": {"inline_keyboard": [[{"text": "x", "callback_data": "d" * 65}]]},
            },
            "Bad Request: BUTTON_DATA_INVALID",
        ),
        (
            {"chat_id": USER, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "x"}]]}},
            "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the "
            "inline keyboard",
        ),
    ],
)
async def test_send_message_errors_are_telegrams(
    box: SandboxClient, params: dict[str, Any], description: str
) -> None:
    await box.say("/start")
    status, body = await box.api("sendMessage", **params)
    assert (status, body) == (400, {"ok": False, "error_code": 400, "description": description})
    assert await box.sent(USER) == []


async def test_limits_are_inclusive(box: SandboxClient) -> None:
    await box.say("/start")
    await box.result("sendMessage", chat_id=USER, text="x" * 4096)
    await box.result("sendMessage", chat_id=USER, text="😀" * 2048)
    data = "é" * 32  # 64 bytes
    markup = {"inline_keyboard": [[{"text": "ok", "callback_data": data}]]}
    await box.result("sendMessage", chat_id=USER, text="hi", reply_markup=markup)


async def test_send_message_returns_a_message_aiogram_accepts(box: SandboxClient) -> None:
    said = await box.say("/start", first_name="Ann", username="ann")
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Yes", callback_data="yes")]]
    )
    async with aiogram_bot(box.base) as bot:
        message = await bot.send_message(
            USER,
            "<b>Deploy</b> v1.2 to <i>prod</i>?",
            parse_mode="HTML",
            reply_markup=keyboard,
            reply_parameters=ReplyParameters(message_id=said["message_id"]),
        )
    assert isinstance(message, Message)
    assert message.message_id == said["message_id"] + 1  # one counter per chat
    assert message.from_user is not None and message.from_user.id == BOT_ID
    assert (message.chat.id, message.chat.type, message.chat.first_name) == (USER, "private", "Ann")
    assert message.text == "Deploy v1.2 to prod?"
    assert [(e.type, e.offset, e.length) for e in message.entities or []] == [
        ("bold", 0, 6),
        ("italic", 15, 4),
    ]
    assert message.reply_markup is not None
    assert message.reply_markup.inline_keyboard[0][0].callback_data == "yes"
    assert message.reply_to_message is not None
    assert message.reply_to_message.text == "/start"
    [record] = await box.sent(USER)
    assert record["reply_markup"] == keyboard.model_dump(exclude_none=True)
    assert record["reply_to_message_id"] == said["message_id"]
    assert record["edit_date"] is None


async def test_reply_keyboards_are_recorded_but_not_echoed(box: SandboxClient) -> None:
    await box.say("/start")
    markup = {"keyboard": [["A", {"text": "B"}]], "resize_keyboard": True}
    message = await box.result("sendMessage", chat_id=USER, text="pick", reply_markup=markup)
    assert "reply_markup" not in message
    [record] = await box.sent(USER)
    assert record["reply_markup"]["keyboard"] == [[{"text": "A"}, {"text": "B"}]]


async def test_edits_and_deletions(box: SandboxClient) -> None:
    said = await box.say("/start")
    async with aiogram_bot(box.base) as bot:
        sent = await bot.send_message(USER, "draft")
        with pytest.raises(TelegramBadRequest, match="message is not modified"):
            await bot.edit_message_text("draft", chat_id=USER, message_id=sent.message_id)
        edited = await bot.edit_message_text("final", chat_id=USER, message_id=sent.message_id)
        assert isinstance(edited, Message) and edited.edit_date is not None
        with pytest.raises(TelegramBadRequest, match="message to edit not found"):
            await bot.edit_message_text("x", chat_id=USER, message_id=999)
        with pytest.raises(TelegramBadRequest, match="message can't be edited"):
            await bot.edit_message_text("x", chat_id=USER, message_id=said["message_id"])
        assert await bot.delete_message(USER, sent.message_id) is True
        with pytest.raises(TelegramBadRequest, match="message to delete not found"):
            await bot.delete_message(USER, sent.message_id)
    status, body = await box.api("editMessageText", chat_id=USER, message_id=1, text=" ")
    assert (status, body["description"]) == (400, "Bad Request: message text is empty")
    assert await box.sent(USER) == []
    [record] = await box.sent(USER, include_deleted=1)
    assert (record["text"], record["deleted"]) == ("final", True)
    assert record["edit_date"] is not None


async def test_edit_message_reply_markup(box: SandboxClient) -> None:
    await box.say("/start")
    keyboard = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    sent = await box.result("sendMessage", chat_id=USER, text="t", reply_markup=keyboard)
    ids = {"chat_id": USER, "message_id": sent["message_id"]}
    status, body = await box.api("editMessageReplyMarkup", **ids, reply_markup=keyboard)
    assert body["description"] == NOT_MODIFIED
    cleared = await box.result("editMessageReplyMarkup", **ids)
    assert "reply_markup" not in cleared
    status, body = await box.api("editMessageReplyMarkup", **ids)
    assert body["description"] == NOT_MODIFIED
    # Client.cpp: with a chat_id a missing message_id is a message not found; without either
    # the call means an inline message, whose id is then missing
    status, body = await box.api("editMessageText", chat_id=USER, text="t")
    assert (status, body["description"]) == (400, "Bad Request: message to edit not found")
    status, body = await box.api("editMessageText", text="t")
    assert body["description"] == "Bad Request: message identifier is not specified"
    status, body = await box.api("editMessageReplyMarkup", inline_message_id="AgAAAB")
    assert body["description"] == "Bad Request: invalid inline message identifier specified"


async def test_chat_action_and_get_chat(box: SandboxClient) -> None:
    await box.say("/start", first_name="Ann")
    assert await box.result("sendChatAction", chat_id=USER, action="typing") is True
    status, body = await box.api("sendChatAction", chat_id=USER, action="dancing")
    assert (status, body["description"]) == (400, "Bad Request: wrong parameter action in request")
    status, body = await box.api("sendChatAction", chat_id=42, action="typing")
    assert body["description"] == "Bad Request: chat not found"
    async with aiogram_bot(box.base) as bot:
        chat = await bot.get_chat(USER)
    assert (chat.id, chat.type, chat.first_name) == (USER, "private", "Ann")


async def test_bot_commands(box: SandboxClient) -> None:
    commands = [{"command": "help", "description": "Show help"}]
    assert await box.result("setMyCommands", commands=commands) is True
    assert await box.result("getMyCommands") == commands
    scope = {"type": "all_private_chats"}
    assert await box.result("getMyCommands", scope=scope) == []
    bad = [
        ([{"command": "Help", "description": "x"}], "Bad Request: BOT_COMMAND_INVALID"),
        ([{"command": "a" * 33, "description": "x"}], "Bad Request: BOT_COMMAND_INVALID"),
        ([{"command": "ok", "description": ""}], "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID"),
        (
            [{"command": "ok", "description": "x" * 257}],
            "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID",
        ),
        (
            [{"command": f"c{i}", "description": "x"} for i in range(101)],
            "Bad Request: BOT_COMMANDS_TOO_MUCH",
        ),
    ]
    for value, description in bad:
        status, body = await box.api("setMyCommands", commands=value)
        assert (status, body["description"]) == (400, description)
    assert await box.result("deleteMyCommands") is True
    assert await box.result("getMyCommands") == []


async def test_log_out_and_close_answer_true(box: SandboxClient) -> None:
    assert await box.result("logOut") is True
    assert await box.result("close") is True


async def test_the_access_log_never_shows_a_token(
    box: SandboxClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        await box.result("getMe")
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any(f"/bot{BOT_ID}:***/getMe" in line for line in lines), lines
    assert not any("sandbox-test-token" in line for line in lines)
    assert redact(f"GET /file/bot{TOKEN}/a.jpg") == f"GET /file/bot{BOT_ID}:***/a.jpg"
    record = logging.LogRecord("x", logging.INFO, "f", 1, "%s", (f"/bot{TOKEN}/getMe",), None)
    TokenRedactingFilter().filter(record)
    assert record.getMessage() == f"/bot{BOT_ID}:***/getMe"


async def test_the_default_access_logger_is_redacted_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_sandbox_app()
    runner = web.AppRunner(app)  # aiohttp's own AccessLogger
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        url = f"http://127.0.0.1:{port}/bot{TOKEN}/getMe"
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            async with aiohttp.ClientSession() as http, http.get(url) as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert lines and all("sandbox-test-token" not in line for line in lines), lines


async def test_a_query_string_webhook_secret_never_reaches_the_access_log(
    box: SandboxClient, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{box.base}/bot{TOKEN}/setWebhook"
    query = {"url": "https://127.0.0.1:8443/hook", "secret_token": "query-secret_9"}
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        async with box.http.get(url, params=query) as resp:
            assert resp.status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any("secret_token=***" in line for line in lines), lines
    assert not any("query-secret_9" in line for line in lines)
    record = logging.LogRecord(
        "x", logging.INFO, "f", 1, "%s", (f"GET /bot{TOKEN}/setWebhook?secret_token=abc",), None
    )
    TokenRedactingFilter().filter(record)
    assert record.getMessage() == f"GET /bot{BOT_ID}:***/setWebhook?secret_token=***"


async def test_user_ids_that_never_started_the_bot_are_forbidden(box: SandboxClient) -> None:
    await box.say("/status", user_id=3333, chat_id=-4000)
    status, body = await box.api("sendMessage", chat_id=3333, text="hi")
    assert (status, body["description"]) == (
        403,
        "Forbidden: bot can't initiate conversation with a user",
    )
    status, body = await box.api("sendMessage", chat_id=4444, text="hi")
    assert (status, body["description"]) == (400, "Bad Request: chat not found")
    await box.say("/start", user_id=3333)  # starting the bot opens the private chat
    assert (await box.result("sendMessage", chat_id=3333, text="hi"))["chat"]["id"] == 3333
