"""pyTelegramBotAPI (telebot) drives the sandbox through its own public API.

telebot is synchronous (requests), so each call runs in a thread while the sandbox serves on
the test's event loop. It is a demanding referee: it sends every call as a GET with the
parameters in the query string, and setWebhook's certificate as a multipart body of that GET,
which Telegram's server reads; its errors are `ApiTelegramException` with Telegram's
`error_code`, `description` and `parameters`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import telebot
from aiohttp import web
from sandbox_helpers import (
    BOT_ID,
    FAST_RETRY,
    OTHER_USER,
    TOKEN,
    USER,
    SandboxClient,
    running_sandbox,
    webhook_receiver,
)
from telebot import apihelper, types
from telebot.apihelper import ApiTelegramException

from gateway.sandbox import SandboxSettings

GROUP = -4000
CHANNEL = -1000000000777
UNLIMITED = SandboxSettings(
    global_per_second=1000,
    chat_per_second=1000,
    group_per_minute=1000,
    set_webhook_interval_seconds=FAST_RETRY.set_webhook_interval_seconds,
    retry_base_seconds=FAST_RETRY.retry_base_seconds,
    retry_cap_seconds=FAST_RETRY.retry_cap_seconds,
)


@pytest.fixture
async def box() -> AsyncIterator[SandboxClient]:
    async with running_sandbox(UNLIMITED) as client:
        yield client


@pytest.fixture(autouse=True)
def _short_timeouts() -> Iterator[None]:
    saved = apihelper.CONNECT_TIMEOUT, apihelper.READ_TIMEOUT
    apihelper.CONNECT_TIMEOUT, apihelper.READ_TIMEOUT = 5, 15
    yield
    apihelper.CONNECT_TIMEOUT, apihelper.READ_TIMEOUT = saved


def point_at(box: SandboxClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """telebot's documented way to use another Bot API server: `apihelper.API_URL`."""
    monkeypatch.setattr(apihelper, "API_URL", f"{box.base}/bot{{0}}/{{1}}")
    monkeypatch.setattr(apihelper, "FILE_URL", f"{box.base}/file/bot{{0}}/{{1}}")


def telebot_bot(token: str = TOKEN, **options: Any) -> telebot.TeleBot:
    return telebot.TeleBot(token, threaded=False, **options)


async def test_get_me_and_send(box: SandboxClient, monkeypatch: pytest.MonkeyPatch) -> None:
    point_at(box, monkeypatch)
    await box.say("/start")
    bot = telebot_bot()
    me = await asyncio.to_thread(bot.get_me)
    assert (me.id, me.is_bot, me.username) == (BOT_ID, True, f"sandbox_{BOT_ID}_bot")
    markup = types.InlineKeyboardMarkup()
    markup.add(types.InlineKeyboardButton("OK", callback_data="ok"))
    message = await asyncio.to_thread(
        bot.send_message, USER, "*hi*", parse_mode="MarkdownV2", reply_markup=markup
    )
    assert message.text == "hi" and [e.type for e in message.entities] == ["bold"]
    assert message.reply_markup is not None
    tapped = await box.control(
        "POST", "callbacks", {"user_id": USER, "message_id": message.message_id, "data": "ok"}
    )
    [update] = await asyncio.to_thread(bot.get_updates, offset=-1, timeout=5)
    assert update.callback_query.id == tapped["callback_query_id"]
    assert await asyncio.to_thread(bot.answer_callback_query, update.callback_query.id, "Done")


