"""Inbound: Telegram (the sandbox) → the webhook → the bot's handlers → an answer in the chat."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiogram import Router
from aiogram.types import Message

from gateway import keys
from gateway.certs import generate_certificate
from gateway.sandbox.settings import SandboxSettings
from tests.conftest import OTHER_USER, TOKEN, USER, Gateway, GatewayFactory, Sandbox

WEBHOOK = "/telegram/webhook"


async def webhook_info(sandbox: Sandbox) -> dict[str, Any]:
    info = await sandbox.bot_api("getWebhookInfo")
    assert info["ok"], info
    result: dict[str, Any] = info["result"]
    return result


async def wait_delivered(sandbox: Sandbox, timeout: float = 10.0) -> dict[str, Any]:
    """Until the sandbox has no undelivered update for the bot."""
    for _ in range(int(timeout / 0.05)):
        info = await webhook_info(sandbox)
        if info["pending_update_count"] == 0:
            return info
        await asyncio.sleep(0.05)
    raise AssertionError(f"updates still pending: {info}")


async def test_start_registers_the_webhook_with_certificate_and_secret(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    info = await webhook_info(sandbox)
    assert info["url"] == gateway.config.webhook_url
    assert info["has_custom_certificate"] is True
    assert info["max_connections"] == 40
    assert info["allowed_updates"] == ["message", "callback_query"]


# Telegram allows one setWebhook a second; 2.5 s here so that a slow first start and stop on a
# loaded machine still leaves the second start inside the window (the answer is "retry after 1"
# either way, so the gateway retries until the window has passed).
@pytest.mark.parametrize("sandbox_settings", [SandboxSettings(set_webhook_interval_seconds=2.5)])
@pytest.mark.timeout(90)
async def test_a_restart_within_a_second_waits_out_telegrams_429(
    gateway_factory: GatewayFactory, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway_factory():
        pass
    # Telegram allows one setWebhook a second: the second start meets a 429 and honours it.
    with caplog.at_level(logging.INFO, logger="gateway.server"):
        async with gateway_factory() as gw:
            info = await webhook_info(sandbox)
            assert info["url"] == gw.config.webhook_url
    assert "setWebhook: Telegram asks to retry after 1 s" in caplog.text


async def test_help_from_an_allowed_user_is_answered(gateway: Gateway, sandbox: Sandbox) -> None:
    sent = await sandbox.say("/help")
    [answer] = await sandbox.wait_messages(USER, 1)
    assert "Telegram Gateway" in answer["text"]
    assert answer.get("reply_to_message_id") in (None, sent["message_id"])
    await sandbox.say("/frobnicate")
    messages = await sandbox.wait_messages(USER, 2)
    assert "Unknown command /frobnicate" in messages[1]["text"]


async def test_strangers_are_ignored_and_logged(
    gateway: Gateway, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.inbound")
    await sandbox.say("/help", user_id=OTHER_USER)
    await wait_delivered(sandbox)
    await sandbox.say("/help")  # an allowed user's answer proves the worker has caught up
    await sandbox.wait_messages(USER, 1)
    assert await sandbox.messages(OTHER_USER) == []
    assert f"from user {OTHER_USER}: not allowed" in caplog.text


async def test_strangers_get_the_configured_refusal(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    async with gateway_factory({"GATEWAY_TELEGRAM_REFUSAL_TEXT": "Sorry, this bot is private."}):
        await sandbox.say("/help", user_id=OTHER_USER)
        [answer] = await sandbox.wait_messages(OTHER_USER, 1)
        assert answer["text"] == "Sorry, this bot is private."


@pytest.mark.parametrize("secret", [None, "wrong", ""])
async def test_wrong_or_missing_secret_is_401(gateway: Gateway, secret: str | None) -> None:
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 1,
            "chat": {"id": USER, "type": "private"},
            "from": {"id": USER, "is_bot": False, "first_name": "A"},
            "text": "/help",
        },
    }
    async with gateway.http.post(gateway.url + WEBHOOK, json=update, headers=headers) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_body_that_is_not_an_update_is_400(gateway: Gateway) -> None:
    headers = {
        "X-Telegram-Bot-Api-Secret-Token": gateway.config.secret_token.reveal(),
        "Content-Type": "application/json",
    }
    for body in (b"not json", b"[]", b'{"update_id": "x"}'):
        async with gateway.http.post(gateway.url + WEBHOOK, data=body, headers=headers) as resp:
            assert resp.status == 400


async def test_a_failing_handler_still_acknowledges(
    gateway: Gateway, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Router(name="broken")

    @broken.message()
    async def explode(message: Message) -> None:
        raise RuntimeError("handler bug")

    gateway.app[keys.DISPATCHER].include_router(broken)
    await sandbox.say("plain words")
    info = await wait_delivered(sandbox)
    assert "last_error_message" not in info or not info["last_error_message"]
    assert "handling update" in caplog.text and "handler bug" in caplog.text


async def test_certificate_san_mismatch_is_reported_by_the_sandbox(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """Upload a certificate for another host: Telegram (the sandbox) can't verify the gateway."""
    other_pem, _ = generate_certificate("127.9.9.9")
    form = {
        "url": gateway.config.webhook_url,
        "secret_token": gateway.config.secret_token.reveal(),
    }
    import aiohttp

    data = aiohttp.FormData()
    for name, value in form.items():
        data.add_field(name, value)
    data.add_field("certificate", other_pem, filename="cert.pem")
    # The gateway set its webhook a moment ago: like any client, honour Telegram's retry_after.
    for _ in range(3):
        async with sandbox.http.post(f"{sandbox.url}/bot{TOKEN}/setWebhook", data=data) as resp:
            answer = await resp.json()
        if resp.status != 429:
            break
        await asyncio.sleep(answer["parameters"]["retry_after"])
    assert answer["ok"], answer
    await sandbox.say("/help")
    for _ in range(100):
        info = await webhook_info(sandbox)
        if info.get("last_error_message"):
            break
        await asyncio.sleep(0.05)
    assert "SSL" in info["last_error_message"] or "certificate" in info["last_error_message"]
    assert info["pending_update_count"] >= 1
    assert info.get("last_error_date")
