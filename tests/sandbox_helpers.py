"""Helpers for the sandbox's own tests: a running sandbox, an aiogram bot, a webhook receiver.

Everything runs on real sockets on loopback: the sandbox on 127.0.0.1, webhook receivers on
random 127.x.y.z addresses at port 8443 with certificates generated at test time.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

from gateway.certs import generate_certificate
from gateway.sandbox import (
    SANDBOX_STATE,
    SandboxAccessLogger,
    SandboxSettings,
    SandboxState,
    create_sandbox_app,
)

TOKEN = "123456:sandbox-test-token"
BOT_ID = 123456
USER = 1111
OTHER_USER = 2222
#: Short webhook retry timings (and setWebhook interval) for tests; the rules stay Telegram's.
FAST_RETRY = SandboxSettings(
    retry_base_seconds=0.05, retry_cap_seconds=0.2, set_webhook_interval_seconds=0.05
)


@dataclass
class SandboxClient:
    """A running sandbox with a plain HTTP client for the Bot API and the control API."""

    base: str
    app: web.Application
    http: aiohttp.ClientSession

    @property
    def state(self) -> SandboxState:
        """The in-process state (tests may inspect it)."""
        return self.app[SANDBOX_STATE]

    async def api(
        self, method: str, token: str = TOKEN, **params: Any
    ) -> tuple[int, dict[str, Any]]:
        """A Bot API call with a JSON body: (HTTP status, answer)."""
        async with self.http.post(f"{self.base}/bot{token}/{method}", json=params) as resp:
            body: dict[str, Any] = await resp.json()
            return resp.status, body

    async def result(self, method: str, **params: Any) -> Any:
        """A Bot API call that must succeed; its `result`."""
        status, body = await self.api(method, **params)
        assert status == 200 and body["ok"], body
        return body["result"]

    async def control(
        self, verb: str, path: str, body: Any = None, *, status: int = 200, **query: Any
    ) -> Any:
        """A control API call answering `status`; its JSON."""
        url = f"{self.base}/sandbox/{path}"
        params = {k: str(v) for k, v in query.items()}
        async with self.http.request(verb, url, json=body, params=params) as resp:
            answer = await resp.json()
            assert resp.status == status, (resp.status, answer)
            return answer

    async def pace(self) -> None:
        """Wait out the setWebhook interval, as a client setting its webhook again must."""
        await asyncio.sleep(self.state.settings.set_webhook_interval_seconds)

    async def say(self, text: str, user_id: int = USER, **extra: Any) -> dict[str, Any]:
        """A user writes to the test bot."""
        body = {"user_id": user_id, "text": text, "bot_id": BOT_ID, **extra}
        answer: dict[str, Any] = await self.control("POST", "messages", body)
        return answer

    async def sent(self, chat_id: int, **query: Any) -> list[dict[str, Any]]:
        """What the test bot sent to a chat."""
        answer = await self.control("GET", f"chats/{chat_id}/messages", bot_id=BOT_ID, **query)
        messages: list[dict[str, Any]] = answer["messages"]
        return messages

    async def webhook_info(self) -> dict[str, Any]:
        """getWebhookInfo of the test bot."""
        info: dict[str, Any] = await self.result("getWebhookInfo")
        return info

    async def wait_for(
        self, condition: Callable[[], Awaitable[bool]], timeout: float = 5.0
    ) -> None:
        """Poll `condition` until true (fails the test after `timeout` s)."""
        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.02)


@asynccontextmanager
async def running_sandbox(settings: SandboxSettings | None = None) -> AsyncIterator[SandboxClient]:
    """A sandbox served on 127.0.0.1 (random port) with the redacting access logger."""
    app = create_sandbox_app(settings)
    runner = web.AppRunner(app, access_log_class=SandboxAccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            yield SandboxClient(f"http://127.0.0.1:{port}", app, http)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def aiogram_bot(base: str, token: str = TOKEN) -> AsyncIterator[Bot]:
    """An unchanged aiogram Bot pointed at the sandbox."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(base))
    bot = Bot(token, session=session)
    try:
        yield bot
    finally:
        await bot.session.close()


def free_loopback_host(port: int = 8443) -> str:
    """A random 127.x.y.z whose `port` is free."""
    for _ in range(100):
        host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        return host
    raise RuntimeError("no free loopback address")


Responder = Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    """A webhook receiver: what it got, and how it answers (200 by default)."""

    host: str
    url: str
    certificate: bytes
    updates: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    arrived: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    responder: Responder | None = None

    async def next_update(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next update to arrive."""
        async with asyncio.timeout(timeout):
            return await self.arrived.get()


@asynccontextmanager
async def webhook_receiver(
    certificate_host: str | None = None, path: str = "/hook"
) -> AsyncIterator[Receiver]:
    """An HTTPS receiver on a random loopback address, port 8443.

    Its certificate names `certificate_host` (default: its own address).
    """
    host = free_loopback_host()
    cert_pem, key_pem = generate_certificate(certificate_host or host)
    receiver = Receiver(host, f"https://{host}:8443{path}", cert_pem)

    async def handle(request: web.Request) -> web.StreamResponse:
        update = await request.json()
        receiver.headers.append(dict(request.headers))
        response: web.StreamResponse = web.json_response({})
        if receiver.responder is not None:
            response = await receiver.responder(update)
        if 200 <= response.status < 300:
            receiver.updates.append(update)
            receiver.arrived.put_nowait(update)
        return response

    app = web.Application()
    app.router.add_post(path, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
    site = web.TCPSite(runner, host, 8443, ssl_context=context)
    await site.start()
    try:
        yield receiver
    finally:
        await runner.cleanup()
