"""python-telegram-bot (22.x) drives the sandbox through its own public API.

An independent referee of the sandbox's fidelity: the exceptions it raises are the ones it
raises against api.telegram.org for the same answers (BadRequest, Forbidden, ChatMigrated,
RetryAfter, Conflict, InvalidToken, EndPointNotFound), its Updater long-polls with offsets, and
its own webhook server (tornado, TLS with a certificate made at test time) receives updates.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sandbox_helpers import (
    BOT_ID,
    FAST_RETRY,
    OTHER_USER,
    TOKEN,
    USER,
    SandboxClient,
    free_loopback_host,
    running_sandbox,
)
from telegram import Bot, Update
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    RetryAfter,
)
from telegram.ext import Application, CommandHandler, ContextTypes

from gateway.certs import generate_certificate
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


@pytest.fixture(autouse=True)
def _timedelta_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    # PTB 22 deprecates reading durations as int; opting in is its documented switch.
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def box() -> AsyncIterator[SandboxClient]:
    async with running_sandbox(UNLIMITED) as client:
        yield client


def ptb_bot(box: SandboxClient, token: str = TOKEN) -> Bot:
    return Bot(token, base_url=f"{box.base}/bot", base_file_url=f"{box.base}/file/bot")


async def test_get_me_and_send(box: SandboxClient) -> None:
    await box.say("/start")
    async with ptb_bot(box) as bot:
        assert (bot.id, bot.username) == (BOT_ID, f"sandbox_{BOT_ID}_bot")
        message = await bot.send_message(USER, "<b>hi</b>", parse_mode="HTML")
        assert message.text == "hi" and message.chat.id == USER
        assert message.from_user is not None and message.from_user.id == BOT_ID
        edited = await bot.edit_message_text("bye", chat_id=USER, message_id=message.message_id)
        assert not isinstance(edited, bool) and edited.text == "bye"
        assert await bot.delete_message(USER, message.message_id) is True


async def test_errors_raise_the_exceptions_telegram_would(box: SandboxClient) -> None:
    await box.say("/start")
    await box.say("/start", user_id=OTHER_USER)
    await box.control("POST", f"users/{OTHER_USER}/block", {"bot_id": BOT_ID})
    await box.control("POST", "chats", {"chat_id": GROUP, "type": "group", "bot_id": BOT_ID})
    async with ptb_bot(box) as bot:
        with pytest.raises(BadRequest, match=r"^Chat not found$"):
            await bot.send_message(999_999, "hello")
        with pytest.raises(BadRequest, match=r"^Message text is empty$"):
            await bot.send_message(USER, "")
        # over 32 KiB the server refuses a text before parsing it, over 4096 after
        with pytest.raises(BadRequest, match=r"^Text is too long$"):
            await bot.send_message(USER, "x" * 40_000)
        with pytest.raises(BadRequest, match=r"^Message is too long$"):
            await bot.send_message(USER, "x" * 4097)
        with pytest.raises(BadRequest, match=r"^Message identifier is not specified$"):
            await bot.delete_message(USER, 0)
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(OTHER_USER, "hello")
        # a user the bot saw only in a group never started it
        await box.say("/status", user_id=3333, chat_id=GROUP)
        with pytest.raises(Forbidden, match="bot can't initiate conversation with a user"):
            await bot.send_message(3333, "hello")
        migrated = await box.control("POST", f"chats/{GROUP}/migrate", {"bot_id": BOT_ID})
        with pytest.raises(ChatMigrated) as exc_info:
            await bot.send_message(GROUP, "hello")
        assert exc_info.value.new_chat_id == migrated["migrate_to_chat_id"]
        # a photo that is no image: Telegram's words
        with pytest.raises(BadRequest, match=r"(?i)image_process_failed"):  # PTB recases it
            await bot.send_photo(USER, photo=b"\x89PNG")
        # not emulated: a bad request, never a bad token
        with pytest.raises(BadRequest, match="not emulated by the sandbox"):
            await bot.send_sticker(USER, sticker="CAACAgIAAxkBAAIBAAFh")
        # not a Bot API method at all: Telegram's 404, which PTB names precisely once initialized
        with pytest.raises(EndPointNotFound):
            await bot.do_api_request("frobnicate")


@pytest.mark.parametrize("token", ["not-a-token", f"{BOT_ID}:someone-elses-secret"])
async def test_bad_tokens_are_invalid_token(box: SandboxClient, token: str) -> None:
    await box.result("getMe")  # TOKEN owns the bot id now
    with pytest.raises(InvalidToken):
        async with ptb_bot(box, token):
            pass


async def test_get_updates_with_offsets_and_long_poll_timeouts(box: SandboxClient) -> None:
    async with ptb_bot(box) as bot:
        first = await box.say("one")
        await box.say("two")
        updates = await bot.get_updates(timeout=1)
        assert [u.message.text for u in updates if u.message] == ["one", "two"]
        assert updates[0].update_id == first["update_id"] >= 100_000_000
        assert updates[1].update_id == updates[0].update_id + 1
        # confirming by offset
        offset = updates[-1].update_id + 1
        assert await bot.get_updates(offset=offset, timeout=0) == ()
        # a long poll returns as soon as an update arrives
        poll = asyncio.create_task(bot.get_updates(offset=offset, timeout=30))
        await asyncio.sleep(0.1)
        assert not poll.done()
        await box.say("three")
        async with asyncio.timeout(10):
            [update] = await poll
        assert update.message is not None and update.message.text == "three"
        # an empty long poll ends after its timeout with nothing
        async with asyncio.timeout(10):
            assert await bot.get_updates(offset=update.update_id + 1, timeout=1) == ()


async def _reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(f"pong {update.effective_message.text}")


async def test_application_polling_answers_commands(box: SandboxClient) -> None:
    app = Application.builder().token(TOKEN).base_url(f"{box.base}/bot").build()
    app.add_handler(CommandHandler("ping", _reply))
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(timeout=dtm.timedelta(seconds=1))
        await app.start()
        try:
            await box.say("/ping 1")
            await box.say("/ping 2")
            await box.wait_for(lambda: _sent_count(box, USER, 2), timeout=10)
        finally:
            await app.updater.stop()
            await app.stop()
    assert [m["text"] for m in await box.sent(USER)] == ["pong /ping 1", "pong /ping 2"]
    # everything was confirmed: nothing is pending
    assert (await box.webhook_info())["pending_update_count"] == 0


async def _sent_count(box: SandboxClient, chat_id: int, count: int) -> bool:
    return len(await box.sent(chat_id)) >= count


@pytest.mark.timeout(60)
async def test_webhook_mode_over_tls_with_a_self_signed_certificate(box: SandboxClient) -> None:
    host = free_loopback_host()
    cert_pem, key_pem = generate_certificate(host)
    app = Application.builder().token(TOKEN).base_url(f"{box.base}/bot").build()
    app.add_handler(CommandHandler("ping", _reply))
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        async with app:
            assert app.updater is not None
            await app.updater.start_webhook(
                listen=host,
                port=8443,
                url_path="hook",
                cert=cert,
                key=key,
                webhook_url=f"https://{host}:8443/hook",
                secret_token="ptb-secret_1",
            )
            await app.start()
            try:
                info = await app.bot.get_webhook_info()
                assert info.url == f"https://{host}:8443/hook"
                assert info.has_custom_certificate is True
                with pytest.raises(Conflict, match="webhook is active"):
                    await app.bot.get_updates()
                await box.say("/ping tls")
                await box.wait_for(lambda: _sent_count(box, USER, 1), timeout=10)
                info = await app.bot.get_webhook_info()
                assert info.last_error_message is None
            finally:
                await app.updater.stop()
                await app.stop()
    assert [m["text"] for m in await box.sent(USER)] == ["pong /ping tls"]


async def test_flood_limits_raise_retry_after() -> None:
    async with running_sandbox() as box:  # Telegram's limits: 1 message/s in a chat
        await box.say("/start")
        async with ptb_bot(box) as bot:
            await bot.send_message(USER, "first")
            with pytest.raises(RetryAfter) as exc_info:
                await bot.send_message(USER, "second")
            assert exc_info.value.retry_after == dtm.timedelta(seconds=1)
            url = "https://127.0.0.1:8443/hook"
            assert await bot.set_webhook(url) is True
            with pytest.raises(RetryAfter) as exc_info:
                await bot.set_webhook(url)
            assert exc_info.value.retry_after == dtm.timedelta(seconds=1)
            await asyncio.sleep(1.0)  # what RetryAfter asked for
            assert await bot.set_webhook(url) is True


async def test_channel_posts_and_message_ids(box: SandboxClient) -> None:
    await box.control("POST", "chats", {"chat_id": CHANNEL, "type": "channel", "bot_id": BOT_ID})
    await box.control("POST", "chats", {"chat_id": GROUP, "type": "group", "bot_id": BOT_ID})
    await box.say("/start")
    async with ptb_bot(box) as bot:
        post = await bot.send_message(CHANNEL, "news")
        assert post.sender_chat is not None and post.sender_chat.id == CHANNEL
        assert post.from_user is None
        in_private = await bot.send_message(USER, "a")
        in_group = await bot.send_message(GROUP, "b")
        # private chats and basic groups share the bot's one sequence; a channel has its own
        assert in_group.message_id == in_private.message_id + 1
        assert post.message_id == 1