async def test_errors_carry_telegrams_codes_and_descriptions(
    box: SandboxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(box, monkeypatch)
    await box.say("/start")
    await box.say("/start", user_id=OTHER_USER)
    await box.control("POST", f"users/{OTHER_USER}/block", {"bot_id": BOT_ID})
    await box.control("POST", "chats", {"chat_id": GROUP, "type": "group", "bot_id": BOT_ID})
    bot = telebot_bot()

    async def failure(function: Any, *args: Any, **kwargs: Any) -> ApiTelegramException:
        with pytest.raises(ApiTelegramException) as exc_info:
            await asyncio.to_thread(function, *args, **kwargs)
        return exc_info.value

    error = await failure(bot.send_message, 999_999, "hello")
    assert (error.error_code, error.description) == (400, "Bad Request: chat not found")
    error = await failure(bot.send_message, OTHER_USER, "hello")
    assert (error.error_code, error.description) == (403, "Forbidden: bot was blocked by the user")
    await box.say("/status", user_id=3333, chat_id=GROUP)
    error = await failure(bot.send_message, 3333, "hello")
    assert (error.error_code, error.description) == (
        403,
        "Forbidden: bot can't initiate conversation with a user",
    )
    migrated = await box.control("POST", f"chats/{GROUP}/migrate", {"bot_id": BOT_ID})
    error = await failure(bot.send_message, GROUP, "hello")
    assert error.error_code == 400
    assert error.result_json["parameters"] == {"migrate_to_chat_id": migrated["migrate_to_chat_id"]}
    error = await failure(bot.send_photo, USER, "AgACAgIAAxkBAAIBAAFh")
    assert error.description == "Bad Request: wrong file identifier/HTTP URL specified"
    # with a chat but no message id: Client.cpp looks for message 0, which is never found
    error = await failure(bot.edit_message_text, "x", chat_id=USER)
    assert error.description == "Bad Request: message to edit not found"
    error = await failure(bot.edit_message_text, "x")
    assert error.description == "Bad Request: message identifier is not specified"
    error = await failure(bot.send_sticker, USER, "CAACAgIAAxkBAAIBAAFh")
    assert error.error_code == 400 and "not emulated" in error.description
    # a well-formed token whose bot id another token owns: Telegram's 401
    error = await failure(telebot_bot(f"{BOT_ID}:someone-elses-secret").get_me)
    assert (error.error_code, error.description) == (401, "Unauthorized")
    # a malformed one (telebot refuses it unless told not to): api.telegram.org's 404
    error = await failure(telebot_bot("not-a-token", validate_token=False).get_me)
    assert (error.error_code, error.description) == (404, "Not Found")


async def test_polling_with_offsets_and_long_poll_timeouts(
    box: SandboxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(box, monkeypatch)
    bot = telebot_bot()
    first = await box.say("one")
    await box.say("two")
    updates = await asyncio.to_thread(bot.get_updates, timeout=5, long_polling_timeout=1)
    assert [u.message.text for u in updates] == ["one", "two"]
    assert updates[0].update_id == first["update_id"] >= 100_000_000
    offset = updates[-1].update_id + 1
    none = await asyncio.to_thread(bot.get_updates, offset=offset, long_polling_timeout=1)
    assert none == []
    poll = asyncio.create_task(
        asyncio.to_thread(bot.get_updates, offset=offset, timeout=40, long_polling_timeout=30)
    )
    await asyncio.sleep(0.2)
    assert not poll.done()
    await box.say("three")
    async with asyncio.timeout(10):
        [update] = await poll
    assert update.message.text == "three"


async def test_infinity_polling_answers_commands(
    box: SandboxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(box, monkeypatch)
    bot = telebot_bot()

    @bot.message_handler(commands=["ping"])
    def ping(message: types.Message) -> None:
        bot.reply_to(message, f"pong {message.text}")

    poller = threading.Thread(
        target=bot.infinity_polling,
        kwargs={"timeout": 5, "long_polling_timeout": 1, "logger_level": logging.CRITICAL},
        daemon=True,
    )
    poller.start()
    try:
        await box.say("/ping 1")
        await box.say("/ping 2")
        await box.wait_for(lambda: _sent_count(box, USER, 2), timeout=10)
    finally:
        bot.stop_polling()
        await asyncio.to_thread(poller.join, 10)
    assert not poller.is_alive()
    sent = await box.sent(USER)
    assert [m["text"] for m in sent] == ["pong /ping 1", "pong /ping 2"]
    assert all(m["reply_to_message_id"] is not None for m in sent)


async def _sent_count(box: SandboxClient, chat_id: int, count: int) -> bool:
    return len(await box.sent(chat_id)) >= count


async def test_webhook_over_tls_with_a_certificate_sent_as_a_get_body(
    box: SandboxClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    point_at(box, monkeypatch)
    bot = telebot_bot()

    @bot.message_handler(commands=["ping"])
    def ping(message: types.Message) -> None:
        bot.send_message(message.chat.id, f"pong {message.text}")

    async with webhook_receiver() as receiver:

        async def dispatch(update: dict[str, Any]) -> web.StreamResponse:
            # telebot's own way to consume a webhook: Update.de_json + process_new_updates
            parsed = types.Update.de_json(update)
            await asyncio.to_thread(bot.process_new_updates, [parsed])
            return web.json_response({})

        receiver.responder = dispatch
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            ok = await asyncio.to_thread(
                bot.set_webhook,
                url=receiver.url,
                certificate=receiver.certificate,
                secret_token="telebot-secret_1",
            )
        assert ok is True
        # telebot sends the secret in the query string; the access log must not show it
        assert "telebot-secret_1" not in caplog.text
        assert "setWebhook" in caplog.text
        info = await asyncio.to_thread(bot.get_webhook_info)
        assert info.url == receiver.url and info.has_custom_certificate is True
        await box.say("/ping tls")
        await box.wait_for(lambda: _sent_count(box, USER, 1), timeout=10)
        assert receiver.headers[-1]["X-Telegram-Bot-Api-Secret-Token"] == "telebot-secret_1"
        # the reply went out while the webhook request was still open: wait for its 200
        await box.wait_for(lambda: _nothing_pending(bot), timeout=10)
        info = await asyncio.to_thread(bot.get_webhook_info)
        assert info.last_error_message is None
        error_code = await _error_code(bot.get_updates)
        assert error_code == 409
    assert [m["text"] for m in await box.sent(USER)] == ["pong /ping tls"]


async def _nothing_pending(bot: telebot.TeleBot) -> bool:
    info = await asyncio.to_thread(bot.get_webhook_info)
    return bool(info.pending_update_count == 0)


async def _error_code(function: Any, *args: Any) -> int:
    with pytest.raises(ApiTelegramException) as exc_info:
        await asyncio.to_thread(function, *args)
    return exc_info.value.error_code


async def test_flood_limits_answer_429_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_sandbox() as box:  # Telegram's limits: 1 message/s in a chat
        point_at(box, monkeypatch)
        await box.say("/start")
        bot = telebot_bot()
        await asyncio.to_thread(bot.send_message, USER, "first")
        with pytest.raises(ApiTelegramException) as exc_info:
            await asyncio.to_thread(bot.send_message, USER, "second")
        error = exc_info.value
        assert (error.error_code, error.description) == (429, "Too Many Requests: retry after 1")
        assert error.result_json["parameters"] == {"retry_after": 1}
        assert error.result.headers["Retry-After"] == "1"
        url = "https://127.0.0.1:8443/hook"
        assert await asyncio.to_thread(bot.set_webhook, url) is True
        with pytest.raises(ApiTelegramException) as exc_info:
            await asyncio.to_thread(bot.set_webhook, url)
        assert exc_info.value.result_json["parameters"] == {"retry_after": 1}
        await asyncio.sleep(1.0)  # what retry_after asked for
        assert await asyncio.to_thread(bot.set_webhook, url) is True
        # deleting is never limited
        assert await asyncio.to_thread(bot.delete_webhook) is True


async def test_channel_posts_carry_the_channel_as_sender(
    box: SandboxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(box, monkeypatch)
    await box.control("POST", "chats", {"chat_id": CHANNEL, "type": "channel", "bot_id": BOT_ID})
    bot = telebot_bot()
    post = await asyncio.to_thread(bot.send_message, CHANNEL, "news")
    assert post.sender_chat is not None and post.sender_chat.id == CHANNEL
    assert post.from_user is None
