"""Webhooks and long polling: setWebhook's rules and delivery over verified TLS."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram.exceptions import TelegramBadRequest, TelegramConflictError
from aiogram.types import BufferedInputFile, Update, WebhookInfo
from aiohttp import web
from sandbox_helpers import (
    BOT_ID,
    FAST_RETRY,
    OTHER_USER,
    TOKEN,
    USER,
    SandboxClient,
    aiogram_bot,
    free_loopback_host,
    running_sandbox,
    webhook_receiver,
)

from gateway.certs import generate_certificate
from gateway.sandbox import SandboxSettings


@pytest.fixture
async def box() -> AsyncIterator[SandboxClient]:
    async with running_sandbox(FAST_RETRY) as client:
        yield client


async def set_webhook(
    box: SandboxClient, url: str, certificate: bytes | None, **params: Any
) -> dict[str, Any]:
    await box.pace()
    form = aiohttp.FormData()
    form.add_field("url", url)
    for name, value in params.items():
        form.add_field(name, str(value))
    if certificate is not None:
        form.add_field("certificate", "attach://cert")
        form.add_field("cert", io.BytesIO(certificate), filename="cert.pem")
    async with box.http.post(f"{box.base}/bot{TOKEN}/setWebhook", data=form) as resp:
        answer: dict[str, Any] = await resp.json()
        return answer


@pytest.mark.parametrize(
    ("params", "description"),
    [
        (
            {"url": "http://example.com/hook"},
            "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
        ),
        (
            {"url": "https://127.0.0.1:8080/hook"},
            "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
        ),
        ({"url": "https://127.0.0.1:99999/"}, "Bad Request: invalid webhook URL specified"),
        ({"url": "ftp://example.com/"}, "Bad Request: invalid webhook URL specified"),
        ({"url": "https:///nohost"}, "Bad Request: invalid webhook URL specified"),
        (
            {"url": "https://10.1.2.3/hook"},
            "Bad Request: bad webhook: IP address 10.1.2.3 is reserved",
        ),
        (
            {"url": "https://[::1]/hook"},
            "Bad Request: bad webhook: IPv6-only addresses are not allowed",
        ),
        (
            {"url": "https://127.0.0.1/", "ip_address": "192.168.1.1"},
            "Bad Request: bad webhook: IP address 192.168.1.1 is reserved",
        ),
        (
            {"url": "https://127.0.0.1/", "secret_token": "a b"},
            "Bad Request: secret token contains unallowed characters",
        ),
        (
            {"url": "https://127.0.0.1/", "secret_token": "x" * 257},
            "Bad Request: secret token is too long",
        ),
        (
            {"url": "https://127.0.0.1/", "allowed_updates": "[nope"},
            "Bad Request: can't parse allowed_updates JSON object",
        ),
    ],
)
async def test_set_webhook_refuses_like_telegram(
    box: SandboxClient, params: dict[str, Any], description: str
) -> None:
    status, body = await box.api("setWebhook", **params)
    assert (status, body) == (400, {"ok": False, "error_code": 400, "description": description})
    assert (await box.webhook_info())["url"] == ""


async def test_set_webhook_descriptions_and_options(box: SandboxClient) -> None:
    url = "https://127.0.0.1:8443/hook"
    outcomes = []
    calls: list[tuple[str, dict[str, Any]]] = [
        ("setWebhook", {"url": url}),
        ("setWebhook", {"url": url}),
        ("setWebhook", {"url": url, "max_connections": 0}),
        ("deleteWebhook", {}),
        ("deleteWebhook", {}),
        ("setWebhook", {"url": ""}),
    ]
    for method, params in calls:
        await box.pace()
        status, body = await box.api(method, **params)
        assert status == 200 and body["result"] is True
        outcomes.append(body["description"])
    assert outcomes == [
        "Webhook was set",
        "Webhook is already set",
        "Webhook was set",
        "Webhook was deleted",
        "Webhook is already deleted",
        "Webhook is already deleted",
    ]
    await box.result("setWebhook", url=url, max_connections=500, secret_token="s3cr_t-X")
    info = await box.webhook_info()
    assert info["max_connections"] == 100 and info["has_custom_certificate"] is False
    assert "allowed_updates" not in info
    await box.pace()
    await box.result(
        "setWebhook",
        url=url,
        max_connections=100,
        secret_token="s3cr_t-X",
        allowed_updates=["callback_query", "message", "bogus"],
    )
    info = await box.webhook_info()
    assert info["allowed_updates"] == ["message", "callback_query"]
    await box.pace()
    await box.result(
        "setWebhook", url=url, max_connections=100, secret_token="s3cr_t-X", allowed_updates=[]
    )
    assert "allowed_updates" not in await box.webhook_info()


async def test_a_string_is_not_a_certificate_and_size_is_limited(box: SandboxClient) -> None:
    url = "https://127.0.0.1:8443/hook"
    await box.result("setWebhook", url=url, certificate="-----BEGIN CERTIFICATE-----")
    assert (await box.webhook_info())["has_custom_certificate"] is False
    answer = await set_webhook(box, url, b"x" * (3 * 1024 * 1024 + 1))
    assert answer["description"] == "Bad Request: certificate size is too big (3145729 bytes)"
    answer = await set_webhook(box, url, b"not a pem")
    assert (
        answer["description"] == "Bad Request: bad webhook: Failed to set custom certificate file"
    )


async def test_delivery_over_verified_tls_with_the_secret_header(box: SandboxClient) -> None:
    async with webhook_receiver() as receiver, aiogram_bot(box.base) as bot:
        ok = await bot.set_webhook(
            receiver.url,
            certificate=BufferedInputFile(receiver.certificate, "cert.pem"),
            secret_token="top-secret_1",
            allowed_updates=["message", "callback_query"],
        )
        assert ok is True
        info = await bot.get_webhook_info()
        assert isinstance(info, WebhookInfo) and info.has_custom_certificate
        said = await box.say("/help", first_name="Ann")
        update = await receiver.next_update()
        parsed = Update.model_validate(update)
        assert parsed.update_id == said["update_id"]
        assert parsed.message is not None and parsed.message.text == "/help"
        assert [(e.type, e.offset, e.length) for e in parsed.message.entities or []] == [
            ("bot_command", 0, 5)
        ]
        headers = receiver.headers[-1]
        assert headers["X-Telegram-Bot-Api-Secret-Token"] == "top-secret_1"
        assert headers["Content-Type"] == "application/json"
        await box.wait_for(lambda: _pending_is(box, 0))
        info = await bot.get_webhook_info()
        assert info.last_error_message is None and info.ip_address == receiver.host
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()


async def _pending_is(box: SandboxClient, count: int) -> bool:
    return bool((await box.webhook_info())["pending_update_count"] == count)


async def _has_error(box: SandboxClient) -> bool:
    return "last_error_message" in await box.webhook_info()


async def test_a_certificate_for_another_host_fails_verification(box: SandboxClient) -> None:
    async with webhook_receiver(certificate_host="127.0.0.99") as receiver:
        answer = await set_webhook(box, receiver.url, receiver.certificate)
        assert answer["description"] == "Webhook was set"
        await box.say("/help")
        await box.wait_for(lambda: _has_error(box))
        info = await box.webhook_info()
        assert info["last_error_message"].startswith("SSL error {")
        assert "certificate verify failed" in info["last_error_message"]
        assert abs(info["last_error_date"] - time.time()) < 10
        assert info["pending_update_count"] == 1
        assert receiver.updates == []


async def test_without_an_uploaded_certificate_the_system_roots_decide(box: SandboxClient) -> None:
    async with webhook_receiver() as receiver:
        await box.result("setWebhook", url=receiver.url)
        await box.say("/help")
        await box.wait_for(lambda: _has_error(box))
        assert "certificate verify failed" in (await box.webhook_info())["last_error_message"]


async def test_ip_address_connects_there_but_verifies_the_url_host(box: SandboxClient) -> None:
    async with webhook_receiver(certificate_host="hooks.sandbox.test") as receiver:
        url = "https://hooks.sandbox.test:8443/hook"
        answer = await set_webhook(box, url, receiver.certificate, ip_address=receiver.host)
        assert answer["ok"], answer
        await box.say("/help")
        update = await receiver.next_update()
        assert update["message"]["text"] == "/help"
        assert receiver.headers[-1]["Host"] == "hooks.sandbox.test:8443"
        assert (await box.webhook_info())["ip_address"] == receiver.host


async def test_an_unresolvable_host_is_refused(box: SandboxClient) -> None:
    status, body = await box.api("setWebhook", url="https://no-such-host.invalid/hook")
    assert (status, body["description"]) == (
        400,
        "Bad Request: bad webhook: Failed to resolve host: Name or service not known",
    )


async def test_retries_after_an_error_answer_then_delivers(box: SandboxClient) -> None:
    async with webhook_receiver() as receiver:
        answers = [500, 502]

        async def respond(update: dict[str, Any]) -> web.StreamResponse:
            if answers:
                return web.Response(status=answers.pop(0))
            return web.json_response({})

        receiver.responder = respond
        await set_webhook(box, receiver.url, receiver.certificate)
        await box.say("/help")
        update = await receiver.next_update()
        assert update["message"]["text"] == "/help"
        info = await box.webhook_info()
        assert info["last_error_message"] == "Wrong response from the webhook: 502 Bad Gateway"
        [delivered] = (await box.control("GET", f"bots/{BOT_ID}/updates"))["delivered"]
        assert delivered["attempts"] == 2


async def test_retry_after_from_the_webhook_is_honoured(box: SandboxClient) -> None:
    async with webhook_receiver() as receiver:
        times: list[float] = []

        async def respond(update: dict[str, Any]) -> web.StreamResponse:
            times.append(time.monotonic())
            if len(times) == 1:
                return web.Response(status=429, headers={"Retry-After": "1"})
            return web.json_response({})

        receiver.responder = respond
        await set_webhook(box, receiver.url, receiver.certificate)
        await box.say("/help")
        await receiver.next_update()
        assert times[1] - times[0] >= 0.95  # not the immediate first retry
        info = await box.webhook_info()
        assert (
            info["last_error_message"] == "Wrong response from the webhook: 429 Too Many Requests"
        )


async def test_redirects_are_not_followed(box: SandboxClient) -> None:
    async with webhook_receiver() as receiver:

        async def respond(update: dict[str, Any]) -> web.StreamResponse:
            return web.Response(status=302, headers={"Location": receiver.url})

        receiver.responder = respond
        await set_webhook(box, receiver.url, receiver.certificate)
        await box.say("/help")
        await box.wait_for(lambda: _has_error(box))
        info = await box.webhook_info()
        assert info["last_error_message"] == "Wrong response from the webhook: 302 Found"


async def test_connection_refused(box: SandboxClient) -> None:
    host = free_loopback_host()
    certificate, _ = generate_certificate(host)
    await set_webhook(box, f"https://{host}:8443/hook", certificate)
    await box.say("/help")
    await box.wait_for(lambda: _has_error(box))
    assert (await box.webhook_info())["last_error_message"] == "Connection refused"


async def test_one_chat_in_order_different_chats_in_parallel(box: SandboxClient) -> None:
    async with webhook_receiver() as receiver:
        other_arrived = asyncio.Event()

        async def respond(update: dict[str, Any]) -> web.StreamResponse:
            chat = update["message"]["chat"]["id"]
            if chat == OTHER_USER:
                other_arrived.set()
            elif update["message"]["text"] == "first":
                # USER's lane waits here until OTHER_USER's update arrives in parallel;
                # meanwhile USER's later updates must not overtake.
                await asyncio.wait_for(other_arrived.wait(), 5)
            return web.json_response({})

        receiver.responder = respond
        await set_webhook(box, receiver.url, receiver.certificate)
        for text in ("first", "second", "third"):
            await box.say(text)
        await box.say("other", user_id=OTHER_USER)
        for _ in range(4):
            await receiver.next_update()
        mine = [
            u["message"]["text"] for u in receiver.updates if u["message"]["chat"]["id"] == USER
        ]
        assert mine == ["first", "second", "third"]
        order = [u["message"]["text"] for u in receiver.updates]
        assert order.index("other") < order.index("first")


async def test_the_webhook_answer_may_carry_one_method_call(box: SandboxClient) -> None:
    async with webhook_receiver() as receiver:

        async def respond(update: dict[str, Any]) -> web.StreamResponse:
            chat = update["message"]["chat"]["id"]
            return web.json_response({"method": "sendMessage", "chat_id": chat, "text": "pong"})

        receiver.responder = respond
        await set_webhook(box, receiver.url, receiver.certificate)
        await box.say("/ping")
        await receiver.next_update()

        async def answered() -> bool:
            return [m["text"] for m in await box.sent(USER)] == ["pong"]

        await box.wait_for(answered)


async def test_drop_pending_updates(box: SandboxClient) -> None:
    await box.say("one")
    await box.say("two")
    assert (await box.webhook_info())["pending_update_count"] == 2
    await box.result("deleteWebhook", drop_pending_updates=True)
    assert (await box.webhook_info())["pending_update_count"] == 0
    assert await box.result("getUpdates") == []


async def test_get_updates_long_polling(box: SandboxClient) -> None:
    async with aiogram_bot(box.base) as bot:
        first = await box.say("one")
        await box.say("two")
        updates = await bot.get_updates(timeout=0)
        assert [u.update_id for u in updates] == [first["update_id"], first["update_id"] + 1]
        assert [u.update_id for u in await bot.get_updates(offset=first["update_id"] + 1)] == [
            first["update_id"] + 1
        ]
        assert await bot.get_updates(offset=first["update_id"] + 2, timeout=0) == []
        poll = asyncio.create_task(bot.get_updates(offset=first["update_id"] + 2, timeout=5))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await box.say("three")
        [update] = await poll
        assert update.message is not None and update.message.text == "three"
        assert time.monotonic() - started < 1
        assert (await box.webhook_info())["pending_update_count"] == 1


async def test_a_second_poller_terminates_the_first(box: SandboxClient) -> None:
    async with aiogram_bot(box.base) as bot:
        first = asyncio.create_task(bot.get_updates(timeout=5))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(bot.get_updates(timeout=0))
        with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
            await first
        assert await second == []


async def test_set_webhook_terminates_a_long_poll(box: SandboxClient) -> None:
    async with aiogram_bot(box.base) as bot:
        poll = asyncio.create_task(bot.get_updates(timeout=5))
        await asyncio.sleep(0.1)
        await box.result("setWebhook", url="https://127.0.0.1:8443/hook")
        with pytest.raises(TelegramConflictError, match="terminated by setWebhook request"):
            await poll
        await box.pace()
        with pytest.raises(TelegramBadRequest, match="An HTTPS URL"):
            await bot.set_webhook("http://127.0.0.1/hook")


async def test_shutdown_while_a_delivery_hangs_is_clean() -> None:
    async with webhook_receiver() as receiver:
        started, release = asyncio.Event(), asyncio.Event()

        async def respond(update: dict[str, Any]) -> web.StreamResponse:
            started.set()
            await asyncio.wait_for(release.wait(), 10)
            return web.json_response({})

        receiver.responder = respond
        async with running_sandbox(FAST_RETRY) as box:
            await set_webhook(box, receiver.url, receiver.certificate)
            await box.say("/help")
            await asyncio.wait_for(started.wait(), 5)
            stopped_box = box
        release.set()
        [pending] = stopped_box.state.bots[BOT_ID].updates.pending.values()
        assert not pending.in_flight  # undelivered, kept for the next run


async def test_old_updates_are_dropped() -> None:
    settings = SandboxSettings(update_ttl_seconds=0.2)
    async with running_sandbox(settings) as box:
        await box.say("stale")
        assert (await box.webhook_info())["pending_update_count"] == 1
        await asyncio.sleep(0.3)
        assert (await box.webhook_info())["pending_update_count"] == 0


async def test_shutdown_releases_a_long_poll_at_once() -> None:
    async with running_sandbox() as box, aiogram_bot(box.base) as bot:
        poll = asyncio.create_task(bot.get_updates(timeout=30))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await box.app.shutdown()
        assert await asyncio.wait_for(poll, 2) == []
        assert time.monotonic() - started < 1


async def test_set_webhook_is_limited_to_one_a_second_and_deleting_is_not() -> None:
    async with running_sandbox() as box:  # Telegram's 1 s
        url = "https://127.0.0.1:8443/hook"
        await box.result("setWebhook", url=url)
        for params in ({"url": url}, {"url": "http://bad"}, {"url": url, "max_connections": 5}):
            status, body = await box.api("setWebhook", **params)
            assert (status, body) == (
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 1",
                    "parameters": {"retry_after": 1},
                },
            )
        assert (await box.webhook_info())["max_connections"] == 40  # nothing changed
        await box.result("deleteWebhook")
        await box.result("setWebhook", url="")
        await asyncio.sleep(1.0)  # what retry_after asked for
        await box.result("setWebhook", url=url)
        assert (await box.webhook_info())["url"] == url


async def test_polling_the_same_offset_again_at_once_is_slowed_like_telegram(
    box: SandboxClient,
) -> None:
    """Telegram's guard against busy polling: the same offset again within 0.5 s gets one
    update at most, and within 3 s a timeout under 3 s waits 3 s for an update."""
    await box.say("one")
    await box.say("two")
    assert len(await box.result("getUpdates", timeout=0)) == 2
    [only] = await box.result("getUpdates", timeout=0)  # same offset (0) at once
    assert only["message"]["text"] == "one"
    offset = only["update_id"] + 2
    assert await box.result("getUpdates", offset=offset, timeout=0) == []
    # the same offset, timeout 0, right away: held up to 3 s, so an update still arrives
    poll = asyncio.create_task(box.result("getUpdates", offset=offset, timeout=0))
    await asyncio.sleep(0.3)
    assert not poll.done()
    await box.say("three")
    async with asyncio.timeout(5):
        [update] = await poll
    assert update["message"]["text"] == "three"
