"""Outages are budgeted by time, not attempts: a Telegram outage shorter than `max_age` fails
nothing, however many connection attempts it refuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.sandbox import SandboxSettings
from tests.conftest import USER, GatewayFactory, Sandbox
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
CHATS = [501, 502, 503, 504]


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(global_per_second=100, chat_per_second=20)


@pytest.fixture
async def proxy(sandbox: Sandbox) -> AsyncIterator[TcpProxy]:
    target = urlsplit(sandbox.url)
    assert target.hostname is not None and target.port is not None
    tcp = TcpProxy(target.hostname, target.port)
    await tcp.start()
    yield tcp
    await tcp.stop()


async def test_an_outage_longer_than_the_attempts_fails_nothing(
    gateway_factory: GatewayFactory, sandbox: Sandbox, proxy: TcpProxy
) -> None:
    for chat in CHATS:
        await sandbox.create_chat(chat)
    env = {
        "GATEWAY_TELEGRAM_API_BASE": f"http://127.0.0.1:{proxy.port}",
        "GATEWAY_DELIVERY_MAX_ATTEMPTS": "2",
        "GATEWAY_FLOOD_CHAT_PER_SECOND": "20",
        "GATEWAY_FLOOD_GLOBAL_PER_SECOND": "100",
    }
    async with gateway_factory(env) as gw:
        await proxy.stop()  # Telegram is gone: connections refused
        ids: list[tuple[int, str]] = []
        for n in range(3):
            for chat in CHATS:
                status, answer = await gw.enqueue({"chat_id": chat, "text": f"{chat}-{n}"})
                assert status == 202, answer
                ids.append((chat, answer["id"]))
        heads = [command_id for _, command_id in ids[: len(CHATS)]]
        # Hold the outage until every chat's first message has used more than max_attempts.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 45
        seen: list[dict[str, Any]] = []
        while loop.time() < deadline:
            seen = [await gw.command(command_id) for command_id in heads]
            if all(command["attempts"] > 2 for command in seen):
                break
            await asyncio.sleep(0.2)
        assert all(command["attempts"] > 2 for command in seen), seen
        assert all(command["status"] == "queued" for command in seen), seen
        assert seen[0]["error"]["code"] == "network_error"
        await proxy.start()  # back on the same port
        for _, command_id in ids:
            done = await gw.command(command_id, wait=40)
            assert done["status"] == "sent", done
    for chat in CHATS:
        assert [m["text"] for m in await sandbox.messages(chat)] == [
            f"{chat}-{n}" for n in range(3)
        ]


async def test_a_send_that_timed_out_is_retried_and_may_arrive_twice(
    gateway_factory: GatewayFactory, sandbox: Sandbox, proxy: TcpProxy
) -> None:
    """What the README says about duplicates: Telegram did the work but its answer never came
    within `[telegram] request_timeout`, so the call is made again, and the chat shows it twice.
    The gateway gives up on the stalled call after the configured timeout, not the default."""
    await sandbox.create_chat(USER)
    env = {
        "GATEWAY_TELEGRAM_API_BASE": f"http://127.0.0.1:{proxy.port}",
        "GATEWAY_TELEGRAM_REQUEST_TIMEOUT": "1",
    }
    async with gateway_factory(env) as gw:
        proxy.answering = False
        status, answer = await gw.enqueue({"chat_id": USER, "text": "slow answer"})
        assert status == 202, answer
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20  # far below the 30 s default timeout
        seen: dict[str, Any] = {}
        while loop.time() < deadline:
            seen = await gw.command(answer["id"])
            if seen["error"] is not None:
                break
            await asyncio.sleep(0.1)
        assert seen["status"] == "queued" and seen["error"]["code"] == "network_error", seen
        assert "timeout" in seen["error"]["description"].lower()
        proxy.answering = True
        done = await gw.command(answer["id"], wait=30)
        assert done["status"] == "sent", done
    texts = [m["text"] for m in await sandbox.messages(USER)]
    assert len(texts) >= 2 and set(texts) == {"slow answer"}, texts
